"""The graph engine's entry points: bounds of a model's outputs (``graph_bounds``, behind
``compute_bounds(engine="native")``) and of a batch of branch-and-bound domains
(``domain_bounds``, behind every ``verify`` branch and bound: chains, residual, concat and twin
graphs alike)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from certprune.bounds import alpha as alpha_mod
from certprune.bounds import crown
from certprune.bounds.ibp import ibp
from certprune.graph.ir import Graph
from certprune.graph.op import Interval
from certprune.graph.ops_linear import Linear
from certprune.semantics import gamma64


@dataclass
class DomainBounds:
    """``lower`` (N, m): lower bounds of ``C y + c``; ``pre[j]`` clamped pre-activation bounds of
    the j-th ReLU node, flattened (N, n_j); ``infeasible`` (N,) empty domains; ``lam_x`` (N, m, n_in)
    input coefficients of the (un-optimised) CROWN bound; ``relu_scores[j]`` (N, m, n_j) intercept
    loss of each unstable neuron per spec row; ``params`` (alpha, beta), each (N, m, total ReLU
    neurons), the last alpha/beta iterate when ``domain_bounds`` was asked to keep it."""

    lower: torch.Tensor
    pre: list[tuple[torch.Tensor, torch.Tensor]]
    infeasible: torch.Tensor
    lam_x: torch.Tensor
    relu_scores: list[torch.Tensor]
    params: tuple[torch.Tensor, torch.Tensor] | None = None

    def unstable_count(self) -> torch.Tensor:
        """Number of unstable (l < 0 < u) neurons per domain, (N,)."""
        n = torch.zeros(self.lower.shape[0], dtype=torch.long)
        for l, u in self.pre:
            n += ((l < 0) & (u > 0)).sum(1)
        return n


@dataclass(frozen=True)
class GraphBounds:
    """(N, m) output bounds and, per ReLU node in topological order, its input bounds (N, n_j)."""

    lower: torch.Tensor
    upper: torch.Tensor
    intermediate: tuple[Interval, ...]


def _flat(b: Interval) -> Interval:
    return b[0].reshape(len(b[0]), -1), b[1].reshape(len(b[1]), -1)


def ibp_bounds(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None) -> GraphBounds:
    """Interval bounds on ``C @ y`` (or y) and on every ReLU input."""
    bs = ibp(graph, lo, hi)
    inter = tuple(_flat(bs[graph.nodes[i].inputs[0]]) for i in graph.relu_nodes)
    yl, yu = interval_output(graph, bs, C)
    return GraphBounds(yl, yu, inter)


ROWS = ("unstable", "all")  # which neurons get CROWN intermediate bounds (``crown.intermediate``)


def graph_bounds(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, method: str = "crown",
                 C: torch.Tensor | None = None, intersect_ibp: bool = False, rows: str = "all") -> GraphBounds:
    """Bounds on ``C @ y`` (or y) over N flattened boxes; method ibp, crown or alpha-crown.
    ``intersect_ibp`` intersects every ReLU input and the output with interval bounds (sound,
    tighter, CROWN runs only on interval-unstable neurons where the pass is costly); off =
    auto_LiRPA's semantics. ``rows``: "all" (every neuron's CROWN bounds: with ``intersect_ibp``
    off, equal to auto_LiRPA's) or "unstable" (only the neurons the interval image leaves
    unstable per box; the others keep interval bounds: tighter-or-equal, see ``crown``)."""
    if method == "ibp":
        return ibp_bounds(graph, lo, hi, C)
    st = crown.intermediate(graph, lo, hi, intersect=intersect_ibp, sparse=intersect_ibp, rows=rows)
    if method == "alpha-crown":
        yl, yu = alpha_mod.alpha_output_bounds(graph, st, C)
    else:
        yl, yu = crown.output_bounds(graph, st, C)
    if intersect_ibp:
        ib = interval_output(graph, st.bounds, C)
        yl, yu = torch.maximum(yl, ib[0]), torch.minimum(yu, ib[1])
    inter = tuple(_flat(st.bounds[graph.nodes[i].inputs[0]]) for i in graph.relu_nodes)
    return GraphBounds(yl, yu, inter)


CACHE_VALUES = 1 << 20  # float64 values of the largest coefficient tensor of one pass (8 MB: fits this
# machine's 32 MB L3 shared with other jobs; on the 20-50-30-15-10-1 MLP 256-512 boxes per pass measured
# 1.3-1.6x faster than 1,024, whose 24 MB tensors stream from memory)


def boxes_per_pass(graph: Graph, most: int = 1024, least: int = 64) -> int:
    """Boxes per CROWN call: the identity-spec pass of a 1-D ReLU input node p holds
    (boxes, 2 size(p), widest node below p) coefficients; keep the largest under ``CACHE_VALUES``."""
    per_box = 1
    for i in graph.relu_nodes:
        p = graph.nodes[i].inputs[0]
        if len(graph.nodes[p].shape) == 1 and not crown.interval_exact(graph, p):
            per_box = max(per_box, 2 * graph.nodes[p].size * max(graph.nodes[j].size for j in graph.ancestors(p)))
    return max(least, min(most, CACHE_VALUES // per_box))


def interval_output(graph: Graph, bounds, C: torch.Tensor | None) -> Interval:
    """Interval image of ``C @ y`` (or y) from node bounds (``bounds[i]`` indexable): with a
    Linear output node, ``C W`` is applied as one map (the exact interval image of the last
    layer composed with C), else C is applied to the output's interval."""
    out = graph.nodes[graph.output]
    if C is None:
        return _flat(bounds[graph.output])
    if isinstance(out.op, Linear) and len(out.shape) == 1:
        x = _flat(bounds[out.inputs[0]])
        W = C @ out.op.weight
        b = C @ out.op.bias if out.op.bias is not None else torch.zeros(C.shape[-2], dtype=x[0].dtype)
    else:
        x, W, b = _flat(bounds[graph.output]), C, torch.zeros(C.shape[-2], dtype=C.dtype)
    c, r = ((x[0] + x[1]) / 2).unsqueeze(-1), ((x[1] - x[0]) / 2).unsqueeze(-1)
    mid, rad = (W @ c).squeeze(-1) + b, (W.abs() @ r).squeeze(-1)
    # the rounding of C W (inner length m_out), of this image (inner length n) and of the widening:
    # as Linear.float64_residual, with |C| |W| bounding |C W| and the rounding of it
    m = torch.maximum(x[0].abs(), x[1].abs()).unsqueeze(-1)
    aw = C.abs() @ out.op.abs_weight if W is not C else C.abs()
    ab = C.abs() @ out.op.bias.abs() if W is not C and out.op.bias is not None else 0.0
    k = 2 * (2 * W.shape[-1] + (out.op.weight.shape[0] if W is not C else 0) + W.shape[-2] + 16)
    e = gamma64(k) * ((aw @ m).squeeze(-1) + ab)
    return mid - rad - e, mid + rad + e


