"""One fairness audit per model in each of several checkouts, one after the other (one thread
each), printing the individuals decided: the before / after figures of a change, from the same
run on the same machine.

    python experiments/fairness_before_after.py --trees /path/base /path/change \
        --models AC-2,AC-5 --dataset adult --protected race [--timeout 60] --out DIR

Each tree runs ``python -m certprune fairness`` with ``PYTHONPATH`` set to it (the interpreter is
this one's); the Fairify models come from ``$CERTPRUNE_DATA`` (default ../shared/data). Lines are
``MODEL PROTECTED TREE fair F unfair U undecided D decided X`` (percent of individuals), also
appended to ``DIR/results.txt``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs="+", required=True, help="checkouts to compare, run in this order")
    ap.add_argument("--models", required=True, help="comma-separated Fairify model names (AC-2,GC-3,...)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--protected", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    data = Path(os.environ.get("CERTPRUNE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    args.out.mkdir(parents=True, exist_ok=True)
    for model in args.models.split(","):
        for tree in args.trees:
            name = Path(tree).name
            out = args.out / f"{model}-{args.protected}-{name}"
            env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()), CERTPRUNE_DATA=str(data), OMP_NUM_THREADS="1")
            cmd = [sys.executable, "-m", "certprune", "fairness", str(data / "fairness" / "fairify_models" / f"{model}.h5"),
                   "--dataset", args.dataset, "--protected", args.protected, "--timeout", str(args.timeout),
                   "--no-progress", "--out", str(out)]
            with open(f"{out}.log", "w") as log:
                subprocess.run(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
            ind = json.loads((out / "summary.json").read_text())["individuals"]
            t = ind["total"]
            line = (f"{model} {args.protected} {name} fair {100 * ind['fair'] / t:.3f} unfair {100 * ind['unfair'] / t:.4f} "
                    f"undecided {100 * ind['undecided'] / t:.3f} decided {100 * (ind['fair'] + ind['unfair']) / t:.3f}")
            print(line, flush=True)
            with open(args.out / "results.txt", "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
