"""Brain-inspired iterative pruning by activity (after Dekhovich et al. 2024, "Neural network
relief: a pruning algorithm based on neural activity", Machine Learning 113): connections whose
importance is low are deactivated step by step, re-training in between, until the network is the
smallest subnetwork that still solves the task.

Importance of the connection ``j -> i`` of a layer: ``|w_ij| * f_j``, with ``f_j`` the firing
frequency of its presynaptic neuron on the training data (share of inputs on which the layer's
input ``j`` is > 0; for a Conv2d input channel, the share over inputs and positions). This is
the score the certprune issue defines; NNrelief itself scores a connection by its share of the
neuron's mean absolute input ``|w_ij x_j|``, which also weighs how strongly ``j`` fires. Each round
removes ``brain_rate`` of the connections still alive (globally, lowest importance first),
fine-tunes ``brain_epochs`` epochs with the masks fixed, and measures accuracy on a validation
split (the last ``brain_val`` share of the data, never trained on). The run stops before the
first round whose validation accuracy falls more than ``brain_tolerance`` below the dense
network's, or when ``amount`` (a cap; default 0.99) would be passed; the last accepted round is
the result. ``manifest.config["learned"]["rounds"]`` lists (sparsity, validation accuracy).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.checkpoint import atomic_save
from certprune.pruning.learners import Learned
from certprune.pruning.layers import weight_layers
from certprune.pruning.masks import apply_masks, unstructured_masks

GRANULARITIES = ("unstructured",)
AMOUNT_OPTIONAL = True


@dataclass(frozen=True)
class Config:
    """Rounds: share removed per round, fine-tuning epochs, accuracy tolerance, validation share."""

    brain_rate: float = 0.2
    brain_epochs: int = 1
    brain_tolerance: float = 0.01
    brain_val: float = 0.2
    brain_max_rounds: int = 30


def firing_frequency(module: nn.Module, X: torch.Tensor, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Per weight layer, the share of inputs on which each of its input features is > 0."""
    layers = weight_layers(module)
    sums: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(m, inp, _out):
            x = (inp[0] > 0).double()
            x = x.mean(dim=(2, 3)) if isinstance(m, nn.Conv2d) else x.reshape(len(x), -1)
            sums[name] = sums.get(name, 0) + x.sum(dim=0)
        return fn

    hooks = [m.register_forward_hook(hook(n)) for n, m in layers]
    try:
        with torch.no_grad():
            for s in range(0, len(X), batch_size):
                module(X[s:s + batch_size])
    finally:
        for h in hooks:
            h.remove()
    return {n: v / len(X) for n, v in sums.items()}


def importance(module: nn.Module, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """``|w_ij| * f_j`` for every weight layer (weight-shaped, float64)."""
    freq = firing_frequency(module, X)
    out = {}
    for name, m in weight_layers(module):
        w = m.weight.detach().double().abs()
        f = freq[name].reshape((1, -1) + (1,) * (w.dim() - 2))
        out[name] = w * f
    return out


def _accuracy(module: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((module(X).argmax(1) == y).double().mean())


def learn(work: nn.Module, X, y, amount, granularity, cfg: Config, opts, seed: int, checkpoint=None) -> Learned:
    """Iterative rounds (see module doc); ``work`` ends as the last accepted subnetwork.
    ``checkpoint`` (a file): the state after every round, and the running round's fine-tuning
    in a file next to it, so a stopped run resumes where it was."""
    from certprune.pruning.finetune import FinetuneConfig, finetune

    if not 0 < cfg.brain_rate < 1 or not 0 < cfg.brain_val < 1 or cfg.brain_epochs < 0:
        raise ConfigError("brain needs 0 < brain_rate < 1, 0 < brain_val < 1 and brain_epochs >= 0")
    cap = 0.99 if amount is None else amount
    cut = len(X) - max(1, round(cfg.brain_val * len(X)))
    Xt, yt, Xv, yv = X[:cut], y[:cut], X[cut:], y[cut:]
    run = {"k": 0, "base": _accuracy(work, Xv, yv), "masks": {}, "rounds": [], "sparsity": 0.0, "done": False}
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.is_file():
        run = _load_round(path, work)
    round_file = None if path is None else path.with_name(path.stem + "-round.pt")
    while not run["done"] and run["k"] < cfg.brain_max_rounds:
        k, masks, sparsity = run["k"], run["masks"], run["sparsity"]
        target = min(cap, 1.0 - (1.0 - sparsity) * (1.0 - cfg.brain_rate))
        if target <= sparsity + 1e-12:
            break
        saved = copy.deepcopy(work.state_dict())
        new = unstructured_masks(importance(work, Xt), target, "global", masks or None)
        apply_masks(dict(work.named_modules()), new)
        finetune(work, Xt, yt, FinetuneConfig(cfg.brain_epochs, opts.lr, opts.batch_size, "constant",
                                               domain=opts.domain, seed=seed + k), new, checkpoint=round_file)
        acc = _accuracy(work, Xv, yv)
        run["rounds"].append([target, acc])
        if acc < run["base"] - cfg.brain_tolerance:
            work.load_state_dict(saved)
            run["done"] = True
        else:
            run["masks"], run["sparsity"] = new, target
        run["k"] = k + 1
        if path is not None:
            atomic_save({"run": run, "work": work.state_dict()}, path)
    if path is not None:
        path.unlink(missing_ok=True)
    stats = {"amount": run["sparsity"], "dense_val_acc": run["base"], "rounds": run["rounds"]}
    return Learned(masks=run["masks"], stats=stats)


def _load_round(path: Path, work: nn.Module) -> dict:
    """The round state saved by :func:`learn` (ConfigError if it is not one of this model)."""
    try:
        state = torch.load(path, weights_only=False)
        work.load_state_dict(state["work"])
        return state["run"]
    except Exception as exc:  # another model's or a truncated file
        raise ConfigError(f"checkpoint {path} does not match this brain run ({type(exc).__name__}); "
                          "delete it to start over") from None
