"""Patches mode: the identity-spec CROWN pass of a convolutional node with local coefficients.

The CROWN bounds of every neuron of a 2-D node ``t`` (shape (C, H, W)) need one backward pass
per neuron. Below a convolution, the coefficients of neuron (c, i, j) are nonzero only on its
receptive field, a window of each node below (auto_LiRPA's "patches mode"). Here they are kept
as windows: a tensor ``(K, L, R, C_j, ph, pw)`` per node j (L = H * W output locations, R = 2C
rows per location: ``+e_c`` for the lower and ``-e_c`` for the upper bounds), with a geometry
``(ph, pw, sh, sw, oh, ow)``: the window of location (i, j) starts at row ``i * sh - oh`` and
column ``j * sw - ow`` of node j. Positions outside node j (the zero padding of a convolution)
hold a constant zero: their coefficients are dropped (masked) before each linear step.

Steps (the same arithmetic as the dense sweep, on windows): a convolution is the transposed
convolution of each window (the window grows to ``(ph - 1) * stride + k``), a ReLU multiplies by
the windows of its relaxation (``F.unfold`` of the slopes and intercepts), an elementwise Scale
by the windows of its scale and shift, Pad shifts the geometry, Add / Sub hand the window to both
inputs, and windows that meet at a node are aligned into their common bounding window and
added. The sweep ends at the input node (a box), where the windows are concretised against the
windows of the box's centre and radius. The bounds equal the dense pass (up to float64
rounding); :func:`patch_crown` returns None (dense fallback) for any other operator, for
non-image inputs, or where the windows would cost more than the dense coefficients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from certprune.graph.ir import Graph
from certprune.graph.op import Interval

Geo = tuple[int, int, int, int, int, int]  # (ph, pw, sh, sw, oh, ow)
_PASS = ("relu", "scale", "add", "sub")
COST_RATIO = 0.5  # patches when their coefficient volume is below this fraction of the dense one


def _edge_geo(op, g: Geo) -> Geo | None:
    """Geometry on an operator's input given the geometry on its output (None: unsupported)."""
    ph, pw, sh, sw, oh, ow = g
    if op.kind in _PASS:
        return g
    if op.kind == "conv":
        if op.d != 2 or op.groups != 1 or tuple(op.dilation) != (1, 1):
            return None
        kh, kw = op.weight.shape[2:]
        (s0, s1), (p0, p1) = op.stride, op.padding
        return (ph - 1) * s0 + kh, (pw - 1) * s1 + kw, sh * s0, sw * s1, oh * s0 + p0, ow * s1 + p1
    if op.kind == "pad" and len(op.pad) == 4 and min(op.pad) >= 0:
        return ph, pw, sh, sw, oh + op.pad[2], ow + op.pad[0]
    return None


def _merge(a: Geo | None, b: Geo) -> Geo | None:
    """The bounding window of two geometries with the same stride (None: strides differ)."""
    if a is None:
        return b
    if a[2:4] != b[2:4]:
        return None
    oh, ow = max(a[4], b[4]), max(a[5], b[5])
    ph = max(oh - a[4] + a[0], oh - b[4] + b[0])
    pw = max(ow - a[5] + a[1], ow - b[5] + b[1])
    return ph, pw, a[2], a[3], oh, ow


def plan(graph: Graph, t: int) -> dict[int, Geo] | None:
    """Window geometry at node t and every node it depends on, or None where patches mode does
    not apply (an operator other than conv / ReLU / scale / add / sub / pad, non-3-D shapes,
    branches of different strides)."""
    if len(graph.nodes[t].shape) != 3 or len(graph.input_shape) != 3:
        return None
    anc = graph.ancestors(t)
    geo: dict[int, Geo] = {t: (1, 1, 1, 1, 0, 0)}
    for i in sorted(anc, reverse=True):
        if i == 0:
            break
        node = graph.nodes[i]
        new = _edge_geo(node.op, geo[i])
        if new is None:
            return None
        for j in node.inputs:
            if len(graph.nodes[j].shape) != 3:
                return None
            m = _merge(geo.get(j), new)
            if m is None:
                return None
            geo[j] = m
    return geo


def _unfold(x: torch.Tensor, g: Geo, hw: tuple[int, int]) -> torch.Tensor:
    """Windows of ``x`` (B, C, H, W) at the L = prod(hw) locations: (B, L, C, ph, pw), zero
    outside x."""
    ph, pw, sh, sw, oh, ow = g
    H, W = x.shape[-2:]
    bottom = max(0, (hw[0] - 1) * sh + ph - oh - H)
    right = max(0, (hw[1] - 1) * sw + pw - ow - W)
    xp = F.pad(x, (ow, right, oh, bottom))
    u = xp.unfold(2, ph, sh).unfold(3, pw, sw)[:, :, :hw[0], :hw[1]]
    return u.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], hw[0] * hw[1], x.shape[1], ph, pw)


def _place(P: torch.Tensor, g: Geo, target: Geo) -> torch.Tensor:
    """Windows of geometry g inside the (larger) bounding window ``target``, zero elsewhere."""
    top, left = target[4] - g[4], target[5] - g[5]
    bottom, right = target[0] - top - g[0], target[1] - left - g[1]
    if top == left == bottom == right == 0:
        return P
    return F.pad(P, (left, right, top, bottom))


def cost(graph: Graph, t: int, geo: dict[int, Geo]) -> tuple[int, int]:
    """(patch, dense) coefficient values per row of the pass: window volumes vs node sizes."""
    patch = sum(graph.nodes[j].shape[0] * g[0] * g[1] for j, g in geo.items() if j != t)
    dense = sum(graph.nodes[j].size for j in geo if j != t)
    return patch, dense


