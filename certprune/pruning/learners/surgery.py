"""Dynamic network surgery (Guo, Yao & Chen 2016, "Dynamic Network Surgery for Efficient DNNs"):
recoverable unstructured masks learned during training.

The forward pass uses ``W * T``. Every weight, pruned or not, is updated with the gradient of the
effective weight (``dL/dW := dL/d(W*T)``), so a pruned weight that becomes important grows and is
*spliced* back. The mask is updated by the paper's hysteresis rule ``T = 0 if |W| < a``,
``T = 1 if |W| >= b``, unchanged in between, at iteration ``it`` with probability
``(1 + surgery_gamma * it) ** -surgery_power`` (non-increasing, so masks settle). Thresholds are
per layer: ``thr`` = the ``amount`` quantile of ``|W|`` (midway between the k-th and k+1-th
smallest, k = round(amount * n)) (the paper's ``mean + c*std`` replaced by
the quantile so that the target sparsity is the input), ``a = (1 - h) thr``, ``b = (1 + h) thr``
with ``h = surgery_band``. At the end exactly ``round(amount * n)`` weights of each layer are
removed, chosen closest to the last ``T`` (the lowest-|W| kept weights go, or the highest-|W|
pruned ones return, when ``T`` is off by a few). ``manifest.config["learned"]`` counts
the prunings and splicings (restorations) per layer. Biases are not masked.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from certprune.errors import ConfigError
from certprune.pruning.finetune import Hooks, train_loop
from certprune.pruning.learners import Learned, loop_config
from certprune.pruning.learners.ste import RecoverableMask
from certprune.pruning.layers import weight_layers
from certprune.pruning.masks import unstructured_masks

GRANULARITIES = ("unstructured",)


@dataclass(frozen=True)
class Config:
    """Surgery options: epochs, hysteresis band, mask-update probability schedule, recovery."""

    surgery_epochs: int = 5
    surgery_band: float = 0.1
    surgery_gamma: float = 1e-3
    surgery_power: float = 1.0
    surgery_recover: bool = True


def hysteresis(t: torch.Tensor, w: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """The paper's mask update: 0 below ``a``, 1 at or above ``b``, ``t`` in between."""
    mag = w.abs()
    return torch.where(mag < a, torch.zeros_like(t), torch.where(mag >= b, torch.ones_like(t), t))


def threshold(w: torch.Tensor, amount: float) -> float:
    """Midway between the k-th and (k+1)-th smallest ``|w|``, k = round(amount * n) (0 if k = 0)."""
    k = round(amount * w.numel())
    mag = torch.sort(w.detach().abs().reshape(-1)).values
    return 0.0 if k == 0 else float(mag[k - 1] + mag[min(k, len(mag) - 1)]) / 2


def _collapse_score(w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Score whose lowest ``k`` are the final removal: currently kept weights first (by |W|),
    so the exact-count mask is the one closest to the current ``T``."""
    mag = w.detach().abs().double()
    return mag + t.double() * (float(mag.max()) + 1.0)


def learn(work: nn.Module, X, y, amount, granularity, cfg: Config, opts, seed: int, checkpoint=None) -> Learned:
    """Train with recoverable masks; the final exact masks and the pruning/splicing counts."""
    if cfg.surgery_epochs < 1 or not 0 <= cfg.surgery_band < 1:
        raise ConfigError("dynamic-surgery needs surgery_epochs >= 1 and 0 <= surgery_band < 1")
    layers = weight_layers(work)
    masks = {}
    for name, m in layers:
        masks[name] = RecoverableMask(m.weight.shape, cfg.surgery_recover)
        parametrize.register_parametrization(m, "weight", masks[name])
    raw = {name: m.parametrizations.weight.original for name, m in layers}
    counts = {name: {"pruned": 0, "spliced": 0} for name in masks}
    gen = torch.Generator().manual_seed(seed + 1)

    def update(it: int) -> None:
        prob = (1.0 + cfg.surgery_gamma * it) ** -cfg.surgery_power
        if it > 0 and float(torch.rand((), generator=gen)) >= prob:
            return
        with torch.no_grad():
            for name, mk in masks.items():
                thr = threshold(raw[name], amount)
                new = hysteresis(mk.t, raw[name], (1 - cfg.surgery_band) * thr, (1 + cfg.surgery_band) * thr)
                counts[name]["pruned"] += int(((mk.t == 1) & (new == 0)).sum())
                counts[name]["spliced"] += int(((mk.t == 0) & (new == 1)).sum())
                mk.t.copy_(new)

    weights = [p for p in work.parameters()]
    try:
        update(0)
        train_loop(work, X, y, loop_config(cfg.surgery_epochs, opts, seed), Hooks(after_step=lambda it: update(it + 1), state=lambda: {"gen": gen.get_state(), "counts": counts},
                         load=lambda s: (gen.set_state(s["gen"]), counts.update(s["counts"]))),
                   weights, checkpoint=checkpoint, desc="dynamic-surgery")
        final = unstructured_masks({n: _collapse_score(raw[n], masks[n].t) for n in masks}, amount, "local")
    finally:
        for _, m in layers:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    return Learned(masks=final, stats={"amount": amount, "surgery": counts})
