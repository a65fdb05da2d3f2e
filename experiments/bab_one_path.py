"""Branch and bound on one engine: decided count and time on a fixed sample of ACAS Xu and
mnist_fc instances, so that a run of this script on two checkouts (before / after a change to
the search) compares the same instances under the same load.

    PYTHONPATH=CHECKOUT python experiments/bab_one_path.py --tag NAME [--acas 30] [--mnist 6] [--cap 10]

Sample: every 6th ACAS Xu instance of instances.csv (the first ``--acas``), and the first
``--mnist`` mnist_fc instances of every 15th row; each runs under ``--cap`` seconds through
``certprune bench`` (``bench.run_bench``, one thread). Writes OUT/TAG/{acasxu,mnist_fc}/ and
prints per-benchmark decided counts and the summed seconds.
"""
from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CERTPRUNE_DATA", "../shared/data"))
    ap.add_argument("--tag", required=True)
    ap.add_argument("--acas", type=int, default=30)
    ap.add_argument("--mnist", type=int, default=6)
    ap.add_argument("--cap", type=float, default=10.0)
    ap.add_argument("--out", default="experiments/results/bab_one_path")
    args = ap.parse_args()
    import torch

    import certprune
    from certprune.verifiers import bench
    from certprune.verifiers.bench_store import BenchStore
    from certprune.verifiers.config_file import effective_config
    torch.set_num_threads(1)
    print("certprune from", Path(certprune.__file__).parent, flush=True)
    config = effective_config({"threads": 1})
    for name, step, count in (("acasxu", 6, args.acas), ("mnist_fc", 15, args.mnist)):
        if count <= 0:
            continue
        path = Path(args.data) / "vnncomp" / name / "instances.csv"
        insts = bench.read_instances(path)[::step][:count]
        store = BenchStore(Path(args.out) / args.tag / name, bench.run_identity(path, args.cap, config), config)
        rows = bench.run_bench(insts, store, args.cap, config)
        words = collections.Counter(r["result"] for r in rows)
        decided = sum(words[w] for w in bench.DECIDED)
        secs = sum(float(r["seconds"]) for r in rows)
        print(f"{args.tag} {name}: {len(rows)} instances, decided {decided} {dict(words)}, "
              f"total {secs:.1f} s, decided-only {sum(float(r['seconds']) for r in rows if r['result'] in bench.DECIDED):.1f} s",
              flush=True)
        for r in rows:
            print(f"  {r['onnx']} {r['vnnlib']} {r['result']} {r['seconds']}", flush=True)


if __name__ == "__main__":
    main()
