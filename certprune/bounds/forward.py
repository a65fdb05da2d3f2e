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
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from certprune.bounds.crown import State, spec_matrix
from certprune.graph.ir import Graph
from certprune.graph.op import FnPair, Interval, LinFn
from certprune.graph.ops_linear import Linear
from certprune.graph.relu import ReLU, Relaxation


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

    def state(self) -> State:
        """The bounds as a CROWN state (backward passes reuse the forward relaxations)."""
        return State(self.lo, self.hi, self.bounds, self.relax, self.pre,
                     torch.zeros(self.lo.shape[0], dtype=torch.bool))


def concretize(f: LinFn, lo: torch.Tensor, hi: torch.Tensor, upper: bool) -> torch.Tensor:
    """Minimum (maximum if ``upper``) of ``f`` over each box lo/hi (N, n_in); (N, *shape)."""
    K, n = f.A.shape[:2]
    A = f.A.reshape(K, n, -1)
    c, r = (lo + hi) / 2, (hi - lo) / 2
    if K == 1:
        mid, rad = c @ A[0], r @ A[0].abs()
    else:
        mid, rad = (c.unsqueeze(1) @ A).squeeze(1), (r.unsqueeze(1) @ A.abs()).squeeze(1)
    v = (mid + rad if upper else mid - rad).reshape(len(lo), *f.A.shape[2:])
    return v + f.b


def _input_fn(graph: Graph, lo: torch.Tensor) -> FnPair:
    n = graph.input_dim
    f = LinFn(torch.eye(n, dtype=lo.dtype).reshape(1, n, *graph.input_shape),
              lo.new_zeros(1, *graph.input_shape))
    return f, f


@dataclass
class _Pending:
    """A ReLU of a shared input function ``f`` (K = 1) whose one consumer is a Linear: that Linear
    maps relu(f) in one step (:meth:`Linear.forward_linear_relaxed`), never building the per-box
    relaxed functions (N, n_in, h)."""

    f: LinFn
    relax: Relaxation


def _fusable(graph: Graph, keep: tuple[int, ...]) -> set[int]:
    """ReLU nodes (1-D, not kept) whose only consumer is one Linear with at most as many outputs
    as the graph has inputs: fusing them saves memory traffic ((N, h, m) weights per box instead
    of (N, n_in, h) functions)."""
    users: dict[int, list[int]] = {}
    for i, node in enumerate(graph.nodes[1:], start=1):
        for j in node.inputs:
            users.setdefault(j, []).append(i)
    out = set()
    for j, node in enumerate(graph.nodes):
        u = users.get(j, [])
        if not (isinstance(node.op, ReLU) and j not in keep and len(u) == 1 and len(node.shape) == 1):
            continue
        c = graph.nodes[u[0]]
        if isinstance(c.op, Linear) and c.op.weight.shape[0] <= graph.input_dim:
            out.add(j)
    return out


def forward_pass(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, keep: tuple[int, ...] = (),
                 intersect_ibp: bool = False, every_node: bool = False) -> Forward:
    """Forward symbolic bounds over N boxes lo/hi (N, input_dim); see module doc. A node's bounds
    are the concretised functions where they are needed (ReLU inputs, ``keep``, all nodes if
    ``every_node``), elsewhere the interval image of its inputs' bounds."""
    N = lo.shape[0]
    res = Forward(lo, hi)
    res.bounds[0] = (lo.reshape(N, *graph.input_shape), hi.reshape(N, *graph.input_shape))
    feeds_relu = {n.inputs[0] for n in graph.nodes[1:] if n.op.nonlinear}
    last_use = {}
    for i, node in enumerate(graph.nodes[1:], start=1):
        for j in node.inputs:
            last_use[j] = i
    fns: dict = {0: _input_fn(graph, lo)}
    fusable = _fusable(graph, keep)
    for i, node in enumerate(graph.nodes[1:], start=1):
        ins = [fns[j] for j in node.inputs]
        if node.op.nonlinear:
            l, u = res.bounds[node.inputs[0]]
            res.pre[i] = (l, u)
            res.relax[i] = ReLU.relax(l, u)
            f = ins[0]
            if i in fusable and f[0] is f[1] and f[0].A.shape[0] == 1:
                fns[i] = _Pending(f[0], res.relax[i])  # its one consumer, a Linear, maps it directly
            else:
                fns[i] = node.op.forward_relaxed(f, res.relax[i])
            res.bounds[i] = node.op.interval((l, u))
        else:
            if isinstance(ins[0], _Pending):
                fns[i] = node.op.forward_linear_relaxed(ins[0].f, ins[0].relax)
            else:
                fns[i] = node.op.forward_linear(*ins)
            if i in feeds_relu or i in keep or every_node:
                fl, fu = fns[i]
                box = concretize(fl, lo, hi, False), concretize(fu, lo, hi, True)
                if intersect_ibp:
                    il, iu = node.op.interval(*[res.bounds[j] for j in node.inputs])
                    box = (torch.maximum(box[0], il), torch.minimum(box[1], iu))
            else:
                box = node.op.interval(*[res.bounds[j] for j in node.inputs])
            res.bounds[i] = box
        for j in set(node.inputs):  # a node may use one input twice (x + x, concat([h, h]))
            if last_use[j] == i and j not in keep:
                del fns[j]
    res.fns = {i: fns[i] for i in keep}
    return res


def output_fns(graph: Graph, res: Forward, C: torch.Tensor | None) -> FnPair:
    """Linear functions bounding ``C @ y`` (y if None), flattened (K, n_in, m). With a Linear
    output node, ``C W`` is applied to its input's functions as one map (exact folding, as
    auto_LiRPA does); ``res`` must keep the output node (and its input for the folding)."""
    out = graph.nodes[graph.output]
    if C is None:
        return tuple(_flat(f) for f in res.fns[graph.output])
    Cs = spec_matrix(C, graph.output_dim, res.lo.dtype)  # (K, m, n_out)
    if isinstance(out.op, Linear) and len(out.shape) == 1 and out.inputs[0] in res.fns:
        W = Cs @ out.op.weight
        b = Cs @ out.op.bias if out.op.bias is not None else None
        src = res.fns[out.inputs[0]]
    else:
        W, b, src = Cs, None, tuple(_flat(f) for f in res.fns[graph.output])
    return _apply_matrix(src, W, b)


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
    fl, fu = output_fns(graph, res, C)
    yl, yu = concretize(fl, lo, hi, False), concretize(fu, lo, hi, True)
    if intersect_ibp:
        from certprune.bounds.engine import interval_output
        il, iu = interval_output(graph, res.bounds, C)
        yl, yu = torch.maximum(yl, il), torch.minimum(yu, iu)
    return (yl, yu), res
