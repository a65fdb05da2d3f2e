"""Activating while pruning (AP; after Liu, Ghosh, Tan & Motani 2023, "AP: Selective Activation
for De-sparsifying Pruned Neural Networks", TMLR): during iterative pruning, measure the dynamic
dead neuron rate (DNR: the share of hidden ReLU outputs that are zero on the training data) and
selectively re-activate units to lower it. AP does not score weights; it wraps a base criterion
(``prune(..., activate_while_pruning=True)``).

Re-activation rule used here (the paper's selection criterion was not available offline, so this
is an AP-style rule meeting its stated goal): after each pruning step, every hidden unit that is
dead on at least ``DEAD`` of the training inputs and still has a non-zero incoming weight gets
its bias raised so that it fires on ``FIRE`` of them (``b -= quantile_{1-FIRE}(pre-activation)``);
the pruning pattern is not touched and fine-tuning follows as usual.
"""
from __future__ import annotations

import torch
from torch import nn

from certprune.pruning.layers import unit_layers

DEAD = 0.99
FIRE = 0.5  # a revived unit fires on half the inputs, like a typical unit


def _pre_activations(module: nn.Module, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hidden Linear/Conv2d outputs on ``X`` (the input of their ReLU; BatchNorm applied),
    channels averaged over positions for convolutions: ``{layer: (N, width)}``."""
    layers = unit_layers(module, "structured")
    out, hooks = {}, []
    for l in layers:
        target = l.bn if l.bn is not None else l.module

        def rec(_m, _i, o, name=l.name):
            out[name] = o.detach() if o.dim() == 2 else o.detach().flatten(2).transpose(1, 2)
        hooks.append(target.register_forward_hook(rec))
    try:
        with torch.no_grad():
            module.eval()(X)
    finally:
        for h in hooks:
            h.remove()
    return out


def dead_rates(module: nn.Module, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per hidden layer, each unit's share of inputs (and positions) on which its ReLU outputs 0."""
    rates = {}
    for name, z in _pre_activations(module, X).items():
        zero = (z <= 0).double()
        rates[name] = zero.mean(dim=0) if zero.dim() == 2 else zero.mean(dim=(0, 1))
    return rates


def dynamic_dnr(module: nn.Module, X: torch.Tensor) -> float:
    """Share of all hidden ReLU outputs (units x inputs) that are zero."""
    rates = dead_rates(module, X)
    total = sum(r.numel() for r in rates.values())
    return float(sum(r.sum() for r in rates.values()) / max(1, total))


def activate(module: nn.Module, X: torch.Tensor) -> dict:
    """Apply the re-activation rule in place; returns DNR before and after and units touched."""
    before = dynamic_dnr(module, X)
    pre = _pre_activations(module, X)
    touched = 0
    for l in unit_layers(module, "structured"):
        if l.bn is not None or l.module.bias is None or not isinstance(l.module, nn.Linear):
            continue  # Linear layers with a bias only (a BatchNorm shift would be the analogue)
        z = pre[l.name]
        rate = (z <= 0).double().mean(dim=0)
        alive = l.module.weight.detach().abs().sum(dim=1) > 0
        pick = (rate >= DEAD) & alive
        if pick.any():
            shift = torch.quantile(z[:, pick].double(), 1.0 - FIRE, dim=0).float()
            with torch.no_grad():
                l.module.bias[pick] -= shift - 1e-6
            touched += int(pick.sum())
    return {"dnr_before": before, "dnr_after": dynamic_dnr(module, X), "reactivated": touched}
