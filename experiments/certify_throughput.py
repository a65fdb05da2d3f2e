"""Throughput of ``certify`` with 1 and 2 local worker processes (and a local Ray cluster when ray
is installed) on the bundled MNIST MLP: the same samples, verdicts compared with the serial run.

Usage: python experiments/certify_throughput.py [-n 24] [--eps 0.02] [--timeout 5] [--offset 8000]
Writes experiments/results/certify_throughput.md. Wall time counts the whole certify call (PGD on
all samples, the batched root CROWN, verification of the samples CROWN leaves open); only that
verification runs in the workers. The Ray cluster (2 CPUs, 127.0.0.1) is started before its
timed call (its start-up is reported apart), as a user's running cluster would be.
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
    X, y = load_mnist()
    X, y = X[args.offset:args.offset + args.n], y[args.offset:args.offset + args.n]
    net = load_model(REPO / "certprune" / "models" / "mnist_mlp.onnx")
    runs = [("serial", {}), ("2 local workers", {"workers": 2})]
    results, ray_start = [], None
    for name, kw in runs:
        results.append(_timed(name, net, X, y, args, kw))
    try:
        import ray
    except ImportError:
        ray = None
    if ray is not None:
        t = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
        ray_start = time.perf_counter() - t
        try:
            addr = getattr(ray.get_runtime_context(), "gcs_address", None) or "auto"
            results.append(_timed("local Ray cluster (2 CPUs)", net, X, y, args, {"ray_address": addr}))
        finally:
            ray.shutdown()
    _write(args, results, ray_start)


def _timed(name, net, X, y, args, kw) -> tuple:
    from certprune.verifiers.robustness import certify_robustness
    t = time.perf_counter()
    rep = certify_robustness(net, X, y, args.eps, timeout=args.timeout,
                             indices=range(args.offset, args.offset + args.n), **kw)
    secs = time.perf_counter() - t
    print(name, round(secs, 1), rep.counts, flush=True)
    return name, secs, rep


def _write(args, results, ray_start) -> None:
    ref = {r["index"]: r["verdict"] for r in results[0][2].rows}
    base = results[0][1]
    lines = ["# certify throughput: serial, 2 local workers, local Ray", "",
             f"MNIST MLP (`certprune/models/mnist_mlp.onnx`), test images {args.offset}..{args.offset + args.n - 1} "
             f"(n={args.n}), eps {args.eps:g}, timeout {args.timeout:g} s per sample, torch 1 thread per process. "
             f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared with other "
             f"jobs while this ran (load average {os.getloadavg()[0]:.1f} at the end), so the speed-up is a lower "
             "bound of what idle cores give. Samples that the batched root CROWN certifies never reach the "
             "workers." + (f" Starting the local Ray cluster took {ray_start:.1f} s (not in its row)."
                           if ray_start is not None else " ray was not importable: no Ray row."), "",
             "| runner | wall s | samples/s | speed-up | certified | falsified | unknown | verdicts = serial |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, secs, rep in results:
        same = {r["index"]: r["verdict"] for r in rep.rows} == ref
        c = rep.counts
        lines.append(f"| {name} | {secs:.1f} | {args.n / secs:.2f} | {base / secs:.2f} | {c['certified']} | "
                     f"{c['falsified']} | {c['unknown']} | {'yes' if same else 'NO'} |")
    serial = {r["index"]: r for r in results[0][2].rows}
    for name, _, rep in results[1:]:
        for r in rep.rows:
            if r["verdict"] != serial[r["index"]]["verdict"]:
                s = serial[r["index"]]
                lines += ["", f"{name}: sample {r['index']} {r['verdict']} after {r['seconds_verify']} s of verify "
                              f"(serial: {s['verdict']} after {s['seconds_verify']} s; timeout {args.timeout:g} s)."]
    lines += ["", f"Command: `python experiments/certify_throughput.py -n {args.n} --eps {args.eps:g} "
                  f"--timeout {args.timeout:g} --offset {args.offset}`", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "certify_throughput.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
