"""Fine-tuning after pruning: Adam on cross-entropy, plus optional stability loss (IBP, pushes
l*u > 0) and network-slimming L1 penalty. BatchNorm layers stay in eval mode (frozen running
statistics, trainable gamma/beta), so the bounds the stability loss uses are the ones the
verifier will see. Pruned weights stay zero (torch.nn.utils.prune masks). Deterministic: data
order comes from a generator seeded with ``seed``.

:func:`train_loop` is the one training loop of the pruning package: fine-tuning calls it plainly,
the mask learners (:mod:`certprune.pruning.learners`) with :class:`Hooks` (an extra loss term,
mask updates around the optimiser step, per-epoch callbacks) and their own parameters' optimiser.
It shows a tqdm bar per epoch on a terminal, and with ``checkpoint`` saves its state after every
epoch and, started again with the same file, continues from the last saved epoch (the file is
deleted when training completes), so an interrupted run ends with the same weights as an
uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from certprune.errors import ConfigError
from certprune.pruning.checkpoint import atomic_save
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
             masks: dict[str, torch.Tensor] | None = None, checkpoint: str | Path | None = None) -> nn.Module:
    """Train ``model`` in place for ``cfg.epochs`` epochs and return it (masked weights stay 0);
    ``checkpoint``: resume file of :func:`train_loop`."""
    if cfg.epochs <= 0:
        return model
    if cfg.stability_weight > 0 and not (cfg.epsilon and cfg.epsilon > 0):
        raise ConfigError("the stability loss needs epsilon > 0")
    module = base_module(model)
    named = dict(module.named_modules())
    for name, mask in (masks or {}).items():
        torch_prune.custom_from_mask(named[name], "weight", mask)
    try:
        train_loop(module, X, y, cfg, checkpoint=checkpoint, desc="fine-tune")
    finally:
        for name in masks or {}:
            torch_prune.remove(named[name], "weight")
    return model.eval()


@dataclass
class Hooks:
    """Callbacks of :func:`train_loop`: ``extra_loss()`` added to the loss, ``after_backward(it)``
    before the optimiser step (gradients present), ``after_step(it)`` after it, ``on_epoch(e)`` at
    the start of epoch ``e``; ``state()`` / ``load(state)`` save and restore the caller's own
    state in a checkpoint (without them a checkpoint holds the module and optimisers only)."""

    extra_loss: Callable[[], torch.Tensor] | None = None
    after_backward: Callable[[int], None] | None = None
    after_step: Callable[[int], None] | None = None
    on_epoch: Callable[[int], None] | None = None
    state: Callable[[], dict] | None = None
    load: Callable[[dict], None] | None = None


def train_loop(module: nn.Module, X: torch.Tensor, y: torch.Tensor, cfg: FinetuneConfig, hooks: Hooks | None = None,
               params: list[nn.Parameter] | None = None, extra: torch.optim.Optimizer | None = None,
               checkpoint: str | Path | None = None, desc: str = "train") -> int:
    """Adam(``cfg.lr``, ``cfg.lr_schedule``) on ``params`` (default: every trainable parameter)
    for ``cfg.epochs`` epochs of cross-entropy (plus the stability / slimming terms of ``cfg`` and
    ``hooks.extra_loss``); ``extra`` (a learner's own optimiser) steps after the weights'.
    BatchNorm stays in eval mode. Returns the number of iterations run (see the module doc for
    ``checkpoint``)."""
    from tqdm import tqdm

    from certprune.pruning.criteria.slimming import slimming_penalty
    from certprune.pruning.stability import stability_loss

    hooks = hooks or Hooks()
    module.eval()  # frozen BatchNorm statistics; no dropout in the supported nets
    opt = torch.optim.Adam(params if params is not None else [p for p in module.parameters() if p.requires_grad],
                           lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(cfg.lr_schedule, e, cfg.epochs))
    gen = torch.Generator().manual_seed(cfg.seed)
    start, it = 0, 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.is_file():
        start, it = _load_checkpoint(path, cfg, module, opt, sched, extra, gen, hooks)
    for e in tqdm(range(start, cfg.epochs), desc=desc, unit="epoch", leave=False, disable=None,
                  initial=start, total=cfg.epochs):
        if hooks.on_epoch:
            hooks.on_epoch(e)
        for idx in torch.randperm(len(X), generator=gen).split(cfg.batch_size):
            xb, yb = X[idx], y[idx]
            loss = F.cross_entropy(module(xb), yb)
            if cfg.stability_weight > 0:
                loss = loss + cfg.stability_weight * stability_loss(module, xb, cfg.epsilon, cfg.domain, cfg.stability_norm)
            if cfg.slimming_weight > 0:
                loss = loss + cfg.slimming_weight * slimming_penalty(module)
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
        sched.step()
        if path is not None:
            _save_checkpoint(path, cfg, e + 1, it, module, opt, sched, extra, gen, hooks)
    if path is not None and path.is_file():
        path.unlink()
    return it


def _save_checkpoint(path: Path, cfg: FinetuneConfig, epoch: int, it: int, module, opt, sched, extra, gen,
                     hooks: Hooks) -> None:
    """Everything the next epoch depends on (and the run's settings), written atomically."""
    state = {"config": repr(cfg), "epoch": epoch, "it": it, "module": module.state_dict(), "opt": opt.state_dict(),
             "sched": sched.state_dict(), "extra": None if extra is None else extra.state_dict(),
             "extra_params": None if extra is None else [p.detach().clone() for p in _params(extra)],
             "gen": gen.get_state(), "rng": torch.get_rng_state(), "hooks": hooks.state() if hooks.state else None}
    atomic_save(state, path)


def _load_checkpoint(path: Path, cfg: FinetuneConfig, module, opt, sched, extra, gen, hooks: Hooks) -> tuple[int, int]:
    """Restore a checkpoint of :func:`_save_checkpoint`; ConfigError if it does not fit (another
    model, or other training settings: resuming those would not end with the run's weights)."""
    try:
        state = torch.load(path, weights_only=False)
        if state.get("config") != repr(cfg):
            raise ValueError("training settings differ")
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["opt"])
    except Exception as exc:  # a checkpoint of another model or run
        raise ConfigError(f"checkpoint {path} does not match this training run ({type(exc).__name__}); "
                          "delete it to start over") from None
    sched.load_state_dict(state["sched"])
    if extra is not None and state["extra"] is not None:  # the learner's own parameters live outside the module
        with torch.no_grad():
            for p, v in zip(_params(extra), state["extra_params"]):
                p.copy_(v)
        extra.load_state_dict(state["extra"])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["rng"])
    if hooks.load and state["hooks"] is not None:
        hooks.load(state["hooks"])
    return int(state["epoch"]), int(state["it"])


def _params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]