def patch_crown(graph: Graph, t: int, st, budget: int, fraction: float = 1.0) -> Interval | None:
    """CROWN (lower, upper) of every entry of node t, flattened (N, n), by windows; None where
    patches mode does not apply or is not cheaper than a dense pass over ``fraction`` of the
    rows (see module doc). ``budget`` caps the values of one window tensor (locations are
    processed in chunks)."""
    geo = plan(graph, t)
    if geo is None:
        return None
    patch, dense = cost(graph, t, geo)
    if patch >= COST_RATIO * dense * fraction:
        return None
    C, H, W = graph.nodes[t].shape
    N, L, R = st.lo.shape[0], H * W, 2 * C
    widest = max(graph.nodes[j].shape[0] * g[0] * g[1] for j, g in geo.items())
    chunk = max(1, min(L, budget // (N * R * widest)))
    cache: dict[tuple, torch.Tensor] = {}
    eye = torch.eye(C, dtype=st.lo.dtype)
    start = torch.cat([eye, -eye]).reshape(1, 1, R, C, 1, 1)
    parts = [_sweep(graph, t, geo, start.expand(1, min(L, l0 + chunk) - l0, R, C, 1, 1), st, l0, cache, (H, W))
             for l0 in range(0, L, chunk)]
    r = torch.cat(parts, 1)  # (N, L, R)
    return r[..., :C].transpose(1, 2).reshape(N, -1), -r[..., C:].transpose(1, 2).reshape(N, -1)


def _sweep(graph: Graph, t: int, geo: dict[int, Geo], P: torch.Tensor, st, l0: int, cache: dict,
           hw: tuple[int, int]) -> torch.Tensor:
    """Lower bounds (N, Lc, R) of the windows ``P`` (1, Lc, R, C, 1, 1) placed on node t, for the
    locations l0 .. l0 + Lc."""
    Lc = P.shape[1]
    sl = slice(l0, l0 + Lc)

    def windows(key, i: int, x: torch.Tensor) -> torch.Tensor:  # (B, Lc, 1, C * ph * pw)
        if (key, i) not in cache:
            u = _unfold(x, geo[i], hw)
            cache[key, i] = u.reshape(u.shape[0], u.shape[1], 1, -1)
        return cache[key, i][:, sl]

    def flat(P: torch.Tensor) -> torch.Tensor:  # (K, Lc, R, C * ph * pw): broadcasts on leading dims only
        return P.reshape(*P.shape[:3], -1)

    def full(i: int, v: torch.Tensor) -> torch.Tensor:  # a per-sample parameter as (1, C, H, W)
        return torch.broadcast_to(v, graph.nodes[i].shape).unsqueeze(0).to(st.lo.dtype)

    acc = {t: P}
    bias = P.new_zeros(1, Lc, P.shape[2])
    for i in range(t, 0, -1):
        P = acc.pop(i, None)
        if P is None:
            continue
        node, g = graph.nodes[i], geo[i]
        op = node.op
        if op.kind == "relu":
            r = st.relax[i]
            a = windows("alpha", i, r.alpha)
            gap = windows("gap", i, r.slope - r.alpha)  # chord slope - lower slope
            c = windows("intercept", i, r.intercept)
            shp, Pf = P.shape, flat(P)
            neg = Pf.clamp(max=0)
            bias = bias + (neg @ c.transpose(-1, -2)).squeeze(-1)
            new = torch.addcmul(Pf * a, neg, gap)  # alpha on positive, chord on negative coefficients
            ins = [new.reshape(new.shape[0], *shp[1:])]
        else:
            mask = windows("mask", i, torch.ones(1, 1, *node.shape[1:], dtype=st.lo.dtype))
            P = P * mask.reshape(1, Lc, 1, 1, g[0], g[1])
            if op.kind == "conv":
                if op.bias is not None:
                    bias = bias + P.sum((-2, -1)) @ op.bias
                K, _, R, C, ph, pw = P.shape
                ng = _edge_geo(op, g)
                out = torch.nn.grad.conv2d_input((K * Lc * R, op.weight.shape[1], ng[0], ng[1]), op.weight,
                                                 P.reshape(-1, C, ph, pw), op.stride, 0)
                ins = [out.reshape(K, Lc, R, *out.shape[1:])]
            elif op.kind == "scale":
                if op.shift is not None:
                    bias = bias + (flat(P) @ windows("shift", i, full(i, op.shift)).transpose(-1, -2)).squeeze(-1)
                ins = [P if op.scale is None else (flat(P) * windows("scale", i, full(i, op.scale))).reshape(P.shape)]
            elif op.kind in ("add", "sub"):
                ins = [P, P if op.kind == "add" else -P]
            else:  # pad: the window only moves
                ins = [P]
        ng = _edge_geo(op, g)
        for j, Pj in zip(node.inputs, ins):
            Pj = _place(Pj, ng, geo[j])
            acc[j] = acc[j] + Pj if j in acc else Pj
    P = acc.pop(0, None)
    if P is None:  # node t does not depend on the input
        return bias.expand(st.lo.shape[0], Lc, bias.shape[2])
    lo, hi = st.bounds[0]
    center = windows("center", 0, (lo + hi) / 2).transpose(-1, -2)  # (N, Lc, X, 1)
    radius = windows("radius", 0, (hi - lo) / 2).transpose(-1, -2)
    Pf = flat(P)
    return bias + (Pf @ center).squeeze(-1) - (Pf.abs() @ radius).squeeze(-1)
