"""Weight masks: unstructured (lowest scores removed, local or global) and N:M semi-structured.

Convention: a mask is a bool tensor of the weight's shape, True = kept. Scores: higher = more
important. Exact counts: ``round(amount * n)`` weights are removed (per layer for ``local``, over
all layers for ``global``); ties are broken by position (stable sort), so results are deterministic.
"""
from __future__ import annotations

import torch
from torch import nn

from certprune.errors import ConfigError


def check_amount(amount: float) -> float:
    """Return ``amount`` as float if it lies in [0, 1), else raise ConfigError."""
    try:
        a = float(amount)
    except (TypeError, ValueError):
        raise ConfigError(f"pruning amount must be a number in [0, 1), got {amount!r}") from None
    if not 0.0 <= a < 1.0:
        raise ConfigError(f"pruning amount must lie in [0, 1), got {a}")
    return a


def _lowest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k lowest entries (stable: earlier positions first among ties)."""
    return torch.argsort(flat, stable=True)[:k]


def unstructured_masks(scores: dict[str, torch.Tensor], amount: float, scope: str = "global",
                       previous: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Keep-masks removing ``round(amount * n)`` lowest-score weights; weights already removed in
    ``previous`` masks count as removed first (so iterative steps give cumulative amounts)."""
    amount = check_amount(amount)
    if scope not in ("global", "local"):
        raise ConfigError(f"unknown pruning scope {scope!r}; choose global or local")
    scores = {k: _with_previous(v.detach().double(), (previous or {}).get(k)) for k, v in scores.items()}
    if scope == "local":
        return {k: _mask_from_flat(v, round(amount * v.numel())) for k, v in scores.items()}
    flat = torch.cat([v.reshape(-1) for v in scores.values()])
    removed = torch.zeros(len(flat), dtype=torch.bool)
    removed[_lowest(flat, round(amount * len(flat)))] = True
    out, start = {}, 0
    for k, v in scores.items():
        out[k] = ~removed[start:start + v.numel()].reshape(v.shape)
        start += v.numel()
    return out


def _with_previous(score: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
    return score if prev is None else torch.where(prev.bool(), score, torch.full_like(score, -torch.inf))


def _mask_from_flat(score: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.ones(score.numel(), dtype=torch.bool)
    keep[_lowest(score.reshape(-1), k)] = False
    return keep.reshape(score.shape)


def nm_mask(score: torch.Tensor, n: int, m: int, name: str = "") -> torch.Tensor:
    """N:M keep-mask: in every group of ``m`` consecutive input weights of each output unit
    (Linear rows; Conv2d filters flattened over in_channels*kh*kw) keep the ``n`` highest scores
    (Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks", NVIDIA 2:4)."""
    check_nm(n, m)
    flat = score.detach().reshape(score.shape[0], -1)
    if flat.shape[1] % m:
        raise ConfigError(f"layer {name!r} has {flat.shape[1]} inputs per unit, not a multiple of M={m}; "
                          "N:M sparsity needs groups of exactly M weights")
    groups = flat.double().reshape(flat.shape[0], -1, m)
    # stable tie-break: sort descending by score, earlier position first
    order = torch.argsort(-groups, dim=-1, stable=True)[..., :n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order, True)
    return keep.reshape(score.shape)


def check_nm(n: int, m: int) -> None:
    """Raise ConfigError unless 1 <= n <= m are integers."""
    if not (isinstance(n, int) and isinstance(m, int)) or m < 1 or n < 1:
        raise ConfigError(f"N:M sparsity needs positive integers N and M, got N={n!r}, M={m!r}")
    if n > m:
        raise ConfigError(f"N:M sparsity needs N <= M, got N={n} > M={m}")


def apply_masks(modules: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked-out weights in place (``weight *= mask``)."""
    with torch.no_grad():
        for name, mask in masks.items():
            w = modules[name].weight
            if tuple(mask.shape) != tuple(w.shape):
                raise ConfigError(f"mask for layer {name!r} has shape {tuple(mask.shape)}, weight is {tuple(w.shape)}")
            w.mul_(mask.to(w.dtype))
