"""Audit tables (pandas): per-partition rows, the summary dict, counterexample CSVs.

Individuals (integer points of the domain) are counted exactly: proven fair, proven unfair,
undecided (Python ints; ``total`` = every point of the domain). Partition verdicts in tables:
*certified* (complete, every individual fair), *falsified* (holds a validated counterexample
pair; it may still have undecided individuals), *undecided* (neither).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from certprune.results import Verdict, merge
from certprune.verifiers.partition import box_points

VERDICTS = ("certified", "falsified", "undecided")
CLASSES = ("fair", "unfair", "undecided")
# summary.json "decisions": which arithmetic decides an individual, per semantics
DECISIONS = {
    "exact": "individuals are counted by their real-arithmetic decisions (bounds clear zero by the margin "
             "1e-7 (1 + |b|); enumerated points by their float64 logit beyond that margin, by exact rational "
             "arithmetic within it); each listed counterexample pair flips both in real arithmetic and in float32 "
             "on the original model (each input run alone); a pair that flips in only one of the two arithmetics "
             "is counted by its real-arithmetic decisions and not listed",
    "float32": "individuals are counted by the float32 decisions of the original model, each input run alone "
               "(bounds clear zero by the rigorous float32 rounding margin; enumerated points are run batched and "
               "re-run alone where a rigorous error bound leaves the sign open); each listed counterexample pair "
               "flips in float32; a pair that flips only in real arithmetic is fair under this semantics",
}


def domain_total(spec) -> int:
    """Exact number of integer points of the domain (every feature, protected ones included)."""
    return box_points(spec.lower, spec.upper)[0]


def _pairs(cell) -> list:
    return json.loads(cell) if isinstance(cell, str) else []


def partition_frame(rows: pd.DataFrame, part) -> pd.DataFrame:
    """One row per partition id 0..count-1 (missing rows are undecided), with exact counts of
    individuals, the number of recorded counterexample pairs and its bounds."""
    ids = np.arange(part.count)
    lo, hi = part.bounds(ids)
    points = box_points(lo, hi)
    df = pd.DataFrame({"partition": ids, "points": pd.Series(points, dtype=object)})
    r = rows.rename(columns={"pid": "partition"})[["partition", "verdict", "nodes", "z3_calls", "seconds",
                                                    "fair", "unfair", "pairs"]]
    df = df.merge(r, on="partition", how="left")
    npairs = [len(_pairs(c)) for c in df["pairs"]]
    fair = [int(v) if isinstance(v, str) else 0 for v in df["fair"]]
    unfair = [int(v) if isinstance(v, str) else 0 for v in df["unfair"]]
    complete = df["verdict"].isin(["certified", "falsified"]).to_numpy()
    df["verdict"] = ["falsified" if n else ("certified" if c and u == 0 else "undecided")
                     for n, c, u in zip(npairs, complete, unfair)]
    df["fair"] = pd.Series(fair, dtype=object)
    df["unfair"] = pd.Series(unfair, dtype=object)
    df["undecided"] = pd.Series([p - f - u for p, f, u in zip(points, fair, unfair)], dtype=object)
    df["pairs"] = npairs
    df[["nodes", "z3_calls"]] = df[["nodes", "z3_calls"]].fillna(0).astype(int)
    df["seconds"] = df["seconds"].fillna(0.0).clip(lower=0.0)
    df["lo"] = [json.dumps([int(v) for v in r]) for r in lo]
    df["hi"] = [json.dumps([int(v) for v in r]) for r in hi]
    return df


def audit_verdict(parts: pd.DataFrame, covered: bool = True) -> Verdict:
    """The audit's verdict from its partitions (:func:`results.merge`): FALSIFIED where some partition
    holds a validated pair or a proven-unfair individual, CERTIFIED where every one is certified and
    they cover the domain (``covered``; user boxes may not: the rest is one more unknown part),
    else UNKNOWN."""
    verdicts = [Verdict.FALSIFIED if n or u else (Verdict.CERTIFIED if v == "certified" else Verdict.UNKNOWN)
                for v, n, u in zip(parts["verdict"], parts["pairs"], parts["unfair"])]
    return merge(verdicts + ([] if covered else [Verdict.UNKNOWN]))


def individuals(parts: pd.DataFrame, spec) -> dict:
    """``{"total", "fair", "unfair", "undecided"}``: exact ints; points outside every partition
    (user boxes that do not cover the domain) are undecided."""
    total = domain_total(spec)
    fair, unfair = int(sum(parts["fair"])), int(sum(parts["unfair"]))
    return {"total": total, "fair": fair, "unfair": unfair, "undecided": total - fair - unfair}


def summarize(parts: pd.DataFrame, spec, part, seconds: float, semantics: str = "exact",
              tolerance: float = 0.0) -> dict:
    """What summary.json holds: the audit's ``verdict`` (certified: fair on the domain; falsified:
    some individual proven unfair or a validated pair; unknown), exact individual counts and
    shares, partition counts and domain shares per partition verdict, the number of validated
    counterexample pairs, the query."""
    total_pts = float(domain_total(spec))
    counts = {v: int((parts["verdict"] == v).sum()) for v in VERDICTS}
    shares = {v: float(sum(parts.loc[parts["verdict"] == v, "points"]) / total_pts) for v in VERDICTS}
    ind = individuals(parts, spec)
    covered = sum(parts["points"]) == ind["total"]
    return {"verdict": audit_verdict(parts, covered).value, "model_features": len(spec.feature_names), "protected": list(spec.protected),
            "relaxed": {n: d for n, d in spec.relaxed}, "semantics": semantics, "decisions": DECISIONS[semantics],
            "undecided_tolerance": tolerance,
            "individuals": ind,
            "individual_share": {k: ind[k] / ind["total"] for k in CLASSES},
            "counterexample_pairs": int(parts["pairs"].sum()),
            "partitions": int(part.count),
            "counts": counts, "domain_share": shares, "fully_decided": counts["undecided"] == 0,
            "complete": ind["undecided"] <= tolerance * ind["total"],
            "fair_on_domain": ind["fair"] == ind["total"],
            "seconds": round(float(seconds), 3)}


def summary_table(summary: dict) -> pd.DataFrame:
    """Individuals (exact counts and shares) and partitions per verdict, for printing."""
    ind, sh = summary["individuals"], summary["individual_share"]
    return pd.DataFrame({"individuals": ["proven fair", "proven unfair", "undecided"],
                         "count": [ind[k] for k in CLASSES],
                         "share": [f"{100 * sh[k]:.4g}%" for k in CLASSES],
                         "partitions": [f"{summary['counts'][v]} {v}" for v in VERDICTS]})


def counterexample_frames(rows: pd.DataFrame, spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(encoded, decoded) counterexample tables, one row per validated pair: partition,
    x.<f>..., x_prime.<f>..., float32 logits of each input run alone."""
    names = list(spec.feature_names)
    enc_cols = ["partition"] + [f"x.{n}" for n in names] + [f"x_prime.{n}" for n in names] + ["logit_x", "logit_x_prime"]
    enc, dec = [], []
    for pid, cell in zip(rows["pid"], rows["pairs"]):
        for x, xp, lx, lxp in _pairs(cell):
            enc.append([int(pid), *x, *xp, lx, lxp])
            dx, dxp = spec.decode(np.array(x)), spec.decode(np.array(xp))
            dec.append([int(pid), *[dx.get(n) for n in names], *[dxp.get(n) for n in names], lx, lxp])
    return pd.DataFrame(enc, columns=enc_cols), pd.DataFrame(dec, columns=enc_cols)
