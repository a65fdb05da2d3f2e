"""ReLU splitting: pick an unstable neuron by a BaBSR-style score and fix its phase.

The score of an unstable neuron is the intercept its triangle (chord) relaxation costs the
CROWN lower bound, summed over the live specification rows (``DomainBounds.relu_scores``), plus a
tiny multiple of the chord's gap ``-l u / (u - l)`` so that some unstable neuron is always
chosen. Children get +1 (z >= 0) and -1 (z <= 0) at that neuron; the re-bounding in
``bounds.engine.domain_bounds`` then clamps its pre-activation bounds and recomputes every later layer.
"""
from __future__ import annotations

import torch


def choose_relus(scores: list[torch.Tensor], row_live: torch.Tensor,
                 pre: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Per domain the flat index (layers concatenated) of the neuron to split, or -1 when every
    neuron is stable. scores[j] (N, m, n_j), row_live (N, m)."""
    parts = []
    w = row_live.unsqueeze(-1).to(pre[0][0].dtype) if pre else None
    for s, (l, u) in zip(scores, pre):
        unstable = (l < 0) & (u > 0)
        gap = torch.where(unstable, -l * u / torch.where(unstable, u - l, torch.ones_like(u)), torch.zeros_like(u))
        sc = (s * w).sum(1) + 1e-6 * gap
        parts.append(torch.where(unstable, sc, torch.full_like(sc, -1.0)))
    if not parts:
        return torch.full((row_live.shape[0],), -1, dtype=torch.long)
    allsc = torch.cat(parts, dim=1)
    idx = allsc.argmax(dim=1)
    return torch.where(allsc.max(dim=1).values >= 0, idx, torch.full_like(idx, -1))


def split_relu(splits: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Children split vectors: neuron ``index`` forced active (+1) and inactive (-1)."""
    a, b = splits.clone(), splits.clone()
    a[index], b[index] = 1, -1
    return a, b
