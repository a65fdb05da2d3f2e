"""Audit the 25 Fairify models for every protected attribute Fairify used (37 audits) with
Fairify's partitions (T = 10 Adult, 100 German and Bank) and compare with Fairify's published
numbers (read from the data README). Rows are checkpointed to a CSV, so a rerun resumes.

    python experiments/fairify_benchmark.py [--timeout 60] [--workers 1] [--only AC-9,GC-3]

Writes experiments/results/fairify_benchmark.csv and fairify_benchmark.md.
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


def audit_row(model: str, protected: str, timeout: float, workers: int) -> dict:
    import certprune
    from certprune.datasets.tabular import get_schema
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    ds = DATASET[model[:2]]
    spec = FairnessSpec.from_schema(get_schema(ds), (protected,), name=ds)
    net = certprune.load_model(models_dir() / f"{model}.h5")
    t0 = time.perf_counter()
    res = audit_fairness(net, spec, T[ds], timeout=timeout, workers=workers, progress=False)
    sec = time.perf_counter() - t0
    c = res.summary["counts"]
    return {"model": model, "protected": protected, "partitions": res.summary["partitions"],
            "certified": c["certified"], "falsified": c["falsified"], "undecided": c["undecided"],
            "undecided_share": res.summary["domain_share"]["undecided"], "seconds": round(sec, 1)}


def markdown(df: pd.DataFrame) -> str:
    lines = ["| model | protected | partitions | certprune cert / fals / undec | s | Fairify SAT / UNSAT / UNK (checked) | Fairify s |",
             "|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r.model} | {r.protected} | {r.partitions} | {r.certified} / {r.falsified} / {r.undecided} | "
                     f"{r.seconds:.1f} | {r.f_sat} / {r.f_unsat} / {r.f_unk} ({r.checked}) | {r.f_seconds} |")
    done = df[df.undecided == 0]
    lines.append(f"\nFully decided: {len(done)} of {len(df)} audits; worst time {df.seconds.max():.1f} s.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--out", default=str(RESULTS / "fairify_benchmark.csv"))
    a = ap.parse_args()
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
        row = audit_row(r.model, r.protected, a.timeout, a.workers)
        print(row, flush=True)
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(out, index=False)
    table = ref.merge(done, on=["model", "protected"], how="inner")
    md = markdown(table)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
