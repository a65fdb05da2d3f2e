"""Second-order group Taylor importance (Molchanov et al. 2019); see
:mod:`certprune.pruning.criteria.taylor_group`."""
from __future__ import annotations

import torch
from torch import nn

from certprune.pruning.criteria import taylor_group
from certprune.pruning.criteria.base import ScoreContext
from certprune.pruning.layers import UnitLayer


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """(sum g w - 1/2 w_S^T H_SS w_S)^2 per unit, averaged over mini-batches."""
    return taylor_group.group_taylor(ctx, layers, order=2)


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: group Taylor scores neurons/channels."""
    return taylor_group.weight_scores(ctx, layers)
