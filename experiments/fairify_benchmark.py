"""Audit the 25 Fairify models for every protected attribute Fairify used (42 audits) and compare
with Fairify's published partition counts (read from the data README) and FairQuant's shares
(issue 10's figures, and this project's own side-by-side run where
experiments/results/fairquant_side_by_side.csv has the model; 60 s, one core). Rows are
checkpointed to a CSV, so a rerun resumes (and, with every row present, only rewrites the .md).

    python experiments/fairify_benchmark.py [--timeout 60] [--workers 1] [--only AC-9,GC-3] [--grid]

By default the whole domain is one partition (certprune's default); ``--grid`` uses Fairify's
partitions (T = 10 Adult, 100 German and Bank). Individuals decided = proven fair + proven unfair.
``s_to_fq``: seconds into the audit (summary.json's ``progress``) at which the proven-fair share
first reaches FairQuant's certified share of the table below (blank: never, or no FairQuant row).
``seconds`` is the audit's own run time (summary.json), without the sampling checks that follow it
(:func:`sampled_checks`: the sampled unfair share against the proven bounds, and points inside
partitions proven wholly fair / wholly unfair).
Writes experiments/results/fairify_individuals.csv and .md (or fairify_individuals_grid.*).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
DATASET = {"AC": "adult", "GC": "german", "BM": "bank"}
T = {"adult": 10, "german": 100, "bank": 100}
SAMPLES = 10000      # uniform domain points per audit for the sampled unfair share (after the budget)
BOX_SAMPLES = 2000   # points (one per partition) checked inside wholly proven-fair / -unfair partitions
# FairQuant (ICSE 2025) on the same models, 60 s, one core: certified %, undecided %, seconds (issue 10)
FAIRQUANT = {"GC-1": (32.7, 67.3, 15.6), "GC-3": (58.4, 41.6, 7.1), "GC-4": (99.65, 0.34, 0.17),
             "GC-5": (99.8, 0.19, 1.2), "BM-1": (94.2, 5.8, 7.0), "BM-2": (93.4, 6.6, 5.6),
             "BM-4": (66.5, 33.5, 60.7), "BM-8": (90.8, 9.2, 27.4), "AC-3": (33.3, 66.7, 38.4),
             "AC-9": (91.1, 8.9, 5.9), "AC-12": (70.8, 29.2, 0.9)}


def fq_protected(model: str) -> str:
    """The attribute FairQuant audited on this model (sex on Adult, age on German and Bank)."""
    return "sex" if model.startswith("AC") else "age"


def models_dir() -> Path:
    root = Path(os.environ.get("CERTPRUNE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return root / "fairness" / "fairify_models"


def fairify_table(readme: Path) -> pd.DataFrame:
    """Fairify's published rows: model, protected, checked, total, sat, unsat, unk, seconds."""
    rows = []
    for line in readme.read_text().splitlines():
        m = re.match(r"\|\s*((?:AC|GC|BM)-\d+)\s*\|\s*(\w+)\s*\|\s*(\d+)\s*/\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|"
                     r"\s*(\d+)\s*\|\s*(\d+)\s*\|", line)
        if m:
            rows.append([m[1], m[2], *map(int, m.groups()[2:])])
    return pd.DataFrame(rows, columns=["model", "protected", "checked", "total", "f_sat", "f_unsat", "f_unk", "f_seconds"])


def audit_row(model: str, protected: str, timeout: float, workers: int, grid: bool) -> dict:
    import certprune
    from certprune.datasets.tabular import get_schema
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    ds = DATASET[model[:2]]
    spec = FairnessSpec.from_schema(get_schema(ds), (protected,), name=ds)
    net = certprune.load_model(models_dir() / f"{model}.h5")
    t0 = time.perf_counter()
    res = audit_fairness(net, spec, T[ds] if grid else None, timeout=timeout, workers=workers, progress=False,
                         samples=SAMPLES)
    sec = time.perf_counter() - t0
    c, sh = res.summary["counts"], res.summary["individual_share"]
    checks = sampled_checks(net, spec, res)
    fq, pr = FAIRQUANT.get(model) if protected == fq_protected(model) else None, res.summary.get("progress")
    hit = None
    if fq and pr:
        hit = next((t for t, f in zip(pr["seconds"], pr["fair_share"]) if 100 * f >= fq[0] - 1e-9), None)
    return {"model": model, "protected": protected, "partitions": res.summary["partitions"],
            "certified": c["certified"], "falsified": c["falsified"], "undecided": c["undecided"],
            "fair_pct": round(100 * sh["fair"], 3), "unfair_pct": round(100 * sh["unfair"], 3),
            "undecided_pct": round(100 * sh["undecided"], 3), "pairs": res.summary["counterexample_pairs"],
            "seconds": round(res.summary["seconds"], 1), "s_to_fq": hit, **checks}


