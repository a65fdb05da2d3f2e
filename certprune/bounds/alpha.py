"""alpha-CROWN over the graph IR: CROWN whose unstable lower ReLU slopes are optimised.

``relu(z) >= alpha z`` for every alpha in [0, 1], so the CROWN bound with any such slopes is
sound; each output bound (each row of ``[C; -C]``) gets its own slopes for every unstable
neuron, shape (N, 2m, *shape). Projected Adam (``torch.optim.Adam``) from CROWN's adaptive
slopes; the elementwise best bound seen is kept, so the result is never looser than CROWN.
Intermediate bounds stay the CROWN ones (auto_LiRPA's CROWN-Optimized also optimises those).
"""
from __future__ import annotations

import time

import torch

from certprune.bounds.crown import State, backward, spec_matrix
from certprune.graph.ir import Graph
from certprune.graph.op import Interval

ITERATIONS = 20
LR = 0.5


def optimize(graph: Graph, st: State, A: torch.Tensor, iterations: int = ITERATIONS, lr: float = LR,
             target: torch.Tensor | None = None, deadline: float | None = None,
             start: torch.Tensor | None = None) -> torch.Tensor:
    """Best lower bound (N, m) of ``sum(A * y)`` (A (K, m, *out_shape)) over the iterations;
    stops early once every entry exceeds ``target`` (m,) or at ``deadline`` (time.monotonic()).
    ``start``: the plain CROWN bound of the same ``A`` and ``st`` where the caller has it (not
    recomputed)."""
    N, m = st.lo.shape[0], A.shape[1]
    if start is None:
        with torch.no_grad():
            start = backward(graph, graph.output, A, st).lower
    best = start.detach().expand(N, m).clone()
    if iterations <= 0 or not st.relax or _done(best, target):
        return best
    alphas = {i: r.alpha.unsqueeze(1).expand(N, m, *r.alpha.shape[1:]).clone().requires_grad_(True)
              for i, r in st.relax.items()}
    opt = torch.optim.Adam(list(alphas.values()), lr=lr)
    for _ in range(iterations):
        value = backward(graph, graph.output, A, st, alphas).lower.expand(N, m)
        best = torch.maximum(best, value.detach())
        if _done(best, target) or (deadline is not None and time.monotonic() > deadline):
            return best
        opt.zero_grad()
        (-value.sum()).backward()
        opt.step()
        with torch.no_grad():
            for a in alphas.values():
                a.clamp_(0.0, 1.0)
    with torch.no_grad():
        best = torch.maximum(best, backward(graph, graph.output, A, st, alphas).lower.expand(N, m))
    return best


def _done(best: torch.Tensor, target: torch.Tensor | None) -> bool:
    return target is not None and bool((best > target).all())


def alpha_output_bounds(graph: Graph, st: State, C: torch.Tensor | None = None, iterations: int = ITERATIONS,
                        lr: float = LR) -> Interval:
    """alpha-CROWN (lower, upper) of ``C @ y`` (identity if None), (N, m)."""
    Cs = spec_matrix(C, graph.output_dim, st.lo.dtype)
    m = Cs.shape[1]
    A = torch.cat([Cs, -Cs], 1).reshape(Cs.shape[0], 2 * m, *graph.nodes[graph.output].shape)
    r = optimize(graph, st, A, iterations, lr)
    return r[:, :m], -r[:, m:]
