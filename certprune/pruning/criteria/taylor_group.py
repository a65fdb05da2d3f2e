"""Group Taylor importance (Molchanov et al. 2019, "Importance Estimation for Neural Network
Pruning", CVPR; NVlabs/Taylor_pruning), first and second order.

A unit's group S holds its incoming weight row / filter, its bias and the gamma/beta of the
BatchNorm after it (the paper's gate after BN is equivalent). Per mini-batch, with g the gradient
of the batch's mean cross-entropy and H its Hessian:

* first order  (``taylor-group``):  I_S = (sum_{s in S} g_s w_s)^2
* second order (``taylor-group2``): I_S = (sum_{s in S} g_s w_s - 1/2 w_S^T H_SS w_S)^2, the
  squared second-order Taylor estimate of the loss change when the whole group is set to zero
  (w_S^T H_SS w_S from one Hessian-vector product per unit, batched).

Scores are averaged over the mini-batches (the paper accumulates them over batches). Squaring the
*sum* (not summing |g w|) is what separates this from the per-weight Taylor/SNIP scores.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, batches, per_unit, unit_group
from certprune.pruning.layers import UnitLayer


def group_taylor(ctx: ScoreContext, layers: list[UnitLayer], order: int = 1) -> dict[str, torch.Tensor]:
    """Mean over mini-batches of the first- (order=1) or second-order (order=2) group score."""
    groups = {l.name: unit_group(l) for l in layers}
    totals = {l.name: torch.zeros(l.width, dtype=torch.float64) for l in layers}
    n_batches = 0
    for x, y in batches(ctx, f"taylor-group{'' if order == 1 else '2'}"):
        loss = F.cross_entropy(ctx.model(x), y)
        params = [p for l in layers for p in groups[l.name]]
        grads = torch.autograd.grad(loss, params, create_graph=order == 2)
        g_iter = iter(grads)
        for l in layers:
            gs = [next(g_iter) for _ in groups[l.name]]
            first = sum(per_unit(l, (g * p).detach().double()) for g, p in zip(gs, groups[l.name]))
            if order == 2:
                first = first - 0.5 * _group_quadratic(l, groups[l.name], gs)
            totals[l.name] += first ** 2
        n_batches += 1
    return {k: v / n_batches for k, v in totals.items()}


def _group_quadratic(layer: UnitLayer, params: list[torch.Tensor], grads) -> torch.Tensor:
    """w_S^T H w_S for every unit S of the layer (H over the layer's group parameters)."""
    vectors = [_unit_masked(layer, p.detach()) for p in params]  # each (width, *p.shape)
    hv = torch.autograd.grad(list(grads), params, grad_outputs=vectors, retain_graph=True, is_grads_batched=True)
    return sum((v * h).reshape(layer.width, -1).sum(1).double() for v, h in zip(vectors, hv))


def _unit_masked(layer: UnitLayer, p: torch.Tensor) -> torch.Tensor:
    """(width, *p.shape): copy i keeps only unit i's entries of ``p`` (dim 0 indexes units)."""
    eye = torch.eye(layer.width, dtype=p.dtype).reshape(layer.width, layer.width, *([1] * (p.dim() - 1)))
    return eye * p.unsqueeze(0)


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """First-order group Taylor score per unit."""
    return group_taylor(ctx, layers, order=1)


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: group Taylor scores neurons/channels."""
    raise ConfigError("taylor-group scores neurons/channels; use granularity neuron, channel or structured")
