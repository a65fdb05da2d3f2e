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

from certprune.errors import ConfigError, UnsupportedModelError
from certprune.pruning.layers import BN_TYPES, UnitLayer, base_module, named_leaves, require_relu_after_each


@dataclass(frozen=True, eq=False)
class ScoreContext:
    """Inputs of a criterion. ``X``/``y`` are float32 inputs (N, *input_shape) and int64 labels,
    or None when no data was given; ``epsilon`` is the L-inf radius used by stability;
    ``domain`` clips perturbation boxes (e.g. (0, 1) for images); ``amount`` is the fraction of
    units the current step removes (for criteria whose choice depends on it, e.g. i-SpaSP);
    ``protected`` is the column of ``X`` holding the protected attribute (m-info-flow);
    ``stability_magnitude`` in [0, 1] is the weight of the magnitude rank in the stability score
    (0: Li et al.'s score alone; see :func:`certprune.pruning.criteria.stability.unit_scores`)."""

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
    amount: float | None = None
    protected: int | None = None
    stability_magnitude: float = 0.0


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


def unit_group(layer: UnitLayer) -> list[torch.Tensor]:
    """A unit's parameter group: incoming weight and bias, and its BatchNorm's gamma and beta."""
    bn = [] if layer.bn is None else [layer.bn.weight, layer.bn.bias]
    return [p for p in unit_params(layer) + bn if p is not None]


def per_unit(layer: UnitLayer, t: torch.Tensor) -> torch.Tensor:
    """Sum a parameter-shaped tensor of the layer's group to one value per unit (dim 0)."""
    return t.reshape(layer.width, -1).sum(dim=1)


def chain(model: nn.Module) -> list[nn.Module]:
    """The leaf modules of a feed-forward chain (nested Sequentials), in execution order;
    UnsupportedModelError for any other container (its leaves need not run in order)."""
    module = base_module(model)
    if not isinstance(module, nn.Sequential) or any(
            list(m.children()) and not isinstance(m, nn.Sequential) for m in module.modules()):
        raise UnsupportedModelError("this criterion needs a feed-forward nn.Sequential model")
    return [m for _, m in named_leaves(module)]


def split_after(model: nn.Module, leaf: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """(prefix, suffix) of the chain around ``leaf`` (``leaf`` ends the prefix)."""
    leaves = chain(model)
    i = next(k for k, m in enumerate(leaves) if m is leaf)
    return nn.Sequential(*leaves[:i + 1]), nn.Sequential(*leaves[i + 1:])


def next_affine(model: nn.Module, layer: UnitLayer) -> nn.Sequential:
    """The affine map from ``layer``'s ReLU output to the next layer's pre-activation: the leaves
    up to and including the next Linear/Conv2d (and its BatchNorm right after)."""
    _, suffix = split_after(model, layer.relu)
    out: list[nn.Module] = []
    for m in suffix:
        if any(isinstance(o, (nn.Linear, nn.Conv2d)) for o in out) and not (
                isinstance(m, BN_TYPES) and isinstance(out[-1], (nn.Linear, nn.Conv2d))):
            break
        out.append(m)
        if isinstance(m, nn.ReLU):
            raise UnsupportedModelError(f"a ReLU follows layer {layer.name!r} before the next affine layer")
    return nn.Sequential(*out)


def relu_outputs(ctx: ScoreContext, layers: list[UnitLayer], criterion: str) -> dict[str, torch.Tensor]:
    """Post-ReLU activations (N, width[, H, W]) of every layer on the context's data (no grad)."""
    require_relu_after_each(layers)
    X, _ = require_data(ctx, criterion)
    store: dict[str, list[torch.Tensor]] = {l.name: [] for l in layers}
    hooks = [l.relu.register_forward_hook(lambda _m, _i, out, k=l.name: store[k].append(out.detach()))
             for l in layers]
    try:
        with torch.no_grad():
            for s in range(0, len(X), ctx.batch_size):
                ctx.model(X[s:s + ctx.batch_size])
    finally:
        for h in hooks:
            h.remove()
    return {l.name: torch.cat(store[l.name]) for l in layers}


def layer_budgets_uniform(layers: list[UnitLayer], amount: float) -> dict[str, float]:
    """The same fraction ``amount`` removed from every layer."""
    return {l.name: amount for l in layers}
