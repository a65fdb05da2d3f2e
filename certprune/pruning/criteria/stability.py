"""Stability criterion (Li et al. 2023, "Can pruning improve certified robustness of neural
networks?"): units scored by mean tanh(1 + l*u / s^2) over the data's perturbation boxes from sound
CROWN (or IBP) bounds; see :mod:`certprune.pruning.stability`. Units only."""
from __future__ import annotations

import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, require_data
from certprune.pruning.layers import UnitLayer

DEFAULT_SCOPE = "local"  # per-layer budgets: one global threshold starves a layer (issue 12)


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """Stability score per unit at ``ctx.epsilon``; low = unstable."""
    from certprune.pruning.stability import stability_scores

    X, _ = require_data(ctx, "stability")
    if ctx.epsilon is None or not ctx.epsilon > 0:
        raise ConfigError(f"criterion 'stability' needs epsilon > 0 (the L-inf radius), got {ctx.epsilon!r}")
    return stability_scores(ctx.model, X, float(ctx.epsilon), layers, ctx.domain, ctx.bound_method,
                            ctx.stability_reduce)


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: stability is a property of neurons, not of single weights."""
    raise ConfigError("criterion 'stability' scores neurons/channels; use granularity neuron, channel or structured")
