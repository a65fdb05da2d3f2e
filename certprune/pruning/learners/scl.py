"""Sparse Connectivity Learning (Tang et al. 2022, "Automatic Sparse Connectivity Learning for
Neural Networks", arXiv:2201.05020).

Every weight is re-parameterised as ``w * step(m)`` with a trainable mask logit ``m``
(:class:`~certprune.pruning.learners.ste.StepMask`, identity straight-through estimator). The
objective is ``L + scl_weight * K`` with ``K`` the number of kept connections; with the identity
STE its gradient is ``scl_weight`` for every logit. The data-loss gradient of the logits is
normalised per feature before the regulariser is added (the paper's remedy for unbalanced mask
gradients): every output unit's logit gradients are divided by their root mean square, so
``scl_weight`` is in units of a normalised gradient (0 keeps everything, ~1 prunes hard).
Logits start at ``scl_init`` and are trained with SGD (momentum 0.9, lr ``scl_mask_lr``),
weights with Adam; the sparsity is *learned*: ``amount`` may be None, and when given the
regulariser (and the logits' momentum) is switched off while the kept share is at or below
``1 - amount``, and if the data loss alone pushed further, the highest pruned logits are restored
at the end, so the sparsity is ``min(learned, amount)``: a cap, never forced upwards. ``granularity="neuron"`` learns one logit per hidden neuron that gates its
whole pre-activation (weight row and bias); gated-off neurons are removed physically. Logit
gradients are then normalised per layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from certprune.errors import ConfigError
from certprune.pruning.finetune import Hooks, train_loop
from certprune.pruning.learners import Learned, loop_config
from certprune.pruning.learners.ste import StepMask
from certprune.pruning.layers import unit_layers, weight_layers

GRANULARITIES = ("unstructured", "neuron")
AMOUNT_OPTIONAL = True


@dataclass(frozen=True)
class Config:
    """SCL options: epochs of mask learning, regulariser weight, logit init and learning rate."""

    scl_epochs: int = 5
    scl_weight: float = 0.3
    scl_init: float = 1.0
    scl_mask_lr: float = 1e-3


def normalise_per_feature(grad: torch.Tensor) -> torch.Tensor:
    """Each row (output unit) divided by its RMS; a 1-D unit-logit gradient by its own RMS."""
    g = grad.reshape(grad.shape[0], -1) if grad.dim() > 1 else grad.reshape(1, -1)
    rms = g.pow(2).mean(dim=1, keepdim=True).sqrt()
    return (g / torch.where(rms > 0, rms, torch.ones_like(rms))).reshape(grad.shape)


def attach(module: nn.Module, granularity: str, init: float) -> dict[str, nn.Parameter]:
    """Register StepMask parametrizations on ``module`` in place; returns ``{layer: logits}``."""
    logits = {}
    if granularity == "unstructured":
        for name, m in weight_layers(module):
            p = nn.Parameter(torch.full_like(m.weight, init))
            parametrize.register_parametrization(m, "weight", StepMask(p, m.weight.dim()))
            logits[name] = p
        return logits
    for layer in unit_layers(module, granularity):
        m = layer.module
        p = nn.Parameter(torch.full((layer.width,), float(init)))
        parametrize.register_parametrization(m, "weight", StepMask(p, m.weight.dim()))
        if m.bias is not None:
            parametrize.register_parametrization(m, "bias", StepMask(p, 1))
        logits[layer.name] = p
    return logits


def detach(module: nn.Module) -> None:
    """Remove the parametrizations, leaving ``w * step(m)`` as the plain weights."""
    for m in module.modules():
        if parametrize.is_parametrized(m):
            for tensor in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, tensor, leave_parametrized=True)


def raw_weights(module: nn.Module, logits: dict[str, nn.Parameter]) -> list[nn.Parameter]:
    """The trainable parameters other than mask logits (the underlying weights and biases)."""
    ids = {id(p) for p in logits.values()}
    return [p for p in module.parameters() if id(p) not in ids]


def kept_share(logits: dict[str, nn.Parameter]) -> float:
    """Fraction of mask entries with a positive logit."""
    kept = sum(int((p > 0).sum()) for p in logits.values())
    return kept / max(1, sum(p.numel() for p in logits.values()))


def learn(work: nn.Module, X, y, amount, granularity, cfg: Config, opts, seed: int, checkpoint=None) -> Learned:
    """Train weights and masks jointly; return the learned masks (unstructured) or the units
    whose logit ended at <= 0 (neuron)."""
    if cfg.scl_epochs < 1 or cfg.scl_weight < 0 or cfg.scl_mask_lr <= 0:
        raise ConfigError("scl needs scl_epochs >= 1, scl_weight >= 0 and scl_mask_lr > 0")
    torch.manual_seed(seed)
    logits = attach(work, granularity, cfg.scl_init)
    mask_opt = torch.optim.SGD(list(logits.values()), lr=cfg.scl_mask_lr, momentum=0.9)
    cap = None if amount is None else 1.0 - amount

    def after_backward(_it: int) -> None:
        reg = cfg.scl_weight if cap is None or kept_share(logits) > cap else 0.0
        if reg == 0.0 and cfg.scl_weight > 0:
            mask_opt.state.clear()
        with torch.no_grad():
            for p in logits.values():
                if p.grad is not None:
                    p.grad.copy_(normalise_per_feature(p.grad) + reg)

    try:
        train_loop(work, X, y, loop_config(cfg.scl_epochs, opts, seed), Hooks(after_backward=after_backward),
                   raw_weights(work, logits), mask_opt, checkpoint=checkpoint, desc="scl")
        keep = _capped({k: p.detach() for k, p in logits.items()}, amount)
    finally:
        detach(work)
    share = sum(int(v.sum()) for v in keep.values()) / max(1, sum(v.numel() for v in keep.values()))
    stats = {"amount": 1.0 - share, "kept": {k: int(v.sum()) for k, v in keep.items()}}
    if granularity == "unstructured":
        return Learned(masks=keep, stats=stats)
    return Learned(removal=_removal(keep), stats=stats)


def _capped(logits: dict[str, torch.Tensor], amount: float | None) -> dict[str, torch.Tensor]:
    """Keep-masks ``logit > 0``; with ``amount``, the highest non-positive logits (over all
    layers) are kept as well until at most ``round(amount * n)`` entries are removed."""
    keep = {k: v > 0 for k, v in logits.items()}
    if amount is None:
        return keep
    flat = torch.cat([v.reshape(-1) for v in logits.values()])
    excess = int((flat <= 0).sum()) - round(amount * flat.numel())
    if excess <= 0:
        return keep
    order = torch.argsort(torch.where(flat > 0, torch.full_like(flat, -torch.inf), flat), descending=True, stable=True)
    restore = torch.zeros(flat.numel(), dtype=torch.bool)
    restore[order[:excess]] = True
    out, start = {}, 0
    for k, v in keep.items():
        out[k] = v | restore[start:start + v.numel()].reshape(v.shape)
        start += v.numel()
    return out


def _removal(keep: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """Units with a non-positive logit; ConfigError if a layer would lose every unit."""
    out = {}
    for name, k in keep.items():
        if not k.any():
            raise ConfigError(f"scl switched off every unit of layer {name!r}; lower scl_weight or set amount")
        out[name] = torch.nonzero(~k).flatten().tolist()
    return out
