"""CROWN bounds for a batch of branch-and-bound domains (box + fixed ReLU phases).

A domain is a box ``[lo, hi]`` of flattened inputs plus, per ReLU layer, a split vector with
+1 (neuron forced active, z >= 0), -1 (forced inactive, z <= 0) or 0 (free). Intermediate
bounds are computed layer by layer with the native CROWN (``native_bounds.crown_layer_bounds``)
and then clamped by the splits (l >= 0 or u <= 0), so every later layer sees the split
constraints. A domain whose clamped bounds cross (l > u) is empty and reported infeasible.

The final specification pass is hand-written here (instead of calling ``backward_lower``)
because branching needs its linear coefficients: the coefficient of each ReLU output (for the
BaBSR-style score) and of the input (for the input-split score and a primal candidate point).
All arithmetic is float64; see ``certprune.verifiers.verify`` for the certification margin.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.native_bounds import crown_layer_bounds, relu_relaxation


@dataclass
class DomainBounds:
    """``lower`` (N, m): lower bounds of ``C y + c``; ``pre[j]`` clamped pre-activation bounds;
    ``infeasible`` (N,) empty domains; ``lam_x`` (N, m, n_in) input coefficients of the bound;
    ``relu_scores[j]`` (N, m, n_j) intercept loss of each unstable neuron per spec row."""

    lower: torch.Tensor
    pre: list[tuple[torch.Tensor, torch.Tensor]]
    infeasible: torch.Tensor
    lam_x: torch.Tensor
    relu_scores: list[torch.Tensor]

    def unstable_count(self) -> torch.Tensor:
        """Number of unstable (l < 0 < u) neurons per domain, (N,)."""
        n = torch.zeros(self.lower.shape[0], dtype=torch.long)
        for l, u in self.pre:
            n += ((l < 0) & (u > 0)).sum(1)
        return n


def split_intermediate(net: AffineReluNet, lo: torch.Tensor, hi: torch.Tensor, splits: list[torch.Tensor],
                       ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Clamped pre-activation bounds of every ReLU layer and the infeasible mask (N,)."""
    pre: list[tuple[torch.Tensor, torch.Tensor]] = []
    infeasible = torch.zeros(lo.shape[0], dtype=torch.bool)
    for k in range(net.num_layers - 1):
        l, u = crown_layer_bounds(net, k, pre, lo, hi)
        s = splits[k]
        l = torch.where(s > 0, l.clamp(min=0), l)
        u = torch.where(s < 0, u.clamp(max=0), u)
        bad = l > u
        infeasible |= bad.any(1)
        l = torch.where(bad, u, l)  # keep the relaxation well defined; these domains are dropped
        pre.append((l, u))
    return pre, infeasible


def spec_backward(net: AffineReluNet, pre, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, c: torch.Tensor,
                  alphas: list[torch.Tensor] | None = None, betas: list[torch.Tensor] | None = None,
                  splits: list[torch.Tensor] | None = None):
    """CROWN lower bound of ``C y + c`` (C (m, n_out), c (m,)) with its coefficients; returns
    (lower (N, m), lam_x (N, m, n_in), relu_scores list).

    ``alphas[j]`` (N, m, n_j) in [0, 1] override the lower ReLU slopes per row (alpha-CROWN);
    ``betas[j]`` (N, m, n_j) >= 0 are Lagrange multipliers of the split constraints
    ``splits[j] * z_j >= 0`` (beta-CROWN): the bound of ``f - sum beta * split * z`` is a lower
    bound of ``f`` on the domain for any such values, so optimising them is always sound.
    """
    N = lo.shape[0]
    last = net.num_layers - 1
    lam = (C @ net.weights[last]).expand(N, *C.shape[:1], net.weights[last].shape[1])
    const = (C @ net.biases[last] + c).expand(N, C.shape[0])
    scores: list[torch.Tensor] = [None] * last  # type: ignore[list-item]
    for j in range(last - 1, -1, -1):
        l, u = pre[j]
        alpha, s, t = relu_relaxation(l, u)
        alpha = alpha.unsqueeze(1)
        if alphas is not None:
            unstable = ((l < 0) & (u > 0)).unsqueeze(1)
            alpha = torch.where(unstable, alphas[j], alpha)
        pos, neg = lam.clamp(min=0), lam.clamp(max=0)
        loss = -(neg * t.unsqueeze(1))  # >= 0: what the chord's intercept costs this row
        scores[j] = loss.detach()
        const = const - loss.sum(-1)
        lam = pos * alpha + neg * s.unsqueeze(1)
        if betas is not None:
            lam = lam - betas[j] * splits[j].unsqueeze(1).to(lam.dtype)
        const = const + lam @ net.biases[j]
        lam = lam @ net.weights[j]
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    lower = const + (lam @ center.unsqueeze(-1)).squeeze(-1) - (lam.abs() @ radius.unsqueeze(-1)).squeeze(-1)
    return lower, lam, scores


