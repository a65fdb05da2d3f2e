"""Bound engine throughput: native vs auto_LiRPA, boxes per second, in one run.

Nets: the 20-50-30-15-10-1 ReLU MLP (random weights, seed 0) on 10,000 random boxes, and a small
MNIST convnet (random weights, seed 0; two stride-2 convolutions + two linear layers) on boxes of
radius 2/255 around MNIST test images. Both engines run in float64 with one torch thread
(``--threads``) and are timed in process CPU seconds (``--clock wall`` for wall time), the fastest
of ``--repeat`` calls (default 3) per engine and row: on the
shared 2-core development machine, several threads and wall time mostly measured the other
jobs (two OpenMP threads on an overloaded machine ran IBP 80x slower than one). auto_LiRPA is called through our adapter (``engine="lirpa"``: full CROWN
intermediate bounds, float64), with all boxes in one call; one extra row gives auto_LiRPA
CROWN with its own defaults (float32, default bound options) for reference. CROWN rows come
twice: "all rows" (every neuron's intermediate bounds: equal to auto_LiRPA's) and the native
default "unstable rows" (CROWN intermediate bounds only where the interval image leaves a
neuron unstable in that box: not equal to auto_LiRPA's; the diff column counts the bounds where
it is tighter / looser). alpha-CROWN uses a
subset of boxes (auto_LiRPA's takes ~100x longer per box). "max abs diff" is the largest difference
between native and auto_LiRPA bounds over all boxes and outputs; for alpha-CROWN, where both
engines optimise differently, it reports the mean bound width of each engine instead.

The native engine is the graph engine (``certprune.graph`` + ``certprune.bounds``): convolutions
run as convolutions. Rows on real VNN-COMP 2022 nets bound the first instance's input box of
oval21 (cifar_base_kw) and sri_resnet_a (the ResNet with residual adds), repeated ``--vnn-boxes``
times, CROWN without a spec matrix (all 10 logits); they need the shared data folder
(``CERTPRUNE_DATA``, default ../shared/data) and are skipped without it.

Run: ``python experiments/bench_bounds.py`` (writes experiments/results/bench_bounds.md).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from certprune.verifiers.bounds import affine_net, compute_bounds

OUT = Path(__file__).resolve().parent / "results" / "bench_bounds.md"


def bench_mlp(seed: int = 0) -> nn.Sequential:
    """20-50-30-15-10-1 ReLU MLP with He-scaled random weights."""
    g = torch.Generator().manual_seed(seed)
    sizes, layers = [20, 50, 30, 15, 10, 1], []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * (2 / sizes[i]) ** 0.5)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.1)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def mnist_convnet(seed: int = 0) -> nn.Sequential:
    """Conv(1->4, k4, s2) ReLU Conv(4->8, k4, s2) ReLU Flatten Linear(200, 50) ReLU Linear(50, 10)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 4, stride=2), nn.ReLU(), nn.Conv2d(4, 8, 4, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(200, 50), nn.ReLU(), nn.Linear(50, 10)).eval()