def sampled_checks(net, spec, res, n_box: int = BOX_SAMPLES, seed: int = 1) -> dict:
    """What sampling says about the audit's proofs (exact per-point checks, the audit's own decider):

    * ``sampled_unfair_pct`` [``sampled_lo``, ``sampled_hi``]: unfair share of SAMPLES uniform
      domain points with its 95 % Wilson interval; ``interval_ok``: that interval meets
      [proven unfair, proven unfair + undecided] (a proven-fair or proven-unfair count that
      sampling contradicts fails it).
    * ``fair_box_points`` / ``fair_box_flips``: one uniform point in each of up to ``n_box`` random
      partitions whose every individual is proven fair; a flip there is a wrong certificate.
    * ``unfair_box_points`` / ``unfair_box_misses``: the same in partitions proven wholly unfair;
      a point that does not flip is a wrong proven-unfair count.
    """
    import numpy as np
    from certprune.verifiers.affected import unfair_individuals
    from certprune.verifiers.fairness import EngineFactory, _prepare_model
    from certprune.verifiers.fairness_bab import BabConfig
    from certprune.semantics import parse_semantics
    s, sh = res.summary, res.summary["individual_share"]
    est = s["sampled_unfair_share"]
    lo_p, hi_p = sh["unfair"], sh["unfair"] + sh["undecided"]
    out = {"sampled_unfair_pct": round(100 * est["share"], 3), "sampled_lo": round(100 * est["low"], 3),
           "sampled_hi": round(100 * est["high"], 3),
           "interval_ok": bool(est["high"] >= lo_p - 1e-12 and est["low"] <= hi_p + 1e-12)}
    exact, module, _ = _prepare_model(net)
    decide = EngineFactory(exact, module, spec, BabConfig(), parse_semantics(s["semantics"]))().decide_points
    rng = np.random.default_rng(seed)
    p = res.partitions
    for kind, mask, want in (("fair", [int(f) == int(n) for f, n in zip(p["fair"], p["points"])], False),
                             ("unfair", [int(u) == int(n) for u, n in zip(p["unfair"], p["points"])], True)):
        rows = p[np.asarray(mask, dtype=bool)]
        if len(rows) > n_box:
            rows = rows.iloc[rng.choice(len(rows), n_box, replace=False)]
        if not len(rows):
            out[f"{kind}_box_points"], out[f"{kind}_box_{'flips' if kind == 'fair' else 'misses'}"] = 0, 0
            continue
        lo = np.array([json.loads(v) for v in rows["lo"]], dtype=np.int64)
        hi = np.array([json.loads(v) for v in rows["hi"]], dtype=np.int64)
        X = rng.integers(lo, hi + 1).astype(np.float64)
        flips = unfair_individuals(decide, spec, X)
        out[f"{kind}_box_points"] = int(len(X))
        out[f"{kind}_box_{'flips' if kind == 'fair' else 'misses'}"] = int((flips != want).sum())
    return out


def side_by_side() -> dict:
    """FairQuant's certified % per model from this project's own side-by-side run (header-fixed Bank
    domains; experiments/results/fairquant_side_by_side.csv), when that file exists."""
    f = RESULTS / "fairquant_side_by_side.csv"
    if not f.exists():
        return {}
    return {r.model: float(r.fq_cer) for r in pd.read_csv(f).itertuples()}


def target_pct(model: str) -> float:
    """Issue 10's decided-share target: 99 % on German and Bank, 90 % on Adult."""
    return 90.0 if model.startswith("AC") else 99.0


def fairify_agreement(r) -> str:
    """Partition verdicts against Fairify's published SAT (counterexample) / UNSAT (fair) counts.

    Fairify does not publish which partitions it checked, so per model: ``exact`` when it checked
    all and left none unknown and our counts equal its counts; ``contradiction`` when our counts
    cannot be reconciled with its (more partitions with a counterexample than it left non-UNSAT,
    or more certified than it left non-SAT); ``consistent`` otherwise."""
    if r.falsified > r.total - r.f_unsat or r.certified > r.total - r.f_sat:
        return "contradiction"
    if r.checked == r.total and r.f_unk == 0 and r.falsified == r.f_sat and r.certified == r.f_unsat:
        return "exact"
    return "consistent"


def _checks(r) -> str:
    ok = bool(r.interval_ok) and r.fair_box_flips == 0 and r.unfair_box_misses == 0
    return (f"{r.sampled_unfair_pct:.3g} [{r.sampled_lo:.3g}, {r.sampled_hi:.3g}]; "
            f"{r.fair_box_flips}/{r.fair_box_points}, {r.unfair_box_misses}/{r.unfair_box_points} "
            f"{'ok' if ok else 'FAIL'}")


