"""``compute_bounds``: one interface over the native engine and auto_LiRPA.

The native engine is the graph engine (``certprune.graph`` IR + ``certprune.bounds``): IBP,
backward CROWN, alpha-CROWN and forward symbolic mode (``mode="forward"``,
``certprune.bounds.forward``) on any ReLU graph (chains, residual adds, concats, convolutions
as convolutions).

Soundness convention: native bounds are computed in float64 and enclose the network in exact
arithmetic (see ``certprune.bounds.crown``). A caller that certifies a float32 model must demand a small
positive margin; ``certprune.verify`` documents the one it uses.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from certprune.errors import ConfigError, InputRegionError, ShapeMismatchError, UnsupportedModelError
from certprune.bounds.engine import ROWS, boxes_per_pass, graph_bounds
from certprune.graph import Graph, build_graph
from certprune.verifiers.affine import AffineReluNet

if TYPE_CHECKING:  # pandas costs ~1 s of import: only neuron_stability needs it
    import pandas as pd

METHODS = ("ibp", "crown", "alpha-crown")
ENGINES = ("auto", "native", "lirpa")
MODES = ("backward", "forward")
_CHUNK = 1024  # boxes per native call: large enough to amortise torch overhead, small enough for cache


@dataclass(frozen=True, eq=False)
class Bounds:
    """Bounds for N boxes: ``lower``/``upper`` are float64 (N, n_out) (or (N, m) with a spec
    matrix C); ``intermediate[j]`` = (lower, upper) of ReLU layer j's pre-activations, (N, n_j).
    ``method`` is the method actually used ("forward" for forward-mode CROWN)."""

    lower: torch.Tensor
    upper: torch.Tensor
    intermediate: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None
    method: str
    engine: str


_AFFINE_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple:
    """Cache key that changes whenever the function changes: the module structure (``repr``:
    layer types and configurations) and a hash of the exact bytes of every parameter and buffer.
    (A key of data pointers and ``_version`` counters missed edits through ``.data`` and
    structural edits such as replacing a ReLU, and then bounded the old network.)"""
    import hashlib
    h = hashlib.blake2b(repr(model).encode(), digest_size=16)
    for t in list(model.parameters()) + list(model.buffers()):
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return (h.hexdigest(),)


def affine_net(model, input_shape: tuple[int, ...] | None = None, deadline: float | None = None) -> AffineReluNet:
    """The model as an :class:`AffineReluNet` (cached per module until its weights change);
    DeadlineExceeded past ``deadline`` (nothing is cached then)."""
    if isinstance(model, AffineReluNet):
        return model
    key = _fingerprint(model)
    hit = _AFFINE_CACHE.get(model)
    if hit is not None and hit[0] == key and isinstance(hit[1], tuple) and hit[1][1] == input_shape:
        # not a chain: the refusal is cached too (model_forms tries this first on every call); a
        # fresh exception each time (re-raising one object would chain every caller's frames to it)
        raise UnsupportedModelError(hit[1][0])
    if hit is not None and hit[0] == key and not isinstance(hit[1], tuple) and \
            (input_shape is None or hit[1].input_shape == tuple(input_shape)):
        return hit[1]
    from certprune.network import check_finite_parameters
    check_finite_parameters(model)  # NaN/inf weights: ModelLoadError naming the parameters
    try:
        net = AffineReluNet.from_module(model, input_shape or _input_shape_of(model), deadline)
    except UnsupportedModelError as e:
        _AFFINE_CACHE[model] = (key, (str(e), input_shape))
        raise
    _AFFINE_CACHE[model] = (key, net)
    return net


_GRAPH_CACHE: "weakref.WeakKeyDictionary[object, tuple]" = weakref.WeakKeyDictionary()


def graph_of(model, input_shape: tuple[int, ...] | None = None) -> Graph:
    """The model as a graph IR (cached per module until its weights change)."""
    if isinstance(model, Graph):
        return model
    key = _fingerprint(model) if not isinstance(model, AffineReluNet) else ("affine",)
    shape = tuple(input_shape) if input_shape else None
    try:
        hit = _GRAPH_CACHE.get(model)
    except TypeError:
        hit = None
    if hit is not None and hit[0] == key and (shape is None or hit[1].input_shape == shape):
        return hit[1]
    if isinstance(model, nn.Module):
        from certprune.network import check_finite_parameters
        check_finite_parameters(model)  # NaN/inf weights: ModelLoadError naming the parameters
    g = build_graph(model, shape or (None if isinstance(model, AffineReluNet) else _input_shape_of(model)))
    try:
        _GRAPH_CACHE[model] = (key, g)
    except TypeError:
        pass
    return g


def _input_shape_of(model) -> tuple[int, ...]:
    info = getattr(model, "info", None)
    if info is not None:
        return tuple(info.input_shape)
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ShapeMismatchError("cannot infer the model's input shape; pass input_shape=")


def as_boxes(lower, upper, input_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and flatten boxes to float64 (N, prod(input_shape)); a single box gets N = 1."""
    lo = torch.as_tensor(np.asarray(lower, dtype=np.float64) if not torch.is_tensor(lower) else lower).double()
    hi = torch.as_tensor(np.asarray(upper, dtype=np.float64) if not torch.is_tensor(upper) else upper).double()
    if lo.shape != hi.shape:
        raise InputRegionError(f"lower bound shape {tuple(lo.shape)} differs from upper bound shape {tuple(hi.shape)}")
    shape = tuple(input_shape)
    if tuple(lo.shape) == shape:
        lo, hi = lo.unsqueeze(0), hi.unsqueeze(0)
    if tuple(lo.shape[1:]) != shape and not (lo.dim() == 2 and lo.shape[1] == int(np.prod(shape))):
        raise ShapeMismatchError(f"boxes of shape {tuple(lo.shape)} do not fit the model input shape {shape}")
    lo, hi = lo.reshape(len(lo), -1), hi.reshape(len(hi), -1)
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise InputRegionError("input box contains NaN or infinite bounds")
    if (lo > hi).any():
        n = int((lo > hi).any(dim=1).sum())
        raise InputRegionError(f"infeasible input box: lower > upper in {n} of {len(lo)} box(es)")
    return lo, hi


