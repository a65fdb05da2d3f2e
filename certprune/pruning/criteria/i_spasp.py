"""i-SpaSP, iterative sparse structured pruning (Wolfe & Kyrillidis 2022, "i-SpaSP: Structured
Neural Pruning via Sparse Signal Recovery"; wolfecameron/i-SpaSP), after CoSaMP.

For a hidden layer with dense post-ReLU responses H (over the data) and the affine map g to the
next layer's pre-activation, the kept set S of size s = width - round(amount * width) is found by
repeating ``ITERATIONS`` times:

1. residual objective R = 1/2 ||g(H) - g(H * 1_S)||^2 (S empty at first), its gradient
   dR/dH summed over data and positions is each unit's importance (its correlation with the
   residual between dense and pruned next-layer outputs);
2. the 2s most important units are merged with S;
3. S is thresholded back to the s units of the merged set with the largest total response.

Scores: units in S get 1 + (their share of the largest total response), the others less than 1,
so the per-layer budget (``amount`` of every layer, the paper's per-layer ratio) removes exactly
the units outside S.
"""
from __future__ import annotations

import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, layer_budgets_uniform, next_affine, relu_outputs
from certprune.pruning.layers import UnitLayer

ITERATIONS = 20


def support(H: torch.Tensor, affine: nn.Module, keep: int, iterations: int = ITERATIONS) -> torch.Tensor:
    """Bool mask of the ``keep`` units i-SpaSP selects from responses ``H`` (N, width[, H, W])."""
    width = H.shape[1]
    view = (1, width) + (1,) * (H.dim() - 2)
    size = H.reshape(len(H), width, -1).sum((0, 2)).double()
    S = torch.zeros(width, dtype=torch.bool)
    for _ in range(iterations):
        Hg = H.clone().requires_grad_(True)
        with torch.no_grad():
            pruned = affine(H * S.reshape(view).to(H.dtype))
        residual = 0.5 * ((affine(Hg) - pruned) ** 2).sum()
        (grad,) = torch.autograd.grad(residual, Hg)
        importance = grad.reshape(len(H), width, -1).sum((0, 2))
        merged = S.clone()
        merged[torch.argsort(importance, descending=True, stable=True)[:2 * keep]] = True
        idx = torch.nonzero(merged).flatten()
        S = torch.zeros(width, dtype=torch.bool)
        S[idx[torch.argsort(size[idx], descending=True, stable=True)[:keep]]] = True
    return S


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """1 + size share inside the i-SpaSP support, size share (< 1) outside (see module doc)."""
    amount = 0.0 if ctx.amount is None else ctx.amount
    acts = relu_outputs(ctx, layers, "i-spasp")
    out = {}
    for l in layers:
        H = acts[l.name]
        keep = l.width - round(amount * l.width)
        S = support(H, next_affine(ctx.model, l), keep)
        size = H.reshape(len(H), l.width, -1).sum((0, 2)).double()
        out[l.name] = S.double() + 0.5 * size / size.max().clamp(min=1e-12)
    return out


def layer_budgets(ctx: ScoreContext, layers: list[UnitLayer], amount: float) -> dict[str, float]:
    """The paper's per-layer pruning ratio: the same fraction of every layer."""
    return layer_budgets_uniform(layers, amount)


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: i-SpaSP selects neurons/channels."""
    raise ConfigError("i-spasp selects neurons/channels; use granularity neuron, channel or structured")
