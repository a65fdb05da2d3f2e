"""Audit the 25 Fairify models for every protected attribute Fairify used (37 audits) and compare
with Fairify's published partition counts (read from the data README) and FairQuant's published
shares (measured in issue 10: certified / undecided %, seconds; 60 s, one core). Rows are
checkpointed to a CSV, so a rerun resumes.

    python experiments/fairify_benchmark.py [--timeout 60] [--workers 1] [--only AC-9,GC-3] [--grid]

By default the whole domain is one partition (certprune's default); ``--grid`` uses Fairify's
partitions (T = 10 Adult, 100 German and Bank). Individuals decided = proven fair + proven unfair.
``s_to_fq``: seconds into the audit (summary.json's ``progress``) at which the proven-fair share
first reaches FairQuant's certified share of the table below (blank: never, or no FairQuant row).
Writes experiments/results/fairify_individuals.csv and .md (or fairify_individuals_grid.*).
"""
from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
DATASET = {"AC": "adult", "GC": "german", "BM": "bank"}
T = {"adult": 10, "german": 100, "bank": 100}
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
                         samples=0)
    sec = time.perf_counter() - t0
    c, sh = res.summary["counts"], res.summary["individual_share"]
    fq, pr = FAIRQUANT.get(model) if protected == fq_protected(model) else None, res.summary.get("progress")
    hit = None
    if fq and pr:
        hit = next((t for t, f in zip(pr["seconds"], pr["fair_share"]) if 100 * f >= fq[0] - 1e-9), None)
    return {"model": model, "protected": protected, "partitions": res.summary["partitions"],
            "certified": c["certified"], "falsified": c["falsified"], "undecided": c["undecided"],
            "fair_pct": round(100 * sh["fair"], 3), "unfair_pct": round(100 * sh["unfair"], 3),
            "undecided_pct": round(100 * sh["undecided"], 3), "pairs": res.summary["counterexample_pairs"],
            "seconds": round(sec, 1), "s_to_fq": hit}


def markdown(df: pd.DataFrame) -> str:
    lines = ["| model | protected | individuals fair / unfair / undecided % | decided % | s | partitions cert / fals / undec "
             "| FairQuant cer / und %, s | Fairify SAT / UNSAT / UNK (checked) |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        fq = FAIRQUANT.get(r.model)
        fq_s = f"{fq[0]} / {fq[1]}, {fq[2]} s" if fq and r.protected == fq_protected(r.model) else "-"
        t_fq = r.get("s_to_fq")
        fq_s += f" (certprune: {t_fq:.1f} s)" if fq_s != "-" and pd.notna(t_fq) else ""
        lines.append(f"| {r.model} | {r.protected} | {r.fair_pct:.4g} / {r.unfair_pct:.4g} / {r.undecided_pct:.4g} | "
                     f"{100 - r.undecided_pct:.4g} | {r.seconds:.1f} | {r.certified} / {r.falsified} / {r.undecided} | "
                     f"{fq_s} | {r.f_sat} / {r.f_unsat} / {r.f_unk} ({r.checked}) |")
    lines.append(f"\nDecided >= 99 %: {int((df.undecided_pct <= 1).sum())} of {len(df)} audits; "
                 f"worst time {df.seconds.max():.1f} s.")
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
    md = markdown(table)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
