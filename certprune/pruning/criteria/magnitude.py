"""Magnitude: weights by |w| (L1) or w^2 (L2) (Han et al. 2015, "Learning both Weights and
Connections"); units by the L1 or L2 norm of their incoming weights (Li et al. 2017, "Pruning
Filters for Efficient ConvNets"). ``ctx.norm`` picks l1 or l2; local vs global is the scope."""
from __future__ import annotations

import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext
from certprune.pruning.layers import UnitLayer


def _check(norm: str) -> None:
    if norm not in ("l1", "l2"):
        raise ConfigError(f"unknown magnitude norm {norm!r}; choose l1 or l2")


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """|w| for l1, w^2 for l2 (the same order; l2 kept for symmetry with units)."""
    _check(ctx.norm)
    p = 1 if ctx.norm == "l1" else 2
    return {name: m.weight.detach().double().abs() ** p for name, m in layers}


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """L1 or L2 norm of each unit's incoming weight row / filter (bias excluded)."""
    _check(ctx.norm)
    p = 1 if ctx.norm == "l1" else 2
    return {l.name: l.module.weight.detach().double().reshape(l.width, -1).norm(p=p, dim=1) for l in layers}
