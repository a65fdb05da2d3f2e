"""First-order Taylor (Molchanov et al. 2017, "Pruning Convolutional Neural Networks for Resource
Efficient Inference"; 2019, "Importance Estimation for Neural Network Pruning").

Units: score_i = mean over samples n of |sum_p a_{n,i,p} * dl_n/da_{n,i,p}|, where a is the unit's
post-ReLU activation (what removal sets to 0), p runs over spatial positions (one for Linear) and
l_n is the per-sample cross-entropy. Weights: |w * dL/dw| with L the mean cross-entropy.
"""
from __future__ import annotations

import torch
from torch import nn

from certprune.pruning.criteria.base import ScoreContext, batches, require_data, summed_loss
from certprune.pruning.layers import UnitLayer, require_relu_after_each


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """Mean |activation x gradient| per unit (see module doc)."""
    require_relu_after_each(layers)
    acts: dict[str, torch.Tensor] = {}
    hooks = [l.relu.register_forward_hook(_keep(acts, l.name)) for l in layers]
    totals = {l.name: torch.zeros(l.width, dtype=torch.float64) for l in layers}
    try:
        for x, y in batches(ctx, "taylor"):
            loss = summed_loss(ctx.model, x, y)
            grads = torch.autograd.grad(loss, [acts[l.name] for l in layers])
            for l, g in zip(layers, grads):
                a = acts[l.name]
                prod = (a * g).reshape(len(a), l.width, -1).sum(-1)
                totals[l.name] += prod.abs().sum(0).double()
    finally:
        for h in hooks:
            h.remove()
    n = len(require_data(ctx, "taylor")[0])
    return {k: v / n for k, v in totals.items()}


def _keep(store: dict, name: str):
    def hook(_m, _i, out):
        store[name] = out
    return hook


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """|w * dL/dw| with L the mean cross-entropy over the data."""
    params = [m.weight for _, m in layers]
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for x, y in batches(ctx, "taylor"):
        for t, g in zip(total, torch.autograd.grad(summed_loss(ctx.model, x, y), params)):
            t += g.double()
    n = len(require_data(ctx, "taylor")[0])
    return {name: (p.detach().double() * t / n).abs() for (name, _), p, t in zip(layers, params, total)}
