"""Native batched bounds on an :class:`AffineReluNet`: interval (IBP) and backward CROWN.

All arithmetic is float64 on the exact float32 weights widened to float64, so the bounds enclose
the real-arithmetic network; callers that certify add their own documented margin for float32
execution. Shapes: boxes are ``(N, n_in)``; bounds are ``(N, n)``; a specification matrix ``C``
is ``(m, n_out)`` or ``(N, m, n_out)`` and bounds are then on ``C @ y``, shape ``(N, m)``.
"""
from __future__ import annotations

import torch

from certprune.verifiers.affine import AffineReluNet

LayerBounds = tuple[torch.Tensor, torch.Tensor]


def interval_affine(w: torch.Tensor, b: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> LayerBounds:
    """Exact interval image of ``w x + b`` over the box ``[lo, hi]`` (center/radius form)."""
    c, r = (lo + hi) / 2, (hi - lo) / 2
    zc = c @ w.T + b
    zr = r @ w.abs().T
    return zc - zr, zc + zr


def ibp(net: AffineReluNet, lo: torch.Tensor, hi: torch.Tensor) -> tuple[LayerBounds, list[LayerBounds]]:
    """Interval bound propagation: (output bounds, pre-activation bounds of each ReLU layer)."""
    pre: list[LayerBounds] = []
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        zl, zu = interval_affine(w, b, lo, hi)
        if i == net.num_layers - 1:
            return (zl, zu), pre
        pre.append((zl, zu))
        lo, hi = zl.clamp(min=0), zu.clamp(min=0)
    raise AssertionError("unreachable")


def relu_relaxation(l: torch.Tensor, u: torch.Tensor, lower_slope: torch.Tensor | None = None):
    """Linear relaxation of ReLU on [l, u]: returns (lower slope, upper slope, upper intercept).

    Lower line ``alpha * z`` (alpha in [0, 1]; CROWN's adaptive choice 1 if u > -l else 0 unless
    ``lower_slope`` is given for unstable neurons); upper line ``s * z + t`` with the chord
    ``s = u / (u - l)``, ``t = -s * l``. Stable neurons get exact slopes 1 or 0.
    """
    active, inactive = l >= 0, u <= 0
    unstable = ~(active | inactive)
    denom = torch.where(unstable, u - l, torch.ones_like(u))
    s = torch.where(unstable, u / denom, active.to(u.dtype))
    t = torch.where(unstable, -s * l, torch.zeros_like(l))
    if lower_slope is None:
        lower_slope = (u > -l).to(u.dtype)
    alpha = torch.where(unstable, lower_slope, active.to(u.dtype))
    return alpha, s, t


def backward_lower(net: AffineReluNet, layer: int, pre: list[LayerBounds], lo: torch.Tensor, hi: torch.Tensor,
                   C: torch.Tensor, alphas: list[torch.Tensor] | None = None) -> torch.Tensor:
    """CROWN lower bound of ``C @ z_layer`` (z_layer = output of affine layer ``layer``) over the
    box. ``C`` is (N, m, n_layer); ``pre[j]`` bounds the pre-activations of ReLU layer j < layer.
    ``alphas[j]`` optionally overrides the lower slopes (alpha-CROWN). Returns (N, m)."""
    w, b = net.weights[layer], net.biases[layer]
    lam = C @ w
    const = C @ b
    for j in range(layer - 1, -1, -1):
        l, u = pre[j]
        alpha, s, t = relu_relaxation(l, u, None if alphas is None else alphas[j])
        pos, neg = lam.clamp(min=0), lam.clamp(max=0)
        const = const + (neg * t.unsqueeze(1)).sum(-1)
        lam = pos * alpha.unsqueeze(1) + neg * s.unsqueeze(1)
        const = const + lam @ net.biases[j]
        lam = lam @ net.weights[j]
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    return const + (lam @ center.unsqueeze(-1)).squeeze(-1) - (lam.abs() @ radius.unsqueeze(-1)).squeeze(-1)


def _identity_spec(n: int, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Stacked ``[I; -I]`` specification, (batch, 2n, n): lower and upper bounds in one pass."""
    eye = torch.eye(n, dtype=like.dtype, device=like.device)
    return torch.cat([eye, -eye]).expand(batch, 2 * n, n)


def crown_layer_bounds(net: AffineReluNet, layer: int, pre: list[LayerBounds], lo: torch.Tensor, hi: torch.Tensor,
                       alphas: list[torch.Tensor] | None = None) -> LayerBounds:
    """CROWN bounds of the outputs of affine layer ``layer``, intersected with the interval
    bounds obtained from the previous layer's bounds (both are sound, so the intersection is)."""
    n = net.weights[layer].shape[0]
    r = backward_lower(net, layer, pre, lo, hi, _identity_spec(n, lo.shape[0], lo), alphas)
    low, up = r[:, :n], -r[:, n:]
    if layer > 0:
        il, iu = interval_affine(net.weights[layer], net.biases[layer], pre[layer - 1][0].clamp(min=0),
                                 pre[layer - 1][1].clamp(min=0))
        low, up = torch.maximum(low, il), torch.minimum(up, iu)
    return low, up


def crown_intermediate(net: AffineReluNet, lo: torch.Tensor, hi: torch.Tensor) -> list[LayerBounds]:
    """Pre-activation bounds of every ReLU layer, each layer by a full CROWN backward pass."""
    pre: list[LayerBounds] = []
    for k in range(net.num_layers - 1):
        pre.append(crown_layer_bounds(net, k, pre, lo, hi))
    return pre


def crown(net: AffineReluNet, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None,
          pre: list[LayerBounds] | None = None) -> tuple[LayerBounds, list[LayerBounds]]:
    """CROWN: (bounds on ``C @ y`` or on ``y``, pre-activation bounds used)."""
    if pre is None:
        pre = crown_intermediate(net, lo, hi)
    last = net.num_layers - 1
    if C is None:
        return crown_layer_bounds(net, last, pre, lo, hi), pre
    if C.dim() == 2:
        C = C.expand(lo.shape[0], *C.shape)
    m = C.shape[1]
    r = backward_lower(net, last, pre, lo, hi, torch.cat([C, -C], dim=1))
    return (r[:, :m], -r[:, m:]), pre