def compute_bounds(model, lower, upper, method: str = "crown", engine: str = "auto",
                   return_intermediate: bool = False, C=None, input_shape: tuple[int, ...] | None = None,
                   mode: str = "backward", intersect_ibp: bool = False, intermediate: str | None = None) -> Bounds:
    """Bounds on the outputs (or on ``C @ y``) of ``model`` over N boxes ``[lower, upper]``.

    ``lower``/``upper``: (N, *input_shape) or one box of input_shape. ``method``: ibp, crown,
    alpha-crown. ``engine``: native (the graph engine of ``certprune.bounds``: ReLU graphs with
    residual adds, concats, convolutions, float64), lirpa (auto_LiRPA), or
    auto (native where it supports the model, else lirpa). ``mode`` (method crown only):
    backward (classic CROWN, equal to auto_LiRPA's CROWN), forward (forward symbolic
    propagation, equal to auto_LiRPA's forward mode: cheaper for few input dimensions but often
    much looser on deep nets; see ``certprune.bounds.forward``). ``intersect_ibp`` (native engine only)
    intersects every layer's bounds with the interval image of the previous layer's: sound and
    often much tighter on deep nets (ACAS Xu: mean CROWN output width halved), but no longer
    equal to auto_LiRPA. ``intermediate`` (native backward CROWN / alpha-CROWN): "unstable"
    (default without ``intersect_ibp``) computes CROWN intermediate bounds only for the neurons
    whose interval bounds (from the tightest bounds below) cross zero in that box, the others
    keep interval bounds (sound; output bounds mostly equal or tighter than "all", in a few
    boxes looser: see ``certprune.bounds.crown``); "all" (default with ``intersect_ibp``)
    computes every neuron's, equal to auto_LiRPA's CROWN without ``intersect_ibp``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    if engine not in ENGINES:
        raise ConfigError(f"unknown bound engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if mode not in MODES:
        raise ConfigError(f"unknown bound mode {mode!r}; choose one of {', '.join(MODES)}")
    if intermediate is not None and intermediate not in ROWS:
        raise ConfigError(f"unknown intermediate {intermediate!r}; choose one of {', '.join(ROWS)}")
    rows = intermediate or ("all" if intersect_ibp else "unstable")
    shape = tuple(input_shape) if input_shape else (model.input_shape if isinstance(model, (AffineReluNet, Graph))
                                                     else _input_shape_of(model))
    lo, hi = as_boxes(lower, upper, shape)
    Ct = None if C is None else torch.as_tensor(np.asarray(C, dtype=np.float64) if not torch.is_tensor(C) else C).double()
    if engine in ("auto", "native"):
        forward = method == "crown" and mode == "forward"
        try:
            net = graph_of(model, shape)
        except UnsupportedModelError:
            if engine == "native":
                raise
        else:
            _check_spec(Ct, net.output_dim, len(lo))
            if forward:
                return _forward(net, lo, hi, return_intermediate, Ct, intersect_ibp)
            return _graph(net, lo, hi, method, return_intermediate, Ct, intersect_ibp, rows)
    if intersect_ibp:
        raise ConfigError("intersect_ibp is an option of the native engine only; use engine='native'")
    if engine == "lirpa" and intermediate == "unstable":
        raise ConfigError("intermediate='unstable' is an option of the native engine only (auto_LiRPA computes all rows)")
    from certprune.verifiers.lirpa_engine import lirpa_bounds
    lmethod = "forward" if method == "crown" and mode == "forward" else method
    return lirpa_bounds(model, lo, hi, shape, lmethod, return_intermediate, Ct)


def _check_spec(C, n_out: int, n: int) -> None:
    """A spec matrix must be (m, n_out) or (n, m, n_out) and finite."""
    if C is None:
        return
    ok = (C.dim() == 2 and C.shape[1] == n_out) or (C.dim() == 3 and C.shape[0] == n and C.shape[2] == n_out)
    if not ok:
        raise ShapeMismatchError(f"spec matrix C of shape {tuple(C.shape)} does not fit {n} box(es) and "
                                 f"{n_out} model outputs: expected (m, {n_out}) or ({n}, m, {n_out})")
    if not torch.isfinite(C).all():
        raise InputRegionError("spec matrix C contains NaN or infinite values")


def _graph(g: Graph, lo, hi, method, return_intermediate, C, intersect_ibp: bool, rows: str = "all") -> Bounds:
    """The graph engine over chunks of boxes (float64; see ``certprune.bounds``)."""
    parts = []
    chunk = boxes_per_pass(g, _CHUNK) if method != "alpha-crown" else 256
    for s in range(0, len(lo), chunk):
        c = None if C is None else (C if C.dim() == 2 else C[s:s + chunk])
        parts.append(graph_bounds(g, lo[s:s + chunk], hi[s:s + chunk], method, c, intersect_ibp, rows))
    inter = None
    if return_intermediate:
        inter = tuple((torch.cat([p.intermediate[j][0] for p in parts]), torch.cat([p.intermediate[j][1] for p in parts]))
                      for j in range(len(g.relu_nodes)))
    return Bounds(torch.cat([p.lower for p in parts]), torch.cat([p.upper for p in parts]), inter, method, "native")


def _forward(g: Graph, lo, hi, return_intermediate, C, intersect_ibp: bool = False) -> Bounds:
    """Forward symbolic bounds (``certprune.bounds.forward``) over chunks of boxes."""
    from certprune.bounds.forward import forward_bounds
    parts = []
    for s in range(0, len(lo), _CHUNK):
        c = None if C is None else (C if C.dim() == 2 else C[s:s + _CHUNK])
        (yl, yu), res = forward_bounds(g, lo[s:s + _CHUNK], hi[s:s + _CHUNK], c, intersect_ibp)
        pre = [tuple(b.reshape(len(b), -1) for b in res.pre[i]) for i in g.relu_nodes]
        parts.append(((yl, yu), pre))
    lower = torch.cat([p[0][0] for p in parts])
    upper = torch.cat([p[0][1] for p in parts])
    inter = None
    if return_intermediate:
        inter = tuple((torch.cat([p[1][j][0] for p in parts]), torch.cat([p[1][j][1] for p in parts]))
                      for j in range(len(g.relu_nodes)))
    return Bounds(lower, upper, inter, "forward", "native")


def neuron_stability(model, lower, upper, method: str = "crown", engine: str = "auto",
                     input_shape: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Per ReLU layer, the number of stably active (l >= 0), stably inactive (u <= 0) and unstable
    (l < 0 < u) neurons, summed over the N boxes. Columns: layer, neurons, active, inactive, unstable."""
    b = compute_bounds(model, lower, upper, method=method, engine=engine, return_intermediate=True,
                       input_shape=input_shape)
    import pandas as pd

    rows = []
    for j, (l, u) in enumerate(b.intermediate or ()):
        inactive = u <= 0
        active = (l >= 0) & ~inactive
        rows.append({"layer": j, "neurons": int(l.shape[1]), "active": int(active.sum()),
                     "inactive": int(inactive.sum()), "unstable": int((~active & ~inactive).sum())})
    return pd.DataFrame(rows, columns=["layer", "neurons", "active", "inactive", "unstable"])