def optimize_spec(net: AffineReluNet, pre, lo, hi, C, c, splits: list[torch.Tensor], iters: int, target: torch.Tensor,
                  lr: float = 0.1, deadline: float | None = None):
    """alpha/beta-CROWN: Adam on the slopes and split multipliers for ``iters`` steps, keeping the
    element-wise best lower bound seen (each one is sound). Stops once every row exceeds ``target``
    or at ``deadline`` (time.monotonic())."""
    import time
    lower, lam_x, scores = spec_backward(net, pre, lo, hi, C, c)
    if iters <= 0 or not pre or bool((lower > target).all()):
        return lower, lam_x, scores
    m = C.shape[0]
    alphas = [relu_relaxation(l, u)[0].unsqueeze(1).expand(-1, m, -1).clone().requires_grad_(True) for l, u in pre]
    betas = [torch.zeros(l.shape[0], m, l.shape[1], dtype=l.dtype, requires_grad=True) for l, _ in pre]
    params = alphas + betas
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    best = lower
    for k in range(1, iters + 1):
        low, lx, sc = spec_backward(net, pre, lo, hi, C, c, alphas, betas, splits)
        best = torch.maximum(best, low.detach())
        if bool((best > target).all()) or (deadline is not None and time.monotonic() > deadline):
            break
        grads = torch.autograd.grad(low.sum(), params)
        with torch.no_grad():
            _adam_ascent(params, grads, moments, k, lr)
            for a in alphas:
                a.clamp_(0, 1)
            for b in betas:
                b.clamp_(min=0)
    return best, lam_x, scores


def _adam_ascent(params, grads, moments, k: int, lr: float, b1: float = 0.9, b2: float = 0.999) -> None:
    """One Adam ascent step in place. Hand-written because the first use of ``torch.optim``
    imports torch._dynamo (~3 s), which alone would break short verification time limits."""
    for p, g, (m, v) in zip(params, grads, moments):
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.add_(lr * (m / (1 - b1 ** k)) / ((v / (1 - b2 ** k)).sqrt() + 1e-8))


def bound_domains(net: AffineReluNet, lo: torch.Tensor, hi: torch.Tensor, splits: list[torch.Tensor],
                  C: torch.Tensor, c: torch.Tensor, iters: int = 0, target: torch.Tensor | None = None,
                  deadline: float | None = None) -> DomainBounds:
    """Bound ``C y + c`` on N domains (boxes ``lo``/``hi`` (N, n_in), ``splits`` per layer (N, n_j));
    with ``iters > 0`` the final bound is alpha/beta-optimised towards ``target`` (m,)."""
    pre, infeasible = split_intermediate(net, lo, hi, splits)
    tgt = torch.zeros(C.shape[0], dtype=lo.dtype) if target is None else target
    lower, lam_x, scores = optimize_spec(net, pre, lo, hi, C, c, splits, iters, tgt, deadline=deadline)
    return DomainBounds(lower, pre, infeasible, lam_x, scores)
