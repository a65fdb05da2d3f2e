"""SNIP connection sensitivity (Lee et al. 2019, "SNIP: Single-shot Network Pruning based on
Connection Sensitivity"): s_j = |g_j * w_j| / sum_k |g_k * w_k| with g = dL/dw of the mean
cross-entropy; meant for initialisation but defined for any weights. Units: sum over their weights."""
from __future__ import annotations

import torch
from torch import nn

from certprune.pruning.criteria import taylor
from certprune.pruning.criteria.base import ScoreContext, unit_sum
from certprune.pruning.layers import UnitLayer


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Normalised |g * w| (sums to 1 over all given layers)."""
    raw = taylor.weight_scores(ctx, layers)
    total = sum(float(v.sum()) for v in raw.values()) or 1.0
    return {k: v / total for k, v in raw.items()}


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """Sum of the unit's incoming-weight SNIP scores."""
    w = weight_scores(ctx, [(l.name, l.module) for l in layers])
    return {k: unit_sum(v) for k, v in w.items()}
