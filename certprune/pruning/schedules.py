"""Pruning and learning-rate schedules (pure functions, deterministic).

* ``cumulative_amounts``: iterative pruning removes a constant fraction of what is left per step
  (Zhu & Gupta 2017 style geometric schedule) so that the last step reaches the target.
* ``lr_factor``: per-epoch multiplier of the base learning rate: constant, step (x0.1 at 50% and
  75% of the epochs) or cosine annealing (Loshchilov & Hutter 2017).
* ``silo_max_lr``: the maximum learning rate of pruning cycle k rises along an S-shaped (logistic)
  curve from ``lr_min`` to ``lr_max``, in the spirit of SILO (S-shaped increasing max-LR for
  iterative pruning): later, sparser cycles get a larger max LR to recover accuracy.
* ``round_slice``: the data indices one pruning step fine-tunes on when each step sees a share of
  the data (steps take consecutive slices of one seeded permutation, wrapping around).
"""
from __future__ import annotations

import math

import torch

from certprune.errors import ConfigError

LR_SCHEDULES = ("constant", "step", "cosine")


def cumulative_amounts(amount: float, steps: int) -> list[float]:
    """Fraction removed after each of ``steps`` steps: 1 - (1 - amount)^(k / steps), k = 1..steps."""
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"number of pruning steps must be a positive integer, got {steps!r}")
    return [1.0 - (1.0 - amount) ** (k / steps) for k in range(1, steps + 1)]


def lr_factor(kind: str, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate at ``epoch`` (0-based) of ``epochs``."""
    if kind not in LR_SCHEDULES:
        raise ConfigError(f"unknown learning-rate schedule {kind!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if kind == "constant" or epochs <= 1:
        return 1.0
    if kind == "step":
        return 0.1 ** ((epoch >= epochs * 0.5) + (epoch >= epochs * 0.75))
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def silo_max_lr(step: int, steps: int, lr_min: float, lr_max: float, steepness: float = 8.0) -> float:
    """Max learning rate of pruning step ``step`` (0-based of ``steps``): logistic S-curve,
    exactly ``lr_min`` at the first step and ``lr_max`` at the last."""
    if steps <= 1:
        return lr_max
    sig = lambda t: 1.0 / (1.0 + math.exp(-steepness * (t - 0.5)))  # noqa: E731
    t = step / (steps - 1)
    frac = (sig(t) - sig(0.0)) / (sig(1.0) - sig(0.0))
    return lr_min + (lr_max - lr_min) * frac


def round_slice(n: int, fraction: float, step: int, seed: int) -> torch.Tensor:
    """Indices (of ``n``) for pruning step ``step`` (0-based): ``ceil(fraction * n)`` consecutive
    entries of a permutation seeded by ``seed``, starting where step ``step - 1`` stopped."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fine-tuning share must be in (0, 1], got {fraction!r}")
    size = max(1, math.ceil(fraction * n - 1e-9))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    start = (step * size) % n
    return perm[(torch.arange(size) + start) % n]
