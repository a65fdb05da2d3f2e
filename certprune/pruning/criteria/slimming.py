"""Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network
Slimming"): a unit's score is |gamma| of the BatchNorm right after it; train with
:func:`slimming_penalty` (L1 on gammas) to push unimportant gammas to zero first."""
from __future__ import annotations

import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext
from certprune.pruning.layers import BN_TYPES, UnitLayer, base_module


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """|gamma| of each unit's BatchNorm; ConfigError if a layer has no affine BatchNorm after it."""
    missing = [l.name for l in layers if l.bn is None or l.bn.weight is None]
    if missing:
        raise ConfigError(f"network slimming needs an affine BatchNorm after every pruned layer; missing after {missing}")
    return {l.name: l.bn.weight.detach().double().abs() for l in layers}


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: slimming scores channels, not single weights."""
    raise ConfigError("network slimming scores neurons/channels; use granularity neuron, channel or structured")


def slimming_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |gamma| over every affine BatchNorm (multiply by lambda, add to the training loss)."""
    gammas = [m.weight.abs().sum() for m in base_module(model).modules() if isinstance(m, BN_TYPES) and m.weight is not None]
    return torch.stack(gammas).sum() if gammas else torch.zeros(())
