"""Stability criterion (Li et al. 2023, "Can pruning improve certified robustness of neural
networks?"): units scored by mean tanh(1 + l*u / s^2) over the data's perturbation boxes from sound
CROWN (or IBP) bounds; see :mod:`certprune.pruning.stability`. Units only.

With ``ctx.stability_magnitude = w > 0`` the score inside each layer is the rank mix
(1 - w) * rank(stability) + w * rank(L1 magnitude) (ranks scaled to [0, 1]), units dead on every
box still first: an unstable unit with large weights, the kind that carries the network's
nonlinearity, is kept over an unstable unit that matters little. On the MNIST MLP, at 50% of the
neurons, w = 0.5 keeps clean accuracy where the plain score loses about 2 points
(experiments/pruning_benchmark.py, ``stability-mix+loss`` rows)."""
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
    w = float(ctx.stability_magnitude)
    if not 0.0 <= w <= 1.0:
        raise ConfigError(f"stability_magnitude must be in [0, 1], got {w!r}")
    if w == 0.0:
        return stability_scores(ctx.model, X, float(ctx.epsilon), layers, ctx.domain, ctx.bound_method,
                                ctx.stability_reduce)
    # ranks inside a layer are the same for both reductions (a layer's channels share their
    # positions); the mean keeps every non-dead score >= -1 > DEAD_SCORE
    scores = stability_scores(ctx.model, X, float(ctx.epsilon), layers, ctx.domain, ctx.bound_method, "mean")
    from certprune.pruning.criteria.magnitude import unit_scores as magnitude_scores
    from certprune.pruning.stability import DEAD_SCORE

    mags = magnitude_scores(ctx, layers)
    out = {}
    for name, s in scores.items():
        mixed = (1 - w) * _rank01(s) + w * _rank01(mags[name])
        out[name] = torch.where(s <= DEAD_SCORE, torch.full_like(mixed, -1.0), mixed)
    return out


def _rank01(s: torch.Tensor) -> torch.Tensor:
    """Ranks of ``s`` scaled to [0, 1] (0 = lowest; ties in index order)."""
    ranks = torch.argsort(torch.argsort(s.double(), stable=True)).double()
    return ranks / max(1, len(s) - 1)


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: stability is a property of neurons, not of single weights."""
    raise ConfigError("criterion 'stability' scores neurons/channels; use granularity neuron, channel or structured")
