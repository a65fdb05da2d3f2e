"""Forward symbolic bounds over the graph IR (auto_LiRPA's forward mode), one implementation.

Every node i gets two linear functions of the flattened input, ``L_i(x) <= v_i(x) <= U_i(x)``
over the box (:class:`~certprune.graph.op.LinFn`, coefficients (K, n_in, *shape), K = 1 while
the function is the same for every box). Nodes are visited in index (topological) order; each
operator maps its inputs' pairs (``Op.forward_linear``: W+ L + W- U + b for weighted maps,
sums for residual adds, entry moves for concat / select / reshape / pad), a ReLU maps its
input's pair through CROWN's relaxation on the concretised input bounds (lower ``alpha L``,
upper ``s U + t``). Several consumers of one node (residual branches, the two copies of a twin
graph fed by one shared input) see the same functions of the same input, so their correlation
is kept. Cost O(n_in) per value and one pass for every node's bounds: the cheap choice for few
input dimensions (tabular data, twin networks); backward CROWN is tighter on deep nets (each
layer mixes the lower and upper functions of the layer below).

Bounds are float64 and enclose the real-arithmetic graph. ``intersect_ibp`` intersects every
concretised bound with the interval image of the node's inputs' bounds (sound, tighter; off =
auto_LiRPA's forward mode, which the agreement tests check).

Rounding (the bounds are rigorous for real arithmetic, as those of :mod:`certprune.bounds.crown`):
beside its functions every node carries two nonnegative (N, *shape) bounds, ``mag`` on
``|A| max(|lo|, |hi|) + |b|`` of both computed functions over the box, and ``err`` on how far
the computed functions may lie outside valid bounds of the exact value at any point of the box
(``L(x) - err <= v(x) <= U(x) + err``). The input has ``mag = max(|lo|, |hi|)``, ``err = 0``. A
linear operator maps them by ``abs_map`` (``|W| mag + |b|``, ``|W| err``) and adds its
``float64_residual`` on ``mag + err``: its forward step computes each coefficient column and the
offset as sums of the same products as its interval image, so the computed functions miss the
exact maps of the input functions by at most ``gamma_k (|W| mag + |b|)`` at any point (the
residual's ``k`` covers the signed split and the stacked product); a stored scale's own error
(``Scale.scale_err``) enters through the ``+ err``. A ReLU keeps stable neurons exact and gives
an unstable one ``err + 4u (mag + |t|) + relaxation_residual`` (the coefficient products round,
and the float chord misses relu by ``<= 3.01 u max(|l|, |u|)``; ``alpha z <= relu(z)`` is exact
for alpha in [0, 1]). Concretising adds ``err + gamma_{2(n+8)} mag`` (rounded centre / radius
and the two inner products of length n). Interval images are ``crown.rounded_interval``.
:meth:`Forward.state` carries every node's residual, so a backward CROWN pass on the forward
relaxations gets its own rigorous margin. ``crown.ROUNDING_MARGIN = False`` turns all of it off
(measurements only).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from certprune.bounds import crown
from certprune.bounds.crown import MARGIN_SAFETY, TINY, State, rounded_interval, spec_matrix
from certprune.bounds.float32 import magnitude
from certprune.graph.ir import Graph
from certprune.graph.op import FnPair, Interval, LinFn
from certprune.graph.ops_linear import Linear, batched_mv
from certprune.graph.relu import ReLU, Relaxation
from certprune.semantics import U64, gamma64

MAG_SAFETY = 1 + 2.0 ** -28  # covers the rounding of computing a magnitude bound (sums of < 2^24 terms)


@dataclass
class Forward:
    """Result of :func:`forward_pass`: ``bounds[i]`` (N, *shape) of every node, ``relax``/``pre``
    of every ReLU node (as in :class:`~certprune.bounds.crown.State`), and ``fns[i]`` the
    (lower, upper) linear functions of the nodes asked for in ``keep``."""

    lo: torch.Tensor
    hi: torch.Tensor
    bounds: dict[int, Interval] = field(default_factory=dict)
    relax: dict[int, Relaxation] = field(default_factory=dict)
    pre: dict[int, Interval] = field(default_factory=dict)
    fns: dict[int, FnPair] = field(default_factory=dict)
    err: dict[int, torch.Tensor] = field(default_factory=dict)  # of the kept nodes (module doc)
    mag: dict[int, torch.Tensor] = field(default_factory=dict)
    graph: Graph | None = None
    resid: dict[int, torch.Tensor] = field(default_factory=dict)  # the residuals the pass computed already

    def state(self) -> State:
        """The bounds as a CROWN state (backward passes reuse the forward relaxations), with every
        node's float64 residual (``State.resid``, as ``crown.intermediate`` sets it) so that a
        backward sweep on it is rigorous: those the pass computed (ReLUs, interval images), and
        those of the concretised nodes from their inputs' bounds."""
        st = State(self.lo, self.hi, self.bounds, self.relax, self.pre,
                   torch.zeros(self.lo.shape[0], dtype=torch.bool), resid=dict(self.resid))
        if self.graph is not None and crown.ROUNDING_MARGIN:
            for i, node in enumerate(self.graph.nodes[1:], start=1):
                if node.op.nonlinear or i in self.resid:
                    continue
                r = node.op.float64_residual([magnitude(self.bounds[j]) for j in node.inputs])
                if r is not None:
                    st.resid[i] = r
        return st


