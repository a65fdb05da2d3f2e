"""Gradient-matrix maximum redundancy: per-layer budgets from the rank of each layer's gradient
matrix, and a leverage score inside each layer.

The gradient matrix of a hidden layer is G (N x width): row n holds dl_n/da_n, the gradient of
sample n's cross-entropy with respect to the layer's post-ReLU outputs (summed over a channel's
positions). Its numerical rank r (the fewest singular values holding ``1 - ENERGY_TOL`` of
sum sigma^2) is the number of directions in which the loss can still feel the layer; the layer's
maximum redundancy, the largest compression rate it tolerates, is 1 - r / width. The removals
of a step are shared between layers in proportion to their redundant units (width - r), so a
layer whose gradients span few directions gives up more units. Inside a layer, a unit's score is
its leverage in the top-r right singular subspace, sum_{k <= r} V_ik^2: a unit whose gradient
column lies outside the dominant directions is redundant and goes first.
(No public reference implementation was found; this follows the method's description.)
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, batches, summed_loss
from certprune.pruning.layers import UnitLayer, require_relu_after_each

ENERGY_TOL = 0.01


def gradient_matrices(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """G (N, width) per layer: per-sample loss gradients w.r.t. the post-ReLU outputs."""
    require_relu_after_each(layers)
    acts: dict[str, torch.Tensor] = {}
    hooks = [l.relu.register_forward_hook(lambda _m, _i, out, k=l.name: acts.__setitem__(k, out)) for l in layers]
    rows: dict[str, list[torch.Tensor]] = {l.name: [] for l in layers}
    try:
        for x, y in batches(ctx, "gradient-redundancy"):
            loss = summed_loss(ctx.model, x, y)  # sample n's loss depends on its row only
            grads = torch.autograd.grad(loss, [acts[l.name] for l in layers])
            for l, g in zip(layers, grads):
                rows[l.name].append(g.reshape(len(g), l.width, -1).sum(-1).double())
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v) for k, v in rows.items()}


def effective_rank(sigma: torch.Tensor, tol: float = ENERGY_TOL) -> int:
    """Fewest leading singular values whose squares hold ``1 - tol`` of the total (>= 1)."""
    energy = sigma ** 2
    if energy.sum() <= 0:
        return 1
    cum = torch.cumsum(energy, 0) / energy.sum()
    return max(1, int((cum < 1 - tol).sum()) + 1)


# One analysis per (context, layers): a pruning step asks for unit_scores and then layer_budgets
# with the same context, and both rest on the same gradient matrices and SVDs.
_ANALYSED: "weakref.WeakKeyDictionary[ScoreContext, tuple[tuple, dict]]" = weakref.WeakKeyDictionary()


def _analyse(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, tuple[int, torch.Tensor]]:
    """(rank, leverage scores) per layer, computed once per context and set of layers (a
    context's model is not changed while it is scored: the step removes units afterwards)."""
    key = tuple((l.name, id(l.module), l.width) for l in layers)
    cached = _ANALYSED.get(ctx)
    if cached is not None and cached[0] == key:
        return cached[1]
    out = {}
    for name, G in gradient_matrices(ctx, layers).items():
        _, sigma, Vh = torch.linalg.svd(G, full_matrices=False)
        r = effective_rank(sigma)
        out[name] = (r, (Vh[:r] ** 2).sum(0))
    _ANALYSED[ctx] = (key, out)
    return out


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """Leverage of each unit in its layer's top-r gradient subspace."""
    return {k: lev for k, (_, lev) in _analyse(ctx, layers).items()}


def max_redundancy(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, float]:
    """1 - rank(G) / width per layer: the largest compression rate each layer tolerates."""
    widths = {l.name: l.width for l in layers}
    return {k: 1.0 - r / widths[k] for k, (r, _) in _analyse(ctx, layers).items()}


def layer_budgets(ctx: ScoreContext, layers: list[UnitLayer], amount: float) -> dict[str, float]:
    """Removal shares proportional to the redundant fraction of each layer."""
    return max_redundancy(ctx, layers)


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: the redundancy criterion scores neurons/channels."""
    raise ConfigError("gradient-redundancy scores neurons/channels; use granularity neuron, channel or structured")
