"""Loading benchmark: time to load every ACAS Xu ONNX net and Fairify Keras model, the largest
deviation from the reference (onnxruntime / numpy), and VNN-LIB parse time. Prints a Markdown table.

Usage: python experiments/bench_loading.py [--data DIR]   (default: $CERTPRUNE_DATA or ../shared/data)
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def _ort_max_diff(net, path, rng) -> float:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = rng.uniform(-0.5, 0.5, size=(100, *net.info.input_shape)).astype(np.float32)
    ref = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0].reshape(1, -1) for i in range(len(x))])
    return float(np.abs(net.run_float32(x) - ref).max())


def _keras_max_diff(net, path, rng) -> float:
    import h5py
    import torch
    x = rng.integers(0, 10, size=(100, *net.info.input_shape)).astype(np.float32)
    with h5py.File(path, "r") as f:
        h = x.astype(np.float64)
        for lay in json.loads(f.attrs["model_config"])["config"]["layers"]:
            g = f["model_weights"][lay["config"]["name"]]
            k, b = (np.asarray(g[n]) for n in g.attrs["weight_names"])
            h = h @ k + b
            h = np.maximum(h, 0) if lay["config"]["activation"] == "relu" else 1 / (1 + np.exp(-h))
    return float(np.abs(torch.sigmoid(torch.from_numpy(net.run_float32(x))).numpy() - h).max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("CERTPRUNE_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    data = Path(ap.parse_args().data)
    from certprune.network import load_model
    from certprune.vnnlib import read_vnnlib
    rng = np.random.default_rng(0)
    rows = []
    for label, paths, check in (
            ("ACAS Xu ONNX (45 nets)", sorted((data / "vnncomp/acasxu/onnx").glob("*.onnx")), _ort_max_diff),
            ("Fairify Keras HDF5 (25 models)", sorted((data / "fairness/fairify_models").glob("*.h5")), _keras_max_diff)):
        load_model(paths[0])  # warm imports
        times, diffs = [], []
        for p in paths:
            t = time.perf_counter()
            net = load_model(p)
            times.append(time.perf_counter() - t)
            diffs.append(check(net, p, rng))
        rows.append((label, len(paths), 1000 * np.median(times), 1000 * max(times), max(diffs)))
    props = sorted((data / "vnncomp/acasxu/vnnlib").glob("*.vnnlib"))
    t = time.perf_counter()
    for p in props:
        read_vnnlib(p)
    rows.append(("ACAS Xu VNN-LIB (10 properties)", len(props), 1000 * (time.perf_counter() - t) / len(props), float("nan"), float("nan")))
    print("| files | n | median ms | max ms | max abs diff vs reference |")
    print("|---|---|---|---|---|")
    for label, n, med, mx, diff in rows:
        print(f"| {label} | {n} | {med:.1f} | {'' if np.isnan(mx) else f'{mx:.1f}'} | {'' if np.isnan(diff) else f'{diff:.1e}'} |")


if __name__ == "__main__":
    main()
