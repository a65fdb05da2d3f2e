"""Fine-tuning after pruning: Adam on cross-entropy, plus optional stability loss (IBP, pushes
l*u > 0) and network-slimming L1 penalty. BatchNorm layers stay in eval mode (frozen running
statistics, trainable gamma/beta), so the bounds the stability loss uses are the ones the
verifier will see. Pruned weights stay zero (torch.nn.utils.prune masks). Deterministic: data
order comes from a generator seeded with ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from certprune.errors import ConfigError
from certprune.pruning.layers import base_module
from certprune.pruning.schedules import lr_factor


@dataclass(frozen=True)
class FinetuneConfig:
    """Epochs, base learning rate, batch size, LR schedule, loss weights, seed, and the
    stability loss's normalisation (see :func:`certprune.pruning.stability.stability_loss`)."""

    epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 128
    lr_schedule: str = "cosine"
    stability_weight: float = 0.0
    epsilon: float | None = None
    slimming_weight: float = 0.0
    domain: tuple[float, float] | None = (0.0, 1.0)
    seed: int = 0
    stability_norm: str = "none"


def finetune(model: nn.Module, X: torch.Tensor, y: torch.Tensor, cfg: FinetuneConfig,
             masks: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Train ``model`` in place for ``cfg.epochs`` epochs and return it (masked weights stay 0)."""
    if cfg.epochs <= 0:
        return model
    if cfg.stability_weight > 0 and not (cfg.epsilon and cfg.epsilon > 0):
        raise ConfigError("the stability loss needs epsilon > 0")
    module = base_module(model)
    named = dict(module.named_modules())
    for name, mask in (masks or {}).items():
        torch_prune.custom_from_mask(named[name], "weight", mask)
    try:
        _train(module, X, y, cfg)
    finally:
        for name in masks or {}:
            torch_prune.remove(named[name], "weight")
    return model.eval()


def _train(module: nn.Module, X: torch.Tensor, y: torch.Tensor, cfg: FinetuneConfig) -> None:
    from certprune.pruning.criteria.slimming import slimming_penalty
    from certprune.pruning.stability import stability_loss

    module.eval()  # frozen BatchNorm statistics; no dropout in the supported nets
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(cfg.lr_schedule, e, cfg.epochs))
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(X), generator=gen).split(cfg.batch_size):
            xb, yb = X[idx], y[idx]
            loss = F.cross_entropy(module(xb), yb)
            if cfg.stability_weight > 0:
                loss = loss + cfg.stability_weight * stability_loss(module, xb, cfg.epsilon, cfg.domain, cfg.stability_norm)
            if cfg.slimming_weight > 0:
                loss = loss + cfg.slimming_weight * slimming_penalty(module)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
