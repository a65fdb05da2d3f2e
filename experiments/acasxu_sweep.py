"""All 186 ACAS Xu instances in one process: a short pass with a small budget, then a longer pass
on what stayed undecided. Both passes are `certprune bench` runs (certprune.verifiers.bench), so
rows are appended as they finish and a rerun resumes.

    python experiments/acasxu_sweep.py [--first 2] [--second 20] [--out experiments/results/acasxu_sweep]

writes OUT/pass1/ and OUT/pass2/ (results.csv, summary.json, counterexamples/) and prints the
combined counts. Times exclude Python start-up (paid once); see bench_verify.py for per-instance
CLI runs vs Marabou.
"""
from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path


def run_pass(instances, instances_path: Path, out: Path, cap: float, config: dict) -> dict:
    """One bench pass over ``instances`` with ``cap`` seconds each; {key: result word}."""
    from certprune.verifiers import bench
    from certprune.verifiers.bench_store import BenchStore

    store = BenchStore(out, bench.run_identity(instances_path, cap, config), config)
    rows = bench.run_bench(instances, store, cap, config)
    print(bench.format_summary(bench.summarize(rows)), flush=True)
    return {(r["onnx"], r["vnnlib"]): r["result"] for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CERTPRUNE_DATA", "../shared/data"))
    ap.add_argument("--first", type=float, default=2.0, help="seconds per instance, first pass")
    ap.add_argument("--second", type=float, default=20.0, help="seconds per undecided instance, second pass")
    ap.add_argument("--out", default="experiments/results/acasxu_sweep")
    args = ap.parse_args()
    import torch

    from certprune.verifiers import bench
    from certprune.verifiers.config_file import effective_config
    torch.set_num_threads(1)
    path = Path(args.data) / "vnncomp" / "acasxu" / "instances.csv"
    instances = bench.read_instances(path)
    config = effective_config({"threads": 1})
    final = run_pass(instances, path, Path(args.out) / "pass1", args.first, config)
    print(f"after pass 1 ({args.first:g} s):", dict(collections.Counter(final.values())), flush=True)
    rest = [i for i in instances if final[(i.onnx, i.vnnlib)] not in bench.DECIDED]
    final.update(run_pass(rest, path, Path(args.out) / "pass2", args.second, config))
    print(f"after pass 2 ({args.second:g} s):", dict(collections.Counter(final.values())), flush=True)


if __name__ == "__main__":
    main()
