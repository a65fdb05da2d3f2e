"""Per-layer budgets: how many units each layer loses when a criterion sets layer budgets.

A criterion module may define ``layer_budgets(ctx, layers, amount) -> {layer: fraction}``; the
fractions say how the step's removals are shared between layers (scaled so that exactly
``round(amount * total units)`` go), and inside each layer the lowest scores go first.
"""
from __future__ import annotations

import numpy as np
import torch

from certprune.errors import ConfigError


def budget_counts(fractions: dict[str, float], widths: dict[str, int], amount: float,
                  keep: dict[str, int] | None = None) -> dict[str, int]:
    """Units to remove per layer: ``fractions[l] * widths[l]`` rescaled to sum to
    ``round(amount * sum(widths))`` (largest remainders), each layer keeping at least one unit
    (at least ``keep[l]`` units where given: what a protected layer cannot lose moves to the others)."""
    names = list(widths)
    total = round(amount * sum(widths.values()))
    keep = keep or {}
    cap = np.array([widths[n] - max(1, min(int(keep.get(n, 1)), widths[n])) for n in names], dtype=float)
    if total > cap.sum():
        raise ConfigError(f"cannot remove {total} units while keeping one unit in every layer"
                          + (" and the protected share of the capped layers (layer_caps)" if keep else ""))
    want = np.array([max(float(fractions.get(n, 0.0)), 0.0) * widths[n] for n in names])
    want = want + 1e-9 * cap  # layers with a zero share still absorb what the others cannot
    lo, hi = 0.0, 1.0
    while np.minimum(cap, want * hi).sum() < total:
        hi *= 2
    for _ in range(100):  # bisection on the scale s: sum(min(cap, s * want)) = total
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.minimum(cap, want * mid).sum() < total else (lo, mid)
    counts = np.minimum(cap, want * hi)
    floor = np.floor(counts + 1e-9)
    order = [i for i in np.argsort(-(counts - floor), kind="stable") if floor[i] < cap[i]]
    for i in order[:max(0, int(round(total - floor.sum())))]:
        floor[i] += 1
    return {n: int(c) for n, c in zip(names, floor)}


def select_by_counts(scores: dict[str, torch.Tensor], counts: dict[str, int]) -> dict[str, list[int]]:
    """The ``counts[l]`` lowest-scored units of each layer (stable: earlier index first on ties)."""
    return {name: sorted(torch.argsort(s.detach().double(), stable=True)[:counts[name]].tolist())
            for name, s in scores.items()}


def capped_keep(widths: dict[str, int], original: dict[str, int], caps: dict[str, float],
                min_keep: float = 0.0) -> dict[str, int]:
    """Units each layer must keep in this step: ``ceil((1 - caps[l]) * original[l])`` for a capped
    layer (``caps[l]``: the largest fraction of its original units ever removed) and
    ``ceil(min_keep * widths[l])`` for every layer; ConfigError naming unknown layers or bad caps."""
    unknown = sorted(set(caps) - set(widths))
    if unknown:
        raise ConfigError(f"layer_caps names no prunable layer: {', '.join(unknown)}; known: {', '.join(widths)}")
    bad = {k: v for k, v in caps.items() if not 0.0 <= float(v) < 1.0}
    if bad:
        raise ConfigError(f"layer_caps fractions must be in [0, 1), got {bad}")
    out = {}
    for name, width in widths.items():
        need = int(np.ceil(min_keep * width - 1e-9)) if min_keep > 0 else 0
        if name in caps:
            need = max(need, int(np.ceil((1.0 - float(caps[name])) * original[name] - 1e-9)))
        out[name] = min(width, max(1, need))
    return out