def _offset(op, graph: Graph, node) -> torch.Tensor:
    """``|op(0)|`` (1, *shape): the absolute offset of a linear operator (cached on the op, by the
    input shapes: an operator object may serve several graphs)."""
    shapes = tuple(tuple(graph.nodes[j].shape) for j in node.inputs)
    cache = op.__dict__.setdefault("_abs_offset", {})
    hit = cache.get(shapes)
    if hit is None:
        hit = cache[shapes] = op.forward(*[torch.zeros(1, *s, dtype=torch.float64) for s in shapes]).abs()
    return hit


def linear_step_error(op, graph: Graph, node, es, ms) -> tuple[torch.Tensor, torch.Tensor]:
    """(err, mag) of a linear operator's output from its inputs' (module doc)."""
    mag = (op.abs_map(ms) + _offset(op, graph, node)) * MAG_SAFETY
    err = op.abs_map(es)
    r = op.float64_residual([m + e for m, e in zip(ms, es)])
    return (err if r is None else err + r) + TINY, mag


def relu_step_error(relax: Relaxation, pre: Interval, r: torch.Tensor | None, e: torch.Tensor,
                    m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(err, mag) of a relaxed ReLU's output from its input's (module doc); ``r`` its
    ``ReLU.relaxation_residual``."""
    l, u = pre
    on = u > 0  # stable inactive neurons are exactly 0
    t = relax.intercept.abs()
    unst = relax.unstable
    err = torch.where(unst, e + 4 * U64 * (m + t), torch.where(on, e, 0.0))
    if r is not None:
        err = err + r
    mag = torch.where(unst, (m + t) * (1 + 4 * U64), torch.where(on, m, 0.0))
    return err, mag


def widened(box: Interval, w: torch.Tensor) -> Interval:
    """``box`` pushed outward by ``w`` >= 0 and the rounding of the two subtractions."""
    l, u = box
    return (l - (MARGIN_SAFETY * w + 3 * U64 * l.abs() + TINY), u + (MARGIN_SAFETY * w + 3 * U64 * u.abs() + TINY))


def concretize_gamma(n: int) -> float:
    """Relative rounding of :func:`concretize` over n inputs, against ``mag`` (module doc)."""
    return gamma64(2 * (n + 8))


def concretize(f: LinFn, lo: torch.Tensor, hi: torch.Tensor, upper: bool) -> torch.Tensor:
    """Minimum (maximum if ``upper``) of ``f`` over each box lo/hi (N, n_in); (N, *shape)."""
    K, n = f.A.shape[:2]
    A = f.A.reshape(K, n, -1)
    c, r = (lo + hi) / 2, (hi - lo) / 2
    if K == 1:
        mid, rad = c @ A[0], r @ A[0].abs()
    elif A.dtype == c.dtype == torch.float64 and A.device.type == "cpu" and not (A.requires_grad or c.requires_grad):
        # numpy's stacked products: 1.2-2.5x faster than torch's bmm on these (N, 1, n) x (N, n, m)
        # blocks (a fifth of a twin pass on the small German models); any summation order is
        # covered by concretize_gamma; from 32 outputs on numpy's einsum is faster still (measured
        # 1.2-1.6x on (4096, 17, 32-64) and (1024-4096, 13, 50-100) blocks, slower below 24)
        An = A.numpy()
        if An.shape[2] >= 32:
            mid = torch.from_numpy(np.einsum("kn,knm->km", c.numpy(), An))
            rad = torch.from_numpy(np.einsum("kn,knm->km", r.numpy(), np.abs(An)))
        else:
            mid = torch.from_numpy(np.matmul(c.numpy()[:, None, :], An)[:, 0])
            rad = torch.from_numpy(np.matmul(r.numpy()[:, None, :], np.abs(An))[:, 0])
    else:
        mid, rad = (c.unsqueeze(1) @ A).squeeze(1), (r.unsqueeze(1) @ A.abs()).squeeze(1)
    v = (mid + rad if upper else mid - rad).reshape(len(lo), *f.A.shape[2:])
    return v + f.b


def _input_fn(graph: Graph, lo: torch.Tensor, free: torch.Tensor | None) -> FnPair:
    """The identity on the input; with ``free`` (indices), a function of those inputs only, the
    others (fixed points, :func:`_fixed_inputs`) held in the offset."""
    n = graph.input_dim
    if free is None:
        f = LinFn(torch.eye(n, dtype=lo.dtype).reshape(1, n, *graph.input_shape),
                  lo.new_zeros(1, *graph.input_shape))
        return f, f
    b = lo[:1].clone()
    b[:, free] = 0.0
    f = LinFn(torch.eye(n, dtype=lo.dtype)[free].reshape(1, len(free), *graph.input_shape),
              b.reshape(1, *graph.input_shape))
    return f, f


def _fixed_inputs(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor | None:
    """Indices of the inputs that are not one and the same point in every box (None when every
    input varies, or none does): the pass carries functions of those only, (K, free, *shape)
    instead of (K, n_in, *shape), and holds the fixed ones (the protected values of a twin
    batch, fixed features of small boxes) in the offsets. The functions are the same on every
    box (a fixed input's column times its value moved into the offset: sums of the same
    products, within the same rounding bound); 2 of 21 columns on the German twin, 2 of 17 on
    the Bank twin, where the pass's products are the audit's main cost."""
    fixed = (lo == hi).all(0) & (lo == lo[:1]).all(0)
    if not bool(fixed.any()) or bool(fixed.all()):
        return None
    return torch.nonzero(~fixed).flatten()


def _full(f: LinFn, free: torch.Tensor | None, n: int) -> LinFn:
    """``f`` over the inputs ``free`` as a function of all n inputs (zero columns elsewhere)."""
    if free is None:
        return f
    A = f.A.new_zeros(f.A.shape[0], n, *f.A.shape[2:])
    A[:, free] = f.A
    return LinFn(A, f.b)


@dataclass
class _Pending:
    """A ReLU of a shared input function ``f`` (K = 1) whose one consumer is a Linear: that Linear
    maps relu(f) in one step (:meth:`Linear.forward_linear_relaxed`), never building the per-box
    relaxed functions (N, n_in, h)."""

    f: LinFn
    relax: Relaxation


def _fusable(graph: Graph, keep: tuple[int, ...]) -> set[int]:
    """ReLU nodes (1-D, not kept) whose only consumer is one Linear: :func:`forward_pass` maps
    them in one step with it (:meth:`Linear.forward_linear_relaxed`) where :func:`_fuse_pays`."""
    users: dict[int, list[int]] = {}
    for i, node in enumerate(graph.nodes[1:], start=1):
        for j in node.inputs:
            users.setdefault(j, []).append(i)
    out = set()
    for j, node in enumerate(graph.nodes):
        u = users.get(j, [])
        if isinstance(node.op, ReLU) and j not in keep and len(u) == 1 and len(node.shape) == 1 \
                and isinstance(graph.nodes[u[0]].op, Linear):
            out.add(j)
    return out


def _fuse_pays(linear: Linear, cols: int) -> bool:
    """Whether the fused step beats the unfused one for a Linear of m outputs on an input function
    of ``cols`` columns: where m <= cols (its per-box weights are no larger than the relaxed
    functions; the only case fused before session 20) or cols >= 8 (measured 1.0-1.7x faster on
    N = 64-4,096 boxes, h 50-150, m 30-100; with 5 columns, ACAS Xu's input, 1.5-1.8x slower)."""
    m = linear.weight.shape[0]
    return m <= cols or cols >= 8


def forward_pass(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, keep: tuple[int, ...] = (),
                 intersect_ibp: bool = False, every_node: bool = False) -> Forward:
    """Forward symbolic bounds over N boxes lo/hi (N, input_dim); see module doc. A node's bounds
    are the concretised functions where they are needed (ReLU inputs, ``keep``, all nodes if
    ``every_node``), elsewhere the (rounded) interval image of its inputs' bounds; ``err`` and
    ``mag`` of the kept nodes come with their functions."""
    N = lo.shape[0]
    res = Forward(lo, hi, graph=graph)
    res.bounds[0] = (lo.reshape(N, *graph.input_shape), hi.reshape(N, *graph.input_shape))
    rig = crown.ROUNDING_MARGIN
    gcon = concretize_gamma(graph.input_dim)
    feeds_relu = {n.inputs[0] for n in graph.nodes[1:] if n.op.nonlinear}
    last_use = {}
    for i, node in enumerate(graph.nodes[1:], start=1):
        for j in node.inputs:
            last_use[j] = i
    free = _fixed_inputs(lo, hi)
    clo, chi = (lo, hi) if free is None else (lo[:, free], hi[:, free])  # the boxes the functions range over
    fns: dict = {0: _input_fn(graph, lo, free)}
    err: dict = {0: torch.zeros_like(res.bounds[0][0])} if rig else {}
    mag: dict = {0: magnitude(res.bounds[0])} if rig else {}
    fusable = _fusable(graph, keep)
    for i, node in enumerate(graph.nodes[1:], start=1):
        ins = [fns[j] for j in node.inputs]
        if node.op.nonlinear:
            p = node.inputs[0]
            l, u = res.bounds[p]
            res.pre[i] = (l, u)
            res.relax[i] = ReLU.relax(l, u)
            f = ins[0]
            if (i in fusable and f[0] is f[1] and f[0].A.shape[0] == 1
                    and _fuse_pays(graph.nodes[last_use[i]].op, f[0].A.shape[1])):
                fns[i] = _Pending(f[0], res.relax[i])  # its one consumer, a Linear, maps it directly
            else:
                fns[i] = node.op.forward_relaxed(f, res.relax[i])
            res.bounds[i] = node.op.interval((l, u))
            if rig:
                r = ReLU.relaxation_residual(l, u)
                if r is not None:
                    res.resid[i] = r
                err[i], mag[i] = relu_step_error(res.relax[i], (l, u), r, err[p], mag[p])
        else:
            if isinstance(ins[0], _Pending):
                fns[i] = node.op.forward_linear_relaxed(ins[0].f, ins[0].relax)
            else:
                fns[i] = node.op.forward_linear(*ins)
            if rig:
                err[i], mag[i] = linear_step_error(node.op, graph, node, [err[j] for j in node.inputs],
                                                   [mag[j] for j in node.inputs])
            if i in feeds_relu or i in keep or every_node:
                fl, fu = fns[i]
                box = concretize(fl, clo, chi, False), concretize(fu, clo, chi, True)
                if rig:
                    box = widened(box, err[i] + gcon * mag[i])
                if intersect_ibp:
                    il, iu = rounded_interval(node.op, [res.bounds[j] for j in node.inputs], res.resid, i)
                    box = (torch.maximum(box[0], il), torch.minimum(box[1], iu))
            else:
                box = rounded_interval(node.op, [res.bounds[j] for j in node.inputs], res.resid, i)
            res.bounds[i] = box
        for j in set(node.inputs):  # a node may use one input twice (x + x, concat([h, h]))
            if last_use[j] == i and j not in keep:
                del fns[j]
                err.pop(j, None)
                mag.pop(j, None)
    n = graph.input_dim
    res.fns = {i: tuple(_full(g, free, n) for g in fns[i]) for i in keep}
    if rig:
        res.err, res.mag = {i: err[i] for i in keep}, {i: mag[i] for i in keep}
    return res


def output_fns(graph: Graph, res: Forward, C: torch.Tensor | None) -> tuple[FnPair, torch.Tensor | None, torch.Tensor | None]:
    """Linear functions bounding ``C @ y`` (y if None), flattened (K, n_in, m), and their (err,
    mag) (N, m) (module doc; None with the margin off). With a Linear output node, ``C W`` is
    applied to its input's functions as one map (exact folding, as auto_LiRPA does); ``res`` must
    keep the output node (and its input for the folding). The rounding of ``C W`` (inner length
    n_out) and of the map (inner length h) is within ``gamma_k |C| |W| (mag + err)``."""
    out = graph.nodes[graph.output]
    o = graph.output
    rig = crown.ROUNDING_MARGIN and o in res.err
    if C is None:
        f = tuple(_flat(g) for g in res.fns[o])
        if not rig:
            return f, None, None
        return f, res.err[o].reshape(len(res.lo), -1), res.mag[o].reshape(len(res.lo), -1)
    Cs = spec_matrix(C, graph.output_dim, res.lo.dtype)  # (K, m, n_out)
    if isinstance(out.op, Linear) and len(out.shape) == 1 and out.inputs[0] in res.fns:
        W = Cs @ out.op.weight
        b = Cs @ out.op.bias if out.op.bias is not None else None
        j, inner = out.inputs[0], out.op.weight.shape[0]
        aw = Cs.abs() @ out.op.abs_weight
        ab = None if b is None else Cs.abs() @ out.op.bias.abs()
    else:
        W, b, j, inner, aw, ab = Cs, None, o, 0, Cs.abs(), None
    fp = _apply_matrix(tuple(_flat(f) for f in res.fns[j]), W, b)
    if not rig:
        return fp, None, None
    N = len(res.lo)
    e, m = res.err[j].reshape(N, -1), res.mag[j].reshape(N, -1)
    k = 2 * (2 * W.shape[-1] + inner + W.shape[-2] + 16)
    t = batched_mv(aw, m)
    if ab is not None:
        t = t + ab
    err = batched_mv(aw, e) + gamma64(k) * (t + batched_mv(aw, e)) + TINY
    return fp, err, t * MAG_SAFETY


def _flat(f: LinFn) -> LinFn:
    K, n = f.A.shape[:2]
    return LinFn(f.A.reshape(K, n, -1), f.b.reshape(f.b.shape[0], -1))


def _apply_matrix(f: FnPair, W: torch.Tensor, b: torch.Tensor | None) -> FnPair:
    """The pair of ``W v + b`` for per-box or shared matrices W (K', m, h), b (K', m) or None."""
    lo, up = (_flat(g) for g in f)
    Wp, Wn = W.clamp(min=0), W.clamp(max=0)

    def mat(g: LinFn, M: torch.Tensor) -> LinFn:
        return LinFn(g.A @ M.transpose(-1, -2), (g.b.unsqueeze(1) @ M.transpose(-1, -2)).squeeze(1))
    if lo is up:
        r = mat(lo, W)
        r = r if b is None else LinFn(r.A, r.b + b)
        return r, r
    L, U = mat(lo, Wp) + mat(up, Wn), mat(up, Wp) + mat(lo, Wn)
    return (L, U) if b is None else (LinFn(L.A, L.b + b), LinFn(U.A, U.b + b))


def forward_bounds(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None,
                   intersect_ibp: bool = False) -> tuple[Interval, Forward]:
    """Forward-mode (lower, upper) of ``C @ y`` (or y), (N, m), and the pass (ReLU input bounds)."""
    out = graph.nodes[graph.output]
    keep = (graph.output,) + ((out.inputs[0],) if isinstance(out.op, Linear) and C is not None else ())
    res = forward_pass(graph, lo, hi, keep, intersect_ibp)
    (fl, fu), err, mag = output_fns(graph, res, C)
    yl, yu = concretize(fl, lo, hi, False), concretize(fu, lo, hi, True)
    if err is not None:
        yl, yu = widened((yl, yu), err + concretize_gamma(graph.input_dim) * mag)
    if intersect_ibp:
        from certprune.bounds.engine import interval_output
        il, iu = interval_output(graph, res.bounds, C)
        yl, yu = torch.maximum(yl, il), torch.minimum(yu, iu)
    return (yl, yu), res
