"""alpha-CROWN and beta-CROWN over the graph IR: the one bound optimiser.

alpha: ``relu(z) >= alpha z`` for every alpha in [0, 1], so the CROWN bound with any such slopes
is sound; each output bound (each row of ``[C; -C]``) gets its own slopes for every unstable
neuron, shape (N, 2m, *shape). beta (Wang et al. 2021): on a branch-and-bound domain whose ReLU
splits say ``split * z >= 0``, the bound of ``f - beta * split * z`` (beta >= 0) is a lower bound
of ``f`` on the domain; the multipliers (N, m, *shape) per split ReLU node start at 0 and are
optimised with the slopes. Projected Adam from CROWN's adaptive slopes; the elementwise best
bound seen is kept, so the result is never looser than CROWN. Intermediate bounds stay the
CROWN ones (auto_LiRPA's CROWN-Optimized also optimises those).
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
             splits: dict[int, torch.Tensor] | None = None, start: torch.Tensor | None = None,
             warm: dict[str, dict[int, torch.Tensor]] | None = None,
             keep: dict[str, dict[int, torch.Tensor]] | None = None) -> torch.Tensor:
    """Best lower bound (N, m) of ``sum(A * y)`` (A (K, m, *out_shape)) over the iterations;
    stops early once every entry exceeds ``target`` (m,) or at ``deadline`` (time.monotonic()).
    ``splits`` (ReLU node -> (N, n) int8 with +1 / -1 / 0, the phases the domains fix) adds the
    beta multipliers of the nodes with a split neuron. ``start``: the plain CROWN bound of the same
    ``A`` and ``st`` (beta = 0) where the caller has it (not recomputed). ``warm``: starting
    values ``{"alpha": {node: (N, m, *shape)}, "beta": {...}}`` (a branch-and-bound parent's last
    iterate; projected onto [0, 1] / >= 0, so any values are sound); ``keep`` (a dict) receives
    the last iterate in that form."""
    N, m = st.lo.shape[0], A.shape[1]
    if start is None:
        with torch.no_grad():
            start = backward(graph, graph.output, A, st).lower
    best = start.detach().expand(N, m).clone()
    if iterations <= 0 or not st.relax or _done(best, target):
        return best
    wa, wb = (warm or {}).get("alpha", {}), (warm or {}).get("beta", {})
    alphas = {i: (wa[i].to(st.lo.dtype).clamp(0.0, 1.0) if i in wa else
                  r.alpha.unsqueeze(1).expand(N, m, *r.alpha.shape[1:])).clone().requires_grad_(True)
              for i, r in st.relax.items()}
    signs = {i: s.reshape(N, 1, *st.relax[i].alpha.shape[1:]).to(st.lo.dtype)
             for i, s in (splits or {}).items() if i in st.relax and bool((s != 0).any())}
    betas = {i: (wb[i].to(st.lo.dtype).clamp(min=0.0) if i in wb else
                 torch.zeros(N, m, *sg.shape[2:], dtype=st.lo.dtype)).clone().requires_grad_(True)
             for i, sg in signs.items()}
    params = list(alphas.values()) + list(betas.values())
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

    def bound():
        signed = {i: b * signs[i] for i, b in betas.items()} if betas else None
        return backward(graph, graph.output, A, st, alphas, betas=signed).lower.expand(N, m)

    stopped = False
    for k in range(1, iterations + 1):
        value = bound()
        best = torch.maximum(best, value.detach())
        if _done(best, target) or (deadline is not None and time.monotonic() > deadline):
            stopped = True
            break
        grads = torch.autograd.grad(value.sum(), params)
        with torch.no_grad():
            adam_ascent(params, grads, moments, k, lr)
            for a in alphas.values():
                a.clamp_(0.0, 1.0)
            for b in betas.values():
                b.clamp_(min=0.0)
    if not stopped:
        with torch.no_grad():
            best = torch.maximum(best, bound())
    if keep is not None:
        keep["alpha"] = {i: a.detach() for i, a in alphas.items()}
        keep["beta"] = {i: b.detach() for i, b in betas.items()}
    return best


def adam_ascent(params, grads, moments, k: int, lr: float, b1: float = 0.9, b2: float = 0.999) -> None:
    """One Adam ascent step in place (step ``k`` >= 1). Hand-written because the first use of
    ``torch.optim`` imports torch._dynamo (~3 s), which alone would break short time limits."""
    for p, g, (m, v) in zip(params, grads, moments):
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.add_(lr * (m / (1 - b1 ** k)) / ((v / (1 - b2 ** k)).sqrt() + 1e-8))


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
