"""SInGE, integrated-gradients neuron relevance (Yvinec et al. 2022, "SInGE: Sparsity via
Integrated Gradients Estimation of Neuron Relevance", NeurIPS).

The relevance of unit c is the integral, along the path that takes the unit's output from its
value to zero (a_c -> mu * a_c, mu from 1 to 0, every other unit unchanged), of the magnitude of
the gradient of the loss along that path:

    I_c = int_0^1 | dL(mu) / dmu | dmu,   dL/dmu = sum_{n, p} a_{n,c,p} * dL/da'_{n,c,p}

with L the mean cross-entropy over the data, a' = the scaled activation; estimated by the midpoint
rule with ``STEPS`` points. Unlike the local gradient (Taylor), it sees what happens on the way to
removal. The path is run on the network suffix after the unit's ReLU only (the prefix is the same
for every point). The paper entwines pruning and fine-tuning: use ``steps`` > 1 with
``finetune_epochs`` in :func:`certprune.prune`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, relu_outputs, require_data, split_after
from certprune.pruning.layers import UnitLayer

STEPS = 16
_CELLS = 2 ** 22  # activation entries per batched suffix pass


def relevance(ctx: ScoreContext, layer: UnitLayer, acts: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    """I_c for every unit c of ``layer`` given its post-ReLU activations ``acts`` (N, width[, H, W])."""
    _, y = require_data(ctx, "singe")
    _, suffix = split_after(ctx.model, layer.relu)
    n, width = acts.shape[:2]
    spatial = (1,) * (acts.dim() - 2)
    chunk = max(1, _CELLS // max(1, acts.numel()))
    out = torch.zeros(width, dtype=torch.float64)
    for mu in (torch.arange(steps, dtype=torch.float64) + 0.5) / steps:
        for c0 in range(0, width, chunk):
            units = torch.arange(c0, min(width, c0 + chunk))
            rows = torch.arange(len(units))
            scale = torch.ones(len(units), 1, width, *spatial, dtype=acts.dtype)
            scale[rows, 0, units] = float(mu)
            scaled = (acts.unsqueeze(0) * scale).requires_grad_(True)  # copy i scales unit units[i]
            logits = suffix(scaled.reshape(len(units) * n, *acts.shape[1:]))
            loss = F.cross_entropy(logits, y.repeat(len(units)), reduction="sum") / n
            (grad,) = torch.autograd.grad(loss, scaled)
            picked = grad[rows, :, units] * acts[:, units].transpose(0, 1)  # (C, N[, H, W])
            out[units] += picked.reshape(len(units), -1).sum(1).abs().double() / steps
    return out


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """SInGE relevance per unit (see module doc)."""
    acts = relu_outputs(ctx, layers, "singe")
    return {l.name: relevance(ctx, l, acts[l.name]) for l in layers}


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: SInGE scores neurons/channels."""
    raise ConfigError("singe scores neurons/channels; use granularity neuron, channel or structured")