def mlp_boxes(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """n boxes: centres uniform in [-1, 1]^20, radii uniform in [0, 0.1] per dimension."""
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(n, 20, generator=g, dtype=torch.float64) * 2 - 1
    r = torch.rand(n, 20, generator=g, dtype=torch.float64) * 0.1
    return c - r, c + r


def mnist_boxes(n: int, eps: float = 2 / 255) -> tuple[torch.Tensor, torch.Tensor]:
    """L-inf boxes of radius eps around the first n MNIST test images, clipped to [0, 1]."""
    from certprune.datasets.mnist import load_mnist
    x = torch.from_numpy(load_mnist()[0][:n]).double()
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = time.process_time


REPEAT = 3  # timed calls per engine and row (``--repeat``): the fastest counts


def timed(fn, repeat: int | None = None):
    """(result, seconds of the selected clock) of the fastest of ``repeat`` calls (default
    ``REPEAT``): on a shared machine the other jobs only ever slow a call down."""
    best, out = float("inf"), None
    for _ in range(REPEAT if repeat is None else repeat):
        t = _clock()
        out = fn()
        best = min(best, _clock() - t)
    return out, best


def lirpa_default_float32(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor, shape) -> float:
    """Seconds for auto_LiRPA CROWN with its own defaults (float32, default bound options)."""
    from certprune.verifiers.lirpa_compat import import_auto_lirpa
    al = import_auto_lirpa()
    m = __import__("copy").deepcopy(model).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bm = al.BoundedModule(m, torch.zeros(1, *shape))
        xl, xu = lo.float().reshape(-1, *shape), hi.float().reshape(-1, *shape)
        x = al.BoundedTensor((xl + xu) / 2, al.PerturbationLpNorm(x_L=xl, x_U=xu))
        with torch.no_grad():
            return timed(lambda: bm.compute_bounds(x=(x,), method="CROWN"))[1]


def compare(name, model, shape, lo, hi, method, mode="backward", warm: int | None = None,
            intermediate: str | None = None):
    """One table row: boxes/s of both engines, ratio, disagreement. ``intermediate`` (backward
    CROWN / alpha-CROWN): the native engine's rows option, None = its default ("unstable")."""
    net = model
    kw = {} if intermediate is None else {"intermediate": intermediate}
    w = min(len(lo), 1024 if method != "alpha-crown" else 8) if warm is None else warm  # warm-up (allocator, caches)
    compute_bounds(net, lo[:w], hi[:w], method=method, mode=mode, engine="native", input_shape=shape, **kw)
    compute_bounds(model, lo[:w], hi[:w], method=method, mode=mode, engine="lirpa", input_shape=shape)
    a, ta = timed(lambda: compute_bounds(net, lo, hi, method=method, mode=mode, engine="native", input_shape=shape,
                                         **kw))
    b, tb = timed(lambda: compute_bounds(model, lo, hi, method=method, mode=mode, engine="lirpa", input_shape=shape))
    n = len(lo)
    if method == "alpha-crown":
        diff = f"width {float((a.upper - a.lower).mean()):.4g} vs {float((b.upper - b.lower).mean()):.4g}"
    else:
        diff = f"{float(torch.maximum((a.lower - b.lower).abs().max(), (a.upper - b.upper).abs().max())):.1e}"
        if method == "crown" and mode == "backward" and intermediate != "all":
            tight = int(((a.lower - b.lower) > 1e-9).sum() + ((b.upper - a.upper) > 1e-9).sum())
            loose = int(((b.lower - a.lower) > 1e-9).sum() + ((a.upper - b.upper) > 1e-9).sum())
            diff += f" (native tighter on {tight}, looser on {loose} of {2 * a.lower.numel()} bounds)"
    label = method if mode == "backward" else f"{method} ({mode})"
    if method != "ibp" and mode == "backward":
        label += ", all rows" if intermediate == "all" else ", unstable rows (default)"
    print(f"{name} {label}: native {_rate(n / ta)}/s, lirpa {_rate(n / tb)}/s", flush=True)
    return [name, label, n, _rate(n / ta), _rate(n / tb), f"{tb / ta:.2f}x", diff]


def _rate(r: float) -> str:
    """Boxes per second, with two decimals below 10 (the ResNet) and one above."""
    return f"{r:,.2f}" if r < 10 else f"{r:,.1f}"


def native_only(name, model, shape, lo, hi, note: str) -> list:
    """A CROWN row for the native engine alone (when auto_LiRPA cannot bound the model)."""
    compute_bounds(model, lo[:1], hi[:1], engine="native", input_shape=shape)
    a, ta = timed(lambda: compute_bounds(model, lo, hi, engine="native", input_shape=shape))
    print(f"{name} crown: native {len(lo) / ta:,.2f}/s ({note})", flush=True)
    return [name, "crown, unstable rows (default)", len(lo), f"{len(lo) / ta:,.2f}", note, "", ""]


def vnn_box(bench: str, n: int):
    """(network, input shape, lo, hi): the first instance of a VNN-COMP benchmark, its box repeated
    n times; None when the shared data folder is missing."""
    import csv

    from certprune.network import load_model
    from certprune.vnnlib import read_vnnlib
    root = Path(os.environ.get("CERTPRUNE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    d = root / "vnncomp" / bench
    if not (d / "instances.csv").is_file():
        return None
    with (d / "instances.csv").open() as f:
        onnx_rel, prop_rel, _ = next(csv.reader(f))
    net = load_model(d / (onnx_rel.strip() + ".gz"))
    region = read_vnnlib(d / (prop_rel.strip() + ".gz"))[0].region
    lo = torch.as_tensor(region.lower.ravel(), dtype=torch.float64).repeat(n, 1)
    hi = torch.as_tensor(region.upper.ravel(), dtype=torch.float64).repeat(n, 1)
    return net, tuple(net.info.input_shape), lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, default=10_000, help="MLP boxes (IBP, CROWN)")
    ap.add_argument("--alpha-boxes", type=int, default=500, help="MLP boxes for alpha-CROWN")
    ap.add_argument("--mnist-boxes", type=int, default=100, help="MNIST images (convnet)")
    ap.add_argument("--vnn-boxes", type=int, default=4, help="boxes for the oval21 / sri_resnet_a rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=sorted(CLOCK), default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per engine and row; the fastest counts")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--malloc", choices=("kept", "default"), default="default",
                    help="kept: freed memory stays in the heap (certprune.heap.keep_heap, what the "
                         "command line does), for both engines alike; default: glibc's own thresholds")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.malloc == "kept":
        from certprune.heap import keep_heap
        keep_heap()
    global _clock, REPEAT
    _clock = CLOCK[args.clock]
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    REPEAT = args.repeat
    mlp, conv = bench_mlp(), mnist_convnet()
    lo, hi = mlp_boxes(args.boxes)
    rows = [compare("MLP 20-50-30-15-10-1", mlp, (20,), lo, hi, "ibp")]
    rows += [compare("MLP 20-50-30-15-10-1", mlp, (20,), lo, hi, "crown", intermediate=r) for r in ("all", None)]
    rows.append(compare("MLP 20-50-30-15-10-1", mlp, (20,), lo, hi, "crown", mode="forward"))
    rows.append(compare("MLP 20-50-30-15-10-1", mlp, (20,), lo[:args.alpha_boxes], hi[:args.alpha_boxes],
                        "alpha-crown"))
    t32 = lirpa_default_float32(mlp, lo, hi, (20,))
    rows.append(["MLP 20-50-30-15-10-1", "crown: auto_LiRPA float32 defaults", args.boxes, "",
                 f"{args.boxes / t32:,.0f}", "", ""])
    mlo, mhi = mnist_boxes(args.mnist_boxes)
    rows.append(compare("MNIST convnet", conv, (1, 28, 28), mlo, mhi, "ibp"))
    rows += [compare("MNIST convnet", conv, (1, 28, 28), mlo, mhi, "crown", intermediate=r) for r in ("all", None)]
    for bench, label in (("oval21", "oval21 cifar_base_kw"), ("sri_resnet_a", "sri_resnet_a ResNet")):
        got = vnn_box(bench, args.vnn_boxes)
        if got is not None:
            net, shape, vlo, vhi = got
            try:
                rows += [compare(label, net, shape, vlo, vhi, "crown", warm=1, intermediate=r) for r in ("all", None)]
            except Exception as e:  # auto_LiRPA 0.3 fails on some graphs with this torch: time native alone
                rows.append(native_only(label, net, shape, vlo, vhi, f"auto_LiRPA fails: {type(e).__name__}"))
    unit = "boxes/CPU-s" if args.clock == "cpu" else "boxes/s"
    head = ["net", "method", "boxes", f"native {unit}", f"auto_LiRPA {unit}", "native / auto_LiRPA",
            "max abs diff"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, {args.threads} thread(s), float64, {args.clock} clock, "
             f"fastest of {REPEAT} calls, malloc {args.malloc}; "
             f"load average at the end "
             f"{load:.1f} (other jobs were running if > {args.threads}).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
