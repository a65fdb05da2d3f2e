"""The training loop every mask learner shares: Adam on the weights (plus the learner's own
parameters through ``extra``), cross-entropy, a seeded shuffle, and hooks the learner uses to
update masks. BatchNorm stays in eval mode, as in :mod:`certprune.pruning.finetune`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Hooks:
    """Learner callbacks: ``extra_loss()`` added to the loss, ``after_backward(it)`` before the
    optimiser step (gradients present), ``after_step(it)`` after it, ``on_epoch(e)`` at the
    start of epoch ``e``."""

    extra_loss: Callable[[], torch.Tensor] | None = None
    after_backward: Callable[[int], None] | None = None
    after_step: Callable[[int], None] | None = None
    on_epoch: Callable[[int], None] | None = None


def train(module: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int,
          seed: int, hooks: Hooks, weights: list[nn.Parameter], extra: torch.optim.Optimizer | None = None) -> int:
    """Train ``weights`` with Adam(lr) for ``epochs`` epochs; ``extra`` (the learner's own
    optimiser) steps after the weights'. Returns the number of iterations run."""
    module.eval()
    opt = torch.optim.Adam(weights, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    it = 0
    for e in range(epochs):
        if hooks.on_epoch:
            hooks.on_epoch(e)
        for idx in torch.randperm(len(X), generator=gen).split(batch_size):
            loss = F.cross_entropy(module(X[idx]), y[idx])
            if hooks.extra_loss:
                loss = loss + hooks.extra_loss()
            opt.zero_grad()
            if extra is not None:
                extra.zero_grad()
            loss.backward()
            if hooks.after_backward:
                hooks.after_backward(it)
            opt.step()
            if extra is not None:
                extra.step()
            if hooks.after_step:
                hooks.after_step(it)
            it += 1
    return it
