"""Bounds-driven stability: per-unit scores from sound pre-activation bounds, and the
differentiable stability loss for (re)training.

A ReLU with pre-activation bounds [l, u] over the perturbation box is *stable* when l * u >= 0
(always active or always inactive) and unstable otherwise. Score (Li et al. 2023, "Can pruning
improve certified robustness of neural networks?"): mean over data points of tanh(1 + l*u / s^2),
s = the scale gamma / sqrt(var + eps) of the BatchNorm after the unit (1 without one); low =
unstable = removed first. Loss (Xiao et al. 2019, "Training for Faster Adversarial Robustness
Verification via Inducing ReLU Stability"): mean of -tanh(1 + l*u) with IBP bounds.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from certprune.errors import ConfigError, UnsupportedModelError
from certprune.pruning.layers import BN_TYPES, UnitLayer, base_module, named_leaves, unit_layers

_CELLS = 4e7  # float64 entries per CROWN chunk (N * 2n * n_in), keeps memory near 300 MB
DEAD_SCORE = -2.0  # below tanh's range: units never active on the scored boxes go first


def perturbation_boxes(X: torch.Tensor, epsilon: float, domain: tuple[float, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """L-inf boxes [x - eps, x + eps], intersected with ``domain`` (lo, hi) when given."""
    lo, hi = X - epsilon, X + epsilon
    if domain is not None:
        lo, hi = lo.clamp(*domain), hi.clamp(*domain)
    return lo, hi


def preactivation_bounds(model: nn.Module, X: torch.Tensor, epsilon: float, domain=(0.0, 1.0),
                         method: str = "crown") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Sound float64 bounds (N, n_j) on every ReLU layer's pre-activations over the boxes
    around the N points of ``X`` (certprune.verifiers.bounds.compute_bounds, chunked)."""
    from certprune.verifiers.bounds import affine_net, compute_bounds

    shape = tuple(X.shape[1:])
    net = affine_net(base_module(model), shape)
    widest = max(net.relu_sizes + [1])
    chunk = max(1, int(_CELLS // (2 * widest * net.input_dim)))
    lo, hi = perturbation_boxes(X.detach().double(), epsilon, domain)
    parts = [compute_bounds(net, lo[s:s + chunk], hi[s:s + chunk], method=method, return_intermediate=True,
                            input_shape=shape).intermediate for s in range(0, len(X), chunk)]
    return [(torch.cat([p[j][0] for p in parts]), torch.cat([p[j][1] for p in parts])) for j in range(len(parts[0]))]


def bn_scale(layer: UnitLayer) -> torch.Tensor:
    """s per unit: |gamma| / sqrt(running_var + eps) of the BatchNorm after the layer, else 1."""
    bn = layer.bn
    if bn is None:
        return torch.ones(layer.width, dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones(layer.width, dtype=torch.float64)
    return gamma.abs() / torch.sqrt(bn.running_var.double() + bn.eps)


def stability_scores(model: nn.Module, X: torch.Tensor, epsilon: float, layers: list[UnitLayer],
                     domain=(0.0, 1.0), method: str = "crown", reduce: str = "mean") -> dict[str, torch.Tensor]:
    """Per unit, mean over points of tanh(1 + l*u / s^2), and over a channel's spatial positions
    the mean (``reduce="mean"``) or the sum (``"sum"``: a channel weighs as many ReLUs as it has
    positions when one global threshold compares channels with neurons); low = unstable. A unit
    that is inactive on every box (u <= 0 everywhere) scores ``DEAD_SCORE`` (times the positions
    for ``"sum"``), below every other:
    removing it changes nothing on those boxes, so it goes first."""
    if reduce not in ("mean", "sum"):
        raise ConfigError(f"unknown stability reduction {reduce!r}; choose mean or sum")
    bounds = preactivation_bounds(model, X, epsilon, domain, method)
    hidden = len(unit_layers(model, "structured"))
    if len(bounds) != hidden:
        raise UnsupportedModelError(f"the model has {len(bounds)} ReLU layers but {hidden} hidden Linear/Conv2d "
                                    "layers; stability scores need exactly one ReLU after each")
    out = {}
    for layer in layers:
        l, u = bounds[layer.relu_index]
        s2 = bn_scale(layer).clamp(min=1e-12) ** 2
        lu = (l * u).reshape(len(l), layer.width, -1) / s2.reshape(1, -1, 1)
        t = torch.tanh(1 + lu).mean(dim=0)
        score = t.mean(dim=1) if reduce == "mean" else t.sum(dim=1)
        dead = (u.reshape(len(u), layer.width, -1) <= 0).all(dim=2).all(dim=0)
        floor = DEAD_SCORE * (lu.shape[2] if reduce == "sum" else 1)
        out[layer.name] = torch.where(dead, torch.full_like(score, floor), score)
    return out


def ibp_preactivations(model: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Differentiable interval bounds on the input of every ReLU of a Sequential model
    (BatchNorm uses its running statistics, i.e. eval-mode semantics)."""
    c, r = (lo + hi) / 2, (hi - lo) / 2
    out = []
    for _, m in named_leaves(model):
        if isinstance(m, nn.ReLU):
            out.append((c - r, c + r))
            l, u = F.relu(c - r), F.relu(c + r)
            c, r = (l + u) / 2, (u - l) / 2
        else:
            c, r = _ibp_affine(m, c, r)
    return out


def _ibp_affine(m: nn.Module, c: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Center/radius image of an affine layer (Linear, Conv2d, BatchNorm, Flatten, Identity, Dropout)."""
    if isinstance(m, nn.Linear):
        return m(c), F.linear(r, m.weight.abs())
    if isinstance(m, nn.Conv2d):
        return m(c), F.conv2d(r, m.weight.abs(), None, m.stride, m.padding, m.dilation, m.groups)
    if isinstance(m, BN_TYPES):
        scale = (m.weight if m.weight is not None else 1.0) / torch.sqrt(m.running_var + m.eps)
        shift = (m.bias if m.bias is not None else 0.0) - m.running_mean * scale
        view = (1, -1) + (1,) * (c.dim() - 2)
        return c * scale.reshape(view) + shift.reshape(view), r * scale.abs().reshape(view)
    if isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout)):
        return (c, r) if isinstance(m, nn.Dropout) else (m(c), m(r))
    raise UnsupportedModelError(f"the stability loss supports Linear, Conv2d, BatchNorm, Flatten and ReLU, not {type(m).__name__}")


LOSS_NORMS = ("none", "radius")


def stability_loss(model: nn.Module, x: torch.Tensor, epsilon: float, domain=(0.0, 1.0),
                   norm: str = "none") -> torch.Tensor:
    """Mean over the batch and all ReLUs of -tanh(1 + l*u / d), IBP bounds at ``epsilon``
    (differentiable). ``norm="none"``: d = 1 (Xiao et al.); ``"radius"``: d = ((u - l) / 2)^2, so
    1 + l*u/d = (center / radius)^2: scale-free, it does not saturate when IBP bounds are wide
    (deep or convolutional nets, where -tanh(1 + l*u) is flat at -1 and gives no gradient)."""
    if norm not in LOSS_NORMS:
        raise ConfigError(f"unknown stability-loss normalisation {norm!r}; choose one of {', '.join(LOSS_NORMS)}")
    lo, hi = perturbation_boxes(x, epsilon, domain)
    scale = (lambda l, u: 1.0) if norm == "none" else (lambda l, u: ((u - l) / 2).clamp(min=1e-6) ** 2)  # noqa: E731
    terms = [-torch.tanh(1 + l * u / scale(l, u)).reshape(len(x), -1) for l, u in ibp_preactivations(model, lo, hi)]
    return torch.cat(terms, dim=1).mean() if terms else x.new_zeros(())
