"""Input-dependent runtime gating of neurons (dynamic pruning; after Gao et al. 2019, "Dynamic
Channel Pruning: Feature Boosting and Suppression", for the hidden Linear layers of an MLP).

Every hidden ``Linear -> ReLU`` pair becomes a :class:`GatedBlock`: a cheap low-rank saliency
predictor ``s(x) = relu(B A x + c)`` (rank ``gating_rank``) reads the block's input, keeps the
``k = round((1 - amount) * width)`` most salient neurons *of this input* (winner-take-all) and
scales them by their saliency: ``out = relu(W x + b) * (s(x) * topk(s(x)))``; the other neurons
are not computed at run time. Trained jointly with the network; the loss adds
``gating_l1 * mean |s|`` (the paper's lasso on saliencies).

Verification story: the gate multiplies two input-dependent quantities and selects the top k,
so a gated network is not a ReLU graph and certprune does not bound it. Every certifying path
refuses it with :class:`~certprune.errors.UnsupportedModelError`: the native engine lists
``GatedBlock`` as unsupported, and tracing (auto_LiRPA, ONNX export) raises from
:meth:`GatedBlock.forward`. Certify the dense or statically pruned network instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from certprune.errors import ConfigError, UnsupportedModelError
from certprune.pruning.finetune import Hooks, train_loop
from certprune.pruning.learners import Learned, loop_config

GRANULARITIES = ("neuron",)
REFUSAL = ("input-dependent neuron gating (GatedBlock) is not part of certprune's verifiable graph: "
           "the gate selects the top-k neurons per input; verify the dense or statically pruned model")


class GatedBlock(nn.Module):
    """``relu(linear(x)) * g(x)``, ``g`` = saliency of the top ``k`` neurons of this input, else 0."""

    def __init__(self, linear: nn.Linear, k: int, rank: int):
        super().__init__()
        self.linear, self.k = linear, k
        self.down = nn.Linear(linear.in_features, rank, bias=False)
        self.up = nn.Linear(rank, linear.out_features)
        nn.init.constant_(self.up.bias, 1.0)
        self.record = False  # keep the last saliency for the L1 term (training only)
        self.last_saliency: torch.Tensor | None = None

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The gate ``s * topk(s)`` (N, width); exactly ``k`` non-negative entries kept per row."""
        s = torch.relu(self.up(self.down(x)))
        if self.record:
            self.last_saliency = s
        keep = torch.zeros_like(s).scatter_(1, s.topk(self.k, dim=1).indices, 1.0)
        return s * keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if torch.jit.is_tracing() or torch.jit.is_scripting():
            raise UnsupportedModelError(REFUSAL)
        return torch.relu(self.linear(x)) * self.gate(x)


@dataclass(frozen=True)
class Config:
    """Gating options: training epochs, predictor rank, saliency L1 weight."""

    gating_epochs: int = 5
    gating_rank: int = 8
    gating_l1: float = 1e-3


def attach(model: nn.Module, amount: float, rank: int) -> list[GatedBlock]:
    """Replace every hidden ``Linear, ReLU`` pair of the Sequential ``model`` in place."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModelError("gating needs an nn.Sequential MLP (Linear, ReLU, ...)")
    idx = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    blocks = []
    for i in idx[:-1]:
        if i + 1 >= len(model) or not isinstance(model[i + 1], nn.ReLU):
            raise UnsupportedModelError(f"gating needs a ReLU right after every hidden Linear (layer {i})")
        k = max(1, round((1.0 - amount) * model[i].out_features))
        model[i] = GatedBlock(model[i], k, rank)
        model[i + 1] = nn.Identity()
        blocks.append(model[i])
    if not blocks:
        raise ConfigError("the model has no hidden Linear layers to gate")
    return blocks


def runtime_macs(model: nn.Module) -> int:
    """Per-input MACs of a gated MLP at run time: a layer after a gated block reads only that
    block's ``k`` computed neurons; a block costs its predictor plus its ``k`` computed rows."""
    total, active = 0, None
    for m in model:
        if isinstance(m, GatedBlock):
            a = m.linear.in_features if active is None else active
            total += a * m.down.out_features + m.up.weight.numel() + m.k * a
            active = m.k
        elif isinstance(m, nn.Linear):
            total += m.out_features * (m.in_features if active is None else active)
            active = None
    return total


def learn(work: nn.Module, X, y, amount, granularity, cfg: Config, opts, seed: int, checkpoint=None) -> Learned:
    """Gate the MLP and train it with its predictors; returns the gated model."""
    if cfg.gating_epochs < 1 or cfg.gating_rank < 1 or cfg.gating_l1 < 0:
        raise ConfigError("gating needs gating_epochs >= 1, gating_rank >= 1 and gating_l1 >= 0")
    torch.manual_seed(seed)
    blocks = attach(work, amount, cfg.gating_rank)
    for b in blocks:
        b.record = True

    def l1() -> torch.Tensor:
        return cfg.gating_l1 * sum(b.last_saliency.abs().mean() for b in blocks)

    train_loop(work, X, y, loop_config(cfg.gating_epochs, opts, seed), Hooks(extra_loss=l1), list(work.parameters()),
               checkpoint=checkpoint, desc="gating")
    for b in blocks:
        b.record, b.last_saliency = False, None
    return Learned(model=work, stats={"amount": amount, "kept_per_input": {str(i): b.k for i, b in enumerate(blocks)},
                                      "runtime_macs": runtime_macs(work)})