BAB_LR = 0.1  # Adam step of the alpha/beta optimisation on branch-and-bound domains


def domain_bounds(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, splits: list[torch.Tensor],
                  C: torch.Tensor, c: torch.Tensor, iters: int = 0, target: torch.Tensor | None = None,
                  deadline: float | None = None, lr: float = BAB_LR,
                  prior: dict[int, Interval] | None = None, parent: list[Interval] | None = None,
                  reuse_upto: int = -1, warm: tuple[torch.Tensor, torch.Tensor] | None = None,
                  keep_params: bool = False) -> DomainBounds:
    """Bounds of ``C y + c`` on N branch-and-bound domains (boxes ``lo``/``hi`` (N, n_in) and
    ``splits[j]`` (N, n_j) for the j-th ReLU node: +1 forced active, -1 inactive, 0 free).
    Intermediate bounds are intersected with interval bounds and clamped by the splits (crossing
    bounds: infeasible); with ``iters > 0`` the lower ReLU slopes and the split constraints'
    multipliers are optimised towards ``target`` (alpha/beta-CROWN, ``alpha.optimize``).
    ``prior``: fixed bounds of ReLU input nodes valid on every domain (``crown.intermediate``).
    ``parent[j]`` (N, n_j): pre-activation bounds of the j-th ReLU node valid on each domain (its
    parent's, a superset: intersected with the computed ones); the ReLU nodes ``j <= reuse_upto``
    take them as they are, without a CROWN pass (sound for any valid bounds; equal to a fresh
    pass's where the child differs from its parent only by splits at ReLU nodes >= reuse_upto,
    whose inputs come before them in topological order). ``warm`` (alpha, beta) (N, m, total):
    starting slopes and multipliers of the optimisation (a parent's ``params``; any values are
    sound, ``alpha.optimize`` projects them); ``keep_params`` returns the last iterate as ``params``."""
    N = lo.shape[0]
    sp = dict(zip(graph.relu_nodes, splits))
    known = None
    if parent is not None:
        inputs = [graph.nodes[i].inputs[0] for i in graph.relu_nodes]
        shaped = {p: (l.reshape(N, *graph.nodes[p].shape), u.reshape(N, *graph.nodes[p].shape))
                  for p, (l, u) in zip(inputs, parent)}
        if prior is not None:
            shaped = {p: (torch.maximum(l, prior[p][0]), torch.minimum(u, prior[p][1])) if p in prior else (l, u)
                      for p, (l, u) in shaped.items()}
        known = {p: shaped[p] for p in inputs[:reuse_upto + 1]}
        prior = shaped
    st = crown.intermediate(graph, lo, hi, intersect=True, sparse=True, splits=sp, prior=prior, known=known)
    A = C.unsqueeze(0).reshape(1, C.shape[0], *graph.nodes[graph.output].shape)
    bw = crown.backward(graph, graph.output, A, st, record=True)
    lower = crown.add_rounded(bw.lower.expand(N, C.shape[0]), c)
    params = None
    if iters > 0 and st.relax:
        tgt = None if target is None else target - c
        sizes = [graph.nodes[i].size for i in graph.relu_nodes]
        w = None
        if warm is not None:
            w = {name: {i: part.reshape(N, part.shape[1], *graph.nodes[i].shape)
                        for i, part in zip(graph.relu_nodes, torch.split(t, sizes, dim=2))}
                 for name, t in zip(("alpha", "beta"), warm)}
        kept: dict | None = {} if keep_params else None
        opt = alpha_mod.optimize(graph, st, A, iters, lr, target=tgt, deadline=deadline, splits=sp, start=bw.lower,
                                 warm=w, keep=kept)
        lower = torch.maximum(lower, crown.add_rounded(opt, c))
        if kept:
            m = C.shape[0]
            params = tuple(torch.cat([kept[name][i].reshape(N, m, -1) if i in kept[name]
                                      else lo.new_zeros(N, m, graph.nodes[i].size) for i in graph.relu_nodes], 2)
                           for name in ("alpha", "beta"))
    if keep_params and params is None:  # no iterate: CROWN's slopes, no multipliers
        m = C.shape[0]
        alpha0 = torch.cat([st.relax[i].alpha.reshape(N, 1, -1).expand(N, m, -1) if i in st.relax
                            else lo.new_zeros(N, m, graph.nodes[i].size) for i in graph.relu_nodes], 2)
        params = (alpha0, torch.zeros_like(alpha0))
    scores = [bw.scores[i].expand(N, *bw.scores[i].shape[1:]) if i in bw.scores
              else lo.new_zeros(N, C.shape[0], graph.nodes[i].size) for i in graph.relu_nodes]
    pre = [_flat(st.pre[i]) for i in graph.relu_nodes]
    return DomainBounds(lower, pre, st.infeasible, bw.lam_x.expand(N, *bw.lam_x.shape[1:]), scores, params)


def root_lower(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, c: torch.Tensor,
               iters: int, target: torch.Tensor, lr: float = alpha_mod.LR, deadline: float | None = None,
               prior: dict[int, Interval] | None = None) -> torch.Tensor:
    """Lower bounds (1, m) of ``C y + c`` on one box: intersected CROWN, then alpha-CROWN; past
    ``deadline`` the CROWN pass raises DeadlineExceeded and alpha-CROWN stops. ``prior``: fixed
    ReLU input bounds (``crown.intermediate``)."""
    st = crown.intermediate(graph, lo, hi, intersect=True, sparse=True, deadline=deadline, prior=prior)
    A = C.unsqueeze(0).reshape(1, C.shape[0], *graph.nodes[graph.output].shape)
    return crown.add_rounded(alpha_mod.optimize(graph, st, A, iters, lr, target=target - c, deadline=deadline), c)
