"""Native alpha-CROWN: CROWN whose lower ReLU slopes are optimised per output bound.

The lower relaxation ``relu(z) >= alpha * z`` holds for *every* alpha in [0, 1], so the CROWN
bound computed with any such alphas is sound; optimising them (projected Adam, as in
alpha-CROWN, Xu et al. 2021) can only tighten it. Each output bound (each row of ``C`` for the
lower bound, each row of ``-C`` for the upper bound) gets its own slopes for every unstable
neuron, shape (N, 2m, n_j). The iteration starts at CROWN's adaptive slopes and the best value
seen per entry is kept, so the result is never looser than CROWN. Intermediate bounds are the
(exact) CROWN ones and are not optimised, like auto_LiRPA's default ``CROWN-Optimized``.
Arithmetic is float64 (see ``native_bounds``).
"""
from __future__ import annotations

import torch

from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.native_bounds import LayerBounds, backsubstitute, crown_intermediate, masked_alphas, relu_relaxation

ITERATIONS = 20
LR = 0.5


def alpha_crown(net: AffineReluNet, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None,
                iterations: int = ITERATIONS, lr: float = LR,
                pre: list[LayerBounds] | None = None) -> tuple[LayerBounds, list[LayerBounds]]:
    """alpha-CROWN bounds on ``C @ y`` (C (m, n_out) or (N, m, n_out); identity if None):
    ((lower, upper), pre-activation bounds used), each (N, m) / (N, n_j)."""
    if pre is None:
        pre = crown_intermediate(net, lo, hi)
    last, N = net.num_layers - 1, lo.shape[0]
    if C is None:
        C = torch.eye(net.output_dim, dtype=lo.dtype)
    m = C.shape[-2]
    CC = torch.cat([C, -C], dim=-2)
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
