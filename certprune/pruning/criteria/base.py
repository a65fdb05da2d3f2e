"""What every criterion receives (:class:`ScoreContext`) and small shared helpers.

Score convention for all criteria: higher = more important; the lowest scores are removed.
Weight scores have the weight's shape; unit scores are 1-D, one entry per neuron / channel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.layers import UnitLayer


@dataclass(frozen=True, eq=False)
class ScoreContext:
    """Inputs of a criterion. ``X``/``y`` are float32 inputs (N, *input_shape) and int64 labels,
    or None when no data was given; ``epsilon`` is the L-inf radius used by stability;
    ``domain`` clips perturbation boxes (e.g. (0, 1) for images)."""

    model: nn.Module
    X: torch.Tensor | None = None
    y: torch.Tensor | None = None
    epsilon: float | None = None
    seed: int = 0
    norm: str = "l1"
    hvp_samples: int | None = None
    domain: tuple[float, float] | None = (0.0, 1.0)
    bound_method: str = "crown"
    batch_size: int = 256
    stability_reduce: str = "mean"


def require_data(ctx: ScoreContext, criterion: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)`` or a ConfigError saying that ``criterion`` needs data."""
    if ctx.X is None or ctx.y is None:
        raise ConfigError(f"criterion {criterion!r} needs data=(inputs, labels) or a DataLoader")
    return ctx.X, ctx.y


def batches(ctx: ScoreContext, criterion: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The context's data in batches of ``ctx.batch_size`` (in order)."""
    X, y = require_data(ctx, criterion)
    for s in range(0, len(X), ctx.batch_size):
        yield X[s:s + ctx.batch_size], y[s:s + ctx.batch_size]


def summed_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of per-sample cross-entropy (so per-sample gradients are not scaled)."""
    return F.cross_entropy(model(x), y, reduction="sum")


def unit_sum(weight_score: torch.Tensor) -> torch.Tensor:
    """Aggregate a weight-shaped score to its output units (sum over all but dim 0)."""
    return weight_score.reshape(weight_score.shape[0], -1).sum(dim=1)


def unit_params(layer: UnitLayer) -> list[torch.Tensor]:
    """The parameters that belong to a layer's units: weight, and bias if present."""
    return [p for p in (layer.module.weight, layer.module.bias) if p is not None]
