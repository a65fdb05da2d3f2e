"""Random scores: the baseline every criterion must beat (Blalock et al. 2020, "What is the State
of Neural Network Pruning?", ShrinkBench). Deterministic under ``ctx.seed``."""
from __future__ import annotations

import torch
from torch import nn

from certprune.pruning.criteria.base import ScoreContext
from certprune.pruning.layers import UnitLayer


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Uniform [0, 1) score per weight."""
    g = torch.Generator().manual_seed(ctx.seed)
    return {name: torch.rand(m.weight.shape, generator=g, dtype=torch.float64) for name, m in layers}


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """Uniform [0, 1) score per unit."""
    g = torch.Generator().manual_seed(ctx.seed)
    return {l.name: torch.rand(l.width, generator=g, dtype=torch.float64) for l in layers}
