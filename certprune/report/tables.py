"""Audit tables (pandas): per-partition rows, the summary dict, counterexample CSVs.

Verdict words in tables: certified / falsified / undecided (the engine's 'unknown'). Shares are
fractions of the integer domain's points (``FairnessSpec.domain_points``).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

VERDICTS = ("certified", "falsified", "undecided")


def partition_frame(rows: pd.DataFrame, part) -> pd.DataFrame:
    """One row per partition id 0..count-1 (missing rows are undecided), with its bounds."""
    ids = np.arange(part.count)
    lo, hi = part.bounds(ids)
    df = pd.DataFrame({"partition": ids, "points": part.points(ids)})
    r = rows.rename(columns={"pid": "partition"})[["partition", "verdict", "nodes", "z3_calls", "seconds"]]
    df = df.merge(r, on="partition", how="left")
    df["verdict"] = df["verdict"].fillna("unknown").replace({"unknown": "undecided"})
    df[["nodes", "z3_calls"]] = df[["nodes", "z3_calls"]].fillna(0).astype(int)
    df["seconds"] = df["seconds"].fillna(0.0)
    df["lo"] = [json.dumps([int(v) for v in r]) for r in lo]
    df["hi"] = [json.dumps([int(v) for v in r]) for r in hi]
    return df


def summarize(parts: pd.DataFrame, spec, part, seconds: float) -> dict:
    """Counts and domain shares per verdict, plus the query (what summary.json holds)."""
    total_pts = spec.domain_points()
    counts = {v: int((parts["verdict"] == v).sum()) for v in VERDICTS}
    shares = {v: float(parts.loc[parts["verdict"] == v, "points"].sum() / total_pts) for v in VERDICTS}
    return {"model_features": len(spec.feature_names), "protected": list(spec.protected),
            "relaxed": {n: d for n, d in spec.relaxed}, "partitions": int(part.count),
            "counts": counts, "domain_share": shares, "fully_decided": counts["undecided"] == 0,
            "fair_on_domain": counts["certified"] == part.count and _protected_whole(parts, spec),
            "seconds": round(float(seconds), 3)}


def _protected_whole(parts: pd.DataFrame, spec) -> bool:
    """Whether every partition lets the protected attributes range over their whole domain. If a
    (user-given) partition holds fewer protected values, pairs across partitions were never
    checked, so certifying every partition does not make the model fair on the domain."""
    idx = list(spec.protected_indices)
    lo = np.array([json.loads(v) for v in parts["lo"]], dtype=np.float64).reshape(len(parts), -1)[:, idx]
    hi = np.array([json.loads(v) for v in parts["hi"]], dtype=np.float64).reshape(len(parts), -1)[:, idx]
    return bool(np.all(lo == spec.lower[idx]) and np.all(hi == spec.upper[idx]))


def summary_table(summary: dict) -> pd.DataFrame:
    """Verdict / partitions / share-of-domain table for printing."""
    return pd.DataFrame({"verdict": list(VERDICTS),
                         "partitions": [summary["counts"][v] for v in VERDICTS],
                         "share of domain": [f"{100 * summary['domain_share'][v]:.4g}%" for v in VERDICTS]})


def counterexample_frames(rows: pd.DataFrame, spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(encoded, decoded) counterexample tables: partition, x.<f>..., x_prime.<f>..., logits."""
    f = rows[rows["verdict"] == "falsified"]
    names = list(spec.feature_names)
    enc_cols = ["partition"] + [f"x.{n}" for n in names] + [f"x_prime.{n}" for n in names] + ["logit_x", "logit_x_prime"]
    enc, dec = [], []
    for _, r in f.iterrows():
        x, xp = np.array(json.loads(r["x"])), np.array(json.loads(r["x_prime"]))
        enc.append([int(r["pid"]), *x.tolist(), *xp.tolist(), r["logit_x"], r["logit_x_prime"]])
        dx, dxp = spec.decode(x), spec.decode(xp)
        dec.append([int(r["pid"]), *[dx.get(n) for n in names], *[dxp.get(n) for n in names],
                    r["logit_x"], r["logit_x_prime"]])
    return pd.DataFrame(enc, columns=enc_cols), pd.DataFrame(dec, columns=enc_cols)
