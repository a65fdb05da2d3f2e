"""Native alpha-CROWN: CROWN whose lower ReLU slopes are optimised per output bound.

The lower relaxation ``relu(z) >= alpha * z`` holds for *every* alpha in [0, 1], so the CROWN
bound computed with any such alphas is sound; optimising them (projected Adam, as in
alpha-CROWN, Xu et al. 2021) can only tighten it. Each output bound (each row of ``C`` for the
lower bound, each row of ``-C`` for the upper bound) gets its own slopes for every unstable
neuron, shape (N, 2m, n_j). The iteration starts at CROWN's adaptive slopes and the best value
seen per entry is kept, so the result is never looser than CROWN. By default intermediate bounds
are the (exact) CROWN ones; ``optimize_intermediate=True`` also gives every intermediate layer's
bounds their own slopes (N, 2 n_k, n_j), recomputed each iteration and intersected with CROWN's,
and optimises them for the final objective, as auto_LiRPA's ``CROWN-Optimized`` does (tighter,
about 8x slower). Arithmetic is float64 (see ``native_bounds``).
"""
from __future__ import annotations

import torch

from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.native_bounds import (LayerBounds, backsubstitute, crown_intermediate, interval_affine,
                                               masked_alphas, relu_relaxation)

ITERATIONS = 20
LR = 0.5


def alpha_crown(net: AffineReluNet, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None,
                iterations: int = ITERATIONS, lr: float = LR, pre: list[LayerBounds] | None = None,
                optimize_intermediate: bool = False) -> tuple[LayerBounds, list[LayerBounds]]:
    """alpha-CROWN bounds on ``C @ y`` (C (m, n_out) or (N, m, n_out); identity if None):
    ((lower, upper), pre-activation bounds used), each (N, m) / (N, n_j)."""
    if optimize_intermediate and pre is None and net.num_layers > 2 and iterations > 0:
        return _alpha_crown_full(net, lo, hi, C, iterations, lr)
    if pre is None:
        pre = crown_intermediate(net, lo, hi)
    last, N = net.num_layers - 1, lo.shape[0]
    C, m, CC = _stacked_spec(net, C, lo.dtype)
    lam0 = CC @ net.weights[last]
    const0 = (CC @ net.biases[last]).expand(N, 2 * m)
    relax = [relu_relaxation(l, u) for l, u in pre]

    def bound(alphas):
        return backsubstitute(net, last, relax, lo, hi, lam0, const0,
                              None if alphas is None else masked_alphas(pre, alphas))

    with torch.no_grad():
        best = bound(None)
    if last == 0 or iterations <= 0:
        return (best[:, :m], -best[:, m:]), pre
    alphas = [a.unsqueeze(1).expand(N, 2 * m, a.shape[1]).clone().requires_grad_(True) for a, _, _ in relax]
    opt = torch.optim.Adam(alphas, lr=lr)
    for _ in range(iterations):
        value = bound(alphas)
        best = torch.maximum(best, value.detach())
        opt.zero_grad()
        (-value.sum()).backward()
        opt.step()
        with torch.no_grad():
            for a in alphas:
                a.clamp_(0.0, 1.0)
    with torch.no_grad():
        best = torch.maximum(best, bound(alphas))
    return (best[:, :m], -best[:, m:]), pre


def _alpha_crown_full(net: AffineReluNet, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None,
                      iterations: int, lr: float) -> tuple[LayerBounds, list[LayerBounds]]:
    """alpha-CROWN with optimised intermediate bounds (see module doc). Every iterate's bounds
    are sound for its alphas in [0, 1], so elementwise best values over iterations are sound."""
    crown_pre = crown_intermediate(net, lo, hi)
    last, N = net.num_layers - 1, lo.shape[0]
    C, m, CC = _stacked_spec(net, C, lo.dtype)
    specs = [(torch.cat([w, -w]), torch.cat([b, -b])) for w, b in zip(net.weights[1:last], net.biases[1:last])]
    specs.append((CC @ net.weights[last], CC @ net.biases[last]))
    init = [relu_relaxation(l, u)[0] for l, u in crown_pre]
    # alphas[k - 1][j]: slopes of ReLU layer j < k used when bounding affine layer k (k = 1 .. last)
    alphas = [[init[j].unsqueeze(1).expand(N, lam.shape[-2], init[j].shape[1]).clone().requires_grad_(True)
               for j in range(k)] for k, (lam, _) in enumerate(specs, start=1)]
    opt = torch.optim.Adam([a for row in alphas for a in row], lr=lr)
    best, best_pre = None, [(l.clone(), u.clone()) for l, u in crown_pre]
    for it in range(iterations + 1):
        pre = [interval_affine(net.weights[0], net.biases[0], lo, hi)]
        relax = [relu_relaxation(*pre[0])]
        for k, (lam, b) in enumerate(specs, start=1):
            r = backsubstitute(net, k, relax, lo, hi, lam, b.expand(N, lam.shape[-2]), masked_alphas(pre, alphas[k - 1]))
            if k == last:
                break
            n = lam.shape[-2] // 2
            low = torch.maximum(r[:, :n], crown_pre[k][0])
            up = torch.minimum(-r[:, n:], crown_pre[k][1])
            pre.append((low, up))
            relax.append(relu_relaxation(low, up))
        value = r.detach()
        best = value if best is None else torch.maximum(best, value)
        best_pre = [(torch.maximum(bl, l.detach()), torch.minimum(bu, u.detach())) for (bl, bu), (l, u) in zip(best_pre, pre)]
        if it == iterations:
            break
        opt.zero_grad()
        (-r.sum()).backward()
        opt.step()
        with torch.no_grad():
            for row in alphas:
                for a in row:
                    a.clamp_(0.0, 1.0)
    return (best[:, :m], -best[:, m:]), best_pre


def _stacked_spec(net, C, dtype):
    """(C, m, [C; -C]): the spec (identity on the outputs when None), its row count, and the
    stacked form whose lower bounds give both the lower and the (negated) upper bounds."""
    if C is None:
        C = torch.eye(net.output_dim, dtype=dtype)
    return C, C.shape[-2], torch.cat([C, -C], dim=-2)
