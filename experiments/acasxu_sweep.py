"""All 186 ACAS Xu instances in one process: a short pass with a small budget, then a longer pass
on what stayed undecided. Rows are appended to a CSV as they finish, so a rerun resumes.

    python experiments/acasxu_sweep.py [--first 2] [--second 20] [--out experiments/results/acasxu_sweep.csv]

Verdicts per instance: FALSIFIED if any input box is falsified, CERTIFIED if all are certified.
Times exclude Python start-up (in-process); see bench_verify.py for per-instance CLI runs vs Marabou.
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import time
from pathlib import Path


def decide(root: Path, onnx: str, vnn: str, timeout: float) -> str:
    import certprune
    from certprune.vnnlib import property_for_model, read_vnnlib

    net = certprune.load_model(root / onnx)
    props = read_vnnlib(root / vnn, num_outputs=net.info.num_outputs)
    words = [certprune.verify(net, property_for_model(p, net.info.input_shape), timeout=timeout).verdict.name
             for p in props]
    if "FALSIFIED" in words:
        return "FALSIFIED"
    return "CERTIFIED" if all(w == "CERTIFIED" for w in words) else "UNKNOWN"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CERTPRUNE_DATA", "../shared/data"))
    ap.add_argument("--first", type=float, default=2.0, help="seconds per instance, first pass")
    ap.add_argument("--second", type=float, default=20.0, help="seconds per undecided instance, second pass")
    ap.add_argument("--out", default="experiments/results/acasxu_sweep.csv")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    root = Path(args.data) / "vnncomp" / "acasxu"
    out = Path(args.out)
    done = {}
    if out.exists():
        done = {(r["onnx"], r["vnnlib"], r["pass"]): r for r in csv.DictReader(open(out))}
    new = not out.exists()
    with open(out, "a", newline="") as f:
        w = csv.DictWriter(f, ["onnx", "vnnlib", "pass", "timeout", "verdict", "seconds"])
        if new:
            w.writeheader()
        final = {}
        for p, budget in (("1", args.first), ("2", args.second)):
            for onnx, vnn, _ in csv.reader(open(root / "instances.csv")):
                if p == "2" and final[(onnx, vnn)] != "UNKNOWN":
                    continue
                row = done.get((onnx, vnn, p))
                if row is None:
                    t0 = time.monotonic()
                    verdict = decide(root, onnx, vnn, budget)
                    row = {"onnx": onnx, "vnnlib": vnn, "pass": p, "timeout": budget, "verdict": verdict,
                           "seconds": round(time.monotonic() - t0, 2)}
                    w.writerow(row)
                    f.flush()
                final[(onnx, vnn)] = row["verdict"]
            print(f"after pass {p} ({budget:g} s):", dict(collections.Counter(final.values())), flush=True)


if __name__ == "__main__":
    main()