def _fq(r, sbs: dict) -> tuple[str, float | None]:
    """FairQuant's figures as text, and the certified % to compare with (None: no FairQuant row):
    the side-by-side run's where there is one (same domain as certprune's: the Bank ``.nnet``
    headers fixed there), else issue 10's."""
    fq = FAIRQUANT.get(r.model) if r.protected == fq_protected(r.model) else None
    if not fq:
        return "-", None
    here = sbs.get(r.model)
    t_fq = r.get("s_to_fq")
    txt = f"{fq[0]} / {fq[1]}, {fq[2]} s" + (f"; run here {here}" if here is not None else "")
    txt += f" (certprune at issue's %: {t_fq:.1f} s)" if pd.notna(t_fq) else ""
    return txt, here if here is not None else fq[0]


def markdown(df: pd.DataFrame, grid: bool = False) -> str:
    """The results table (whole domain or Fairify's grid) and how many audits meet each target."""
    sbs = side_by_side()
    chk = "sampled unfair % [95 % CI]; flips in proven-fair / misses in proven-unfair partitions"
    if grid:
        lines = ["| model | protected | partitions cert / cex / undecided | fully decided | individuals fair / unfair / "
                 f"undecided % | s | Fairify SAT / UNSAT / UNK (checked) | vs Fairify | {chk} |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for _, r in df.iterrows():
            lines.append(f"| {r.model} | {r.protected} | {r.certified} / {r.falsified} / {r.undecided} | "
                         f"{'yes' if r.undecided == 0 else 'no'} | {r.fair_pct:.4g} / {r.unfair_pct:.4g} / "
                         f"{r.undecided_pct:.4g} | {r.seconds:.1f} | {r.f_sat} / {r.f_unsat} / {r.f_unk} ({r.checked}) | "
                         f"{fairify_agreement(r)} | {_checks(r)} |")
        agree = [fairify_agreement(r) for _, r in df.iterrows()]
        lines.append(f"\nFully decided (every partition certified or with a counterexample): "
                     f"{int((df.undecided == 0).sum())} of {len(df)} audits. Against Fairify: "
                     f"{agree.count('exact')} exact, {agree.count('consistent')} consistent, "
                     f"{agree.count('contradiction')} contradictions.")
    else:
        lines = ["| model | protected | individuals fair / unfair / undecided % | decided % (target) | s | "
                 f"FairQuant cer / und %, s | fair >= FQ | {chk} |",
                 "|---|---|---|---|---|---|---|---|"]
        met_fq, n_fq = 0, 0
        for _, r in df.iterrows():
            txt, fq = _fq(r, sbs)
            dec, tgt = 100 - r.undecided_pct, target_pct(r.model)
            cmp = "-" if fq is None else ("yes" if r.fair_pct >= fq else f"no ({r.fair_pct - fq:+.3g})")
            met_fq, n_fq = met_fq + (cmp == "yes"), n_fq + (fq is not None)
            lines.append(f"| {r.model} | {r.protected} | {r.fair_pct:.4g} / {r.unfair_pct:.4g} / {r.undecided_pct:.4g} | "
                         f"{dec:.4g} ({'met' if dec >= tgt else 'not met'}, {tgt:g}) | {r.seconds:.1f} | {txt} | {cmp} | "
                         f"{_checks(r)} |")
        dec = 100 - df.undecided_pct
        met = dec >= df.model.map(target_pct)
        lines.append(f"\nDecided target (>= 99 % German and Bank, >= 90 % Adult) met on {int(met.sum())} of {len(df)} "
                     f"audits; certified-fair share >= FairQuant's (its side-by-side run's figure, else issue 10's) "
                     f"on {met_fq} of {n_fq} audits with a FairQuant row.")
    bad = int((~df.interval_ok.astype(bool) | (df.fair_box_flips > 0) | (df.unfair_box_misses > 0)).sum())
    lines.append(f"Sampling checks failed on {bad} of {len(df)} audits; worst audit time {df.seconds.max():.1f} s.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--grid", action="store_true", help="Fairify's partitions instead of the whole domain")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    a.out = a.out or str(RESULTS / ("fairify_individuals_grid.csv" if a.grid else "fairify_individuals.csv"))
    import torch
    torch.set_num_threads(1)
    from certprune.heap import keep_heap
    keep_heap()  # as the command line does (the audits run in this process)
    ref = fairify_table(models_dir() / "README.md")
    if a.only:
        ref = ref[ref.model.isin(a.only.split(","))]
    ref = ref.sort_values("model", key=lambda m: m.str[:2].map({"GC": 0, "BM": 1, "AC": 2}), kind="stable")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame()
    for _, r in ref.iterrows():
        if len(done) and ((done.model == r.model) & (done.protected == r.protected)).any():
            continue
        row = audit_row(r.model, r.protected, a.timeout, a.workers, a.grid)
        print(row, flush=True)
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(out, index=False)
    table = ref.merge(done, on=["model", "protected"], how="inner")
    md = markdown(table, a.grid)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
