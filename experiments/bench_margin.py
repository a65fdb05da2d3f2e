"""What the float64 rounding margin of the bound passes costs (``certprune.bounds.crown``,
"Rounding"): the same calls with ``crown.ROUNDING_MARGIN`` on and off, interleaved in one
process (on, off, on, off, ...), CPU seconds of the fastest of ``--repeat`` calls each, and the
largest change of a bound relative to ``1 + |bound|``.

Rows: bench_bounds' 20-50-30-15-10-1 MLP on 10,000 boxes (IBP, CROWN with all / unstable
rows) and 500 boxes (alpha-CROWN), its MNIST convnet on 100 boxes (CROWN), and branch-and-bound
domain bounds (``engine.domain_bounds``: intersected CROWN, split ReLUs, 5 alpha/beta steps) of
1,024 MLP domains, forward symbolic mode on the MLP, and the fairness twin bounds of two Fairify
models (BM-8, AC-5) on 2,000 integer boxes.

Run: ``python experiments/bench_margin.py`` (writes experiments/results/f64margin/bench_margin.md).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from certprune.bounds import crown, engine
from certprune.graph import build_graph
from certprune.verifiers.bounds import compute_bounds

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "f64margin" / "bench_margin.md"


def _bench_bounds():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_bounds", HERE / "bench_bounds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def interleaved(fn, repeat: int):
    """(seconds on, seconds off, max relative change) of ``fn() -> tensor`` with the margin on / off."""
    best = {True: float("inf"), False: float("inf")}
    out = {}
    for _ in range(repeat):
        for on in (True, False):
            crown.ROUNDING_MARGIN = on
            t = time.process_time()
            out[on] = fn()
            best[on] = min(best[on], time.process_time() - t)
    crown.ROUNDING_MARGIN = True
    rel = max(float(((a - b).abs() / (1 + b.abs())).max()) for a, b in zip(out[True], out[False]))
    return best[True], best[False], rel


def _twin_cases():
    """Fairness twin bounds (forward + CROWN + pair differences, ``twin_bounds.twin_bounds``) of
    two Fairify models on 2,000 random integer boxes of their domains (FairQuant's attribute)."""
    import numpy as np

    import certprune
    from certprune.datasets.tabular import get_schema
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.bounds import affine_net
    from certprune.verifiers.twin import decision_logit_net, twin_layout
    from certprune.verifiers.twin_bounds import twin_bounds
    root = Path(os.environ.get("CERTPRUNE_DATA", HERE.parents[1] / "shared" / "data")) / "fairness" / "fairify_models"
    out = []
    for model, ds, prot in (("BM-8", "bank", "age"), ("AC-5", "adult", "sex")):
        spec = FairnessSpec.from_schema(get_schema(ds), (prot,), name=ds)
        net = decision_logit_net(affine_net(certprune.load_model(root / f"{model}.h5")))
        layout = twin_layout(spec)
        rng = np.random.default_rng(0)
        n, N = spec.num_features, 2000
        lo, hi = spec.lower.astype(np.float64), spec.upper.astype(np.float64)
        a = rng.uniform(lo, hi, (N, n))
        w = (hi - lo) * rng.uniform(0, 0.05, (N, n))
        zlo, zhi = np.zeros((N, layout.dz)), np.zeros((N, layout.dz))
        zlo[:, :n], zhi[:, :n] = np.floor(np.maximum(lo, a - w)), np.ceil(np.minimum(hi, a + w))
        for j, i in enumerate(layout.protected):
            zlo[:, i] = zhi[:, i] = lo[i]
            zlo[:, n + j] = zhi[:, n + j] = hi[i]
        zl, zh = torch.from_numpy(zlo), torch.from_numpy(zhi)

        def run(net=net, layout=layout, zl=zl, zh=zh):
            tb = twin_bounds(net, layout, zl, zh)
            return [tb.y[0], tb.y[1], tb.diff[0], tb.diff[1]]
        out.append((f"{model} twin ({prot})", "fairness twin bounds", N, run))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bb = _bench_bounds()
    mlp = bb.bench_mlp()
    lo, hi = bb.mlp_boxes(10_000)
    rows = []

    def bounds(model, lo, hi, method, shape, **kw):
        def run():
            r = compute_bounds(model, lo, hi, method=method, engine="native", input_shape=shape, **kw)
            return [torch.as_tensor(r.lower), torch.as_tensor(r.upper)]
        return run

    cases = [("MLP 20-50-30-15-10-1", "ibp", 10_000, bounds(mlp, lo, hi, "ibp", (20,))),
             ("MLP 20-50-30-15-10-1", "crown, all rows", 10_000, bounds(mlp, lo, hi, "crown", (20,), intermediate="all")),
             ("MLP 20-50-30-15-10-1", "crown, unstable rows", 10_000, bounds(mlp, lo, hi, "crown", (20,))),
             ("MLP 20-50-30-15-10-1", "alpha-crown", 500, bounds(mlp, lo[:500], hi[:500], "alpha-crown", (20,)))]
    try:
        conv = bb.mnist_convnet()
        ml, mh = bb.mnist_boxes(100)
        cases.append(("MNIST convnet", "crown", 100, bounds(conv, ml.reshape(100, -1), mh.reshape(100, -1), "crown",
                                                            (1, 28, 28))))
    except Exception as e:  # no MNIST data here
        print("MNIST convnet skipped:", e)
    g = build_graph(mlp, (20,))
    st = crown.intermediate(g, lo[:1024], hi[:1024])
    gen = torch.Generator().manual_seed(0)
    splits = []
    for i in g.relu_nodes:
        l, u = (t.reshape(1024, -1) for t in st.pre[i])
        unst = (l < 0) & (u > 0)
        pick = unst & (torch.rand(unst.shape, generator=gen) < 0.3)
        side = torch.where(torch.rand(unst.shape, generator=gen) < 0.5, 1, -1)
        splits.append((pick * side).to(torch.int8))
    C = torch.eye(1, dtype=torch.float64)
    c = torch.zeros(1, dtype=torch.float64)

    def dom():
        return [engine.domain_bounds(g, lo[:1024], hi[:1024], splits, C, c, iters=5).lower]
    cases.append(("MLP 20-50-30-15-10-1", "BaB domains: CROWN + 5 alpha/beta steps", 1024, dom))
    cases.append(("MLP 20-50-30-15-10-1", "forward mode", 10_000, bounds(mlp, lo, hi, "crown", (20,), mode="forward")))
    try:
        cases += _twin_cases()
    except Exception as e:  # no fairness data here
        print("fairness twin rows skipped:", e)
    for net, method, n, fn in cases:
        fn()  # warm-up
        on, off, rel = interleaved(fn, args.repeat)
        rows.append((net, method, n, on, off, rel))
        print(f"{net} {method}: on {on:.3f} s, off {off:.3f} s, cost {on / off - 1:+.1%}, max rel change {rel:.1e}")
    load = os.getloadavg()[0]
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread, float64, "
             f"CPU seconds, fastest of {args.repeat} interleaved calls per setting; load average at the end {load:.1f}.",
             "", "| net | method | boxes | margin on (s) | margin off (s) | cost | max |on - off| / (1 + |off|) |",
             "|---|---|---|---|---|---|---|"]
    for net, method, n, on, off, rel in rows:
        lines.append(f"| {net} | {method} | {n} | {on:.3f} | {off:.3f} | {on / off - 1:+.1%} | {rel:.1e} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
