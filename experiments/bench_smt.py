"""Benchmark the z3 back end's encodings and strategies on Fairify partitions (twin network).

For each Fairify model and protected attribute, a fixed random sample of partitions (seed 0,
Fairify's T: 10 for Adult, 100 for German/Bank; the twin graph) is solved with ``certprune.verifiers.smt.
solve_property`` under every configuration; each query gets ``--timeout`` seconds. Reported:
decided queries (sat + unsat) and the summed solver time. Sat answers are re-run in float32 on
the original model; a sat whose decisions do not differ there is counted as ``sat_invalid``
(expected on non-strict boundary points, never as a verdict). Writes a CSV and a markdown table.

Usage: ``python experiments/bench_smt.py [--partitions 6] [--timeout 5] [--out experiments/results]``
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

CASES = [("GC-1", "sex"), ("GC-3", "age"), ("GC-4", "sex"), ("AC-3", "sex"), ("AC-1", "sex"), ("BM-5", "age")]
T = {"german": 100, "adult": 10, "bank": 100}
CONFIGS = {
    "ite+elim-ite (default)": dict(),
    "ite+z3 default solver": dict(strategy="default"),
    "disjunction+elim-ite": dict(relu="disjunction"),
    "ite+elim-ite, no triangle": dict(triangle=False),
    "no bounds, plain solver (Fairify-like)": dict(strategy="default", auto_bounds=False, triangle=False),
}


def run_case(model_name: str, attr: str, n_parts: int, timeout: float, configs: list[str]) -> list[dict]:
    import torch

    from certprune.datasets import get_schema
    from certprune.fairness_spec import FairnessSpec
    from certprune.network import load_model
    from certprune.verifiers.affine import AffineReluNet
    from certprune.verifiers.partition import grid_partition
    from certprune.verifiers.smt import SmtOptions, solve_property
    from certprune.verifiers.twin import partition_properties, twin_graph, twin_layout
    from certprune.datasets.paths import data_root

    ds = {"GC": "german", "AC": "adult", "BM": "bank"}[model_name[:2]]
    model = load_model(data_root() / "fairness" / "fairify_models" / f"{model_name}.h5")
    spec = FairnessSpec.from_schema(get_schema(ds), attr)
    layout = twin_layout(spec)
    tw = twin_graph(AffineReluNet.from_module(model), layout).graph
    part = grid_partition(spec.lower, spec.upper, T[ds])
    ids = np.random.default_rng(0).permutation(part.count)[:n_parts]
    rows = []
    for cname in configs:
        opts = SmtOptions(**CONFIGS[cname])
        for pid in ids:
            lo, hi = part.bounds([pid])
            for prop in partition_properties(spec, lo[0], hi[0]):
                t0 = time.perf_counter()
                out = solve_property(tw, prop, timeout, options=opts)
                status = out.status
                if status == "sat":
                    x, xp = layout.split(out.x[None])
                    with torch.no_grad():
                        y = model(torch.as_tensor(np.concatenate([x, xp]), dtype=torch.float32)).numpy().ravel()
                    status = "sat" if (y[0] > 0) != (y[1] > 0) else "sat_invalid"
                rows.append(dict(model=model_name, attr=attr, config=cname, partition=int(pid), status=status,
                                 seconds=time.perf_counter() - t0, unstable=out.stats["unstable"]))
    return rows


def markdown(df) -> str:
    """A pipe table (hand-written to avoid the optional ``tabulate`` dependency of to_markdown)."""
    head = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=True)]
    return "\n".join(lines)


def main() -> None:
    import pandas as pd
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--out", default="experiments/results")
    ap.add_argument("--cases", nargs="*", default=[f"{m}:{a}" for m, a in CASES], help="MODEL:ATTR ...")
    ap.add_argument("--configs", nargs="*", type=int, default=list(range(len(CONFIGS))),
                    help="indices into CONFIGS: " + "; ".join(f"{i} = {c}" for i, c in enumerate(CONFIGS)))
    ap.add_argument("--tag", default="", help="suffix of the output file names")
    args = ap.parse_args()
    configs = [list(CONFIGS)[i] for i in args.configs]
    rows = []
    for case in args.cases:
        m, a = case.split(":")
        rows += run_case(m, a, args.partitions, args.timeout, configs)
        print(f"done {m} {a}", flush=True)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"smt_bench{args.tag}.csv", index=False)
    header = (f"cases: {' '.join(args.cases)}; {args.partitions} partitions per case (seed 0), "
              f"{args.timeout:g} s per query")
    text = summarise(df, header)
    (out / f"smt_bench{args.tag}.md").write_text(text)
    print(text)


def summarise(df, header: str) -> str:
    """Markdown: decided/sat/unsat/time per configuration, and decided per model."""
    df = df.assign(decided=df.status.isin(["sat", "unsat"]))
    tab = df.groupby("config").agg(queries=("status", "size"), decided=("decided", "sum"),
                                   sat=("status", lambda s: int((s == "sat").sum())),
                                   unsat=("status", lambda s: int((s == "unsat").sum())),
                                   sat_invalid=("status", lambda s: int((s == "sat_invalid").sum())),
                                   seconds=("seconds", "sum"))
    tab = tab.astype({c: int for c in tab.columns if c != "seconds"}).round({"seconds": 1})
    per_model = df.pivot_table(index="model", columns="config", values="decided", aggfunc="sum").astype(int)
    return f"{header}\n\n{markdown(tab)}\n\ndecided per model:\n\n{markdown(per_model)}\n"


if __name__ == "__main__":
    main()
