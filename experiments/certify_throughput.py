"""Throughput of ``certify`` with 1 and 2 local worker processes (and a local Ray cluster when ray
is installed) on the bundled MNIST MLP: the same samples, verdicts compared with the serial run.

Usage: python experiments/certify_throughput.py [-n 24] [--eps 0.02] [--timeout 5] [--offset 8000]
Writes experiments/results/certify_throughput.md. Wall time counts the whole certify call (PGD on
all samples, CROWN margins, verification); only verification runs in the workers.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=24)
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--offset", type=int, default=8000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from certprune.datasets import load_mnist
    from certprune.network import load_model
    from certprune.verifiers.robustness import certify_robustness
    X, y = load_mnist()
    X, y = X[args.offset:args.offset + args.n], y[args.offset:args.offset + args.n]
    net = load_model(REPO / "certprune" / "models" / "mnist_mlp.onnx")
    runs = [("serial", {}), ("2 local workers", {"workers": 2})]
    try:
        import ray  # noqa: F401
        runs.append(("local Ray (2 CPUs)", {"ray_address": "local"}))
    except ImportError:
        pass
    results = []
    for name, kw in runs:
        t = time.perf_counter()
        rep = certify_robustness(net, X, y, args.eps, timeout=args.timeout, indices=range(args.offset,
                                 args.offset + args.n), **kw)
        results.append((name, time.perf_counter() - t, rep))
        print(name, round(results[-1][1], 1), rep.counts, flush=True)
    _write(args, results)


def _write(args, results) -> None:
    ref = {r["index"]: r["verdict"] for r in results[0][2].rows}
    base = results[0][1]
    lines = ["# certify throughput: serial, 2 local workers, local Ray", "",
             f"MNIST MLP (`certprune/models/mnist_mlp.onnx`), test images {args.offset}..{args.offset + args.n - 1} "
             f"(n={args.n}), eps {args.eps:g}, timeout {args.timeout:g} s per sample, torch 1 thread per process. "
             f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared with other "
             "jobs while this ran (loaded), so the speed-up is a lower bound of what idle cores give. The Ray "
             "row (when ray is importable) includes starting a local Ray instance inside the call.", "",
             "| runner | wall s | samples/s | speed-up | certified | falsified | unknown | verdicts = serial |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, secs, rep in results:
        same = {r["index"]: r["verdict"] for r in rep.rows} == ref
        c = rep.counts
        lines.append(f"| {name} | {secs:.1f} | {args.n / secs:.2f} | {base / secs:.2f} | {c['certified']} | "
                     f"{c['falsified']} | {c['unknown']} | {'yes' if same else 'NO'} |")
    lines += ["", f"Command: `python experiments/certify_throughput.py -n {args.n} --eps {args.eps:g} "
                  f"--timeout {args.timeout:g} --offset {args.offset}`", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "certify_throughput.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
