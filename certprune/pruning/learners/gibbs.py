"""Gibbs pruning (Labach & Valaee 2020, "A Framework for Neural Network Pruning Using Gibbs
Distributions"): masks are sampled from a Gibbs distribution ``p(x) ~ exp(-beta H(x))`` over spins
``x = 2m - 1`` whose Hamiltonian couples weights and mask, while the network trains; ``beta``
(inverse temperature) is annealed so the distribution concentrates on its ground state.

* unstructured: ``H(x) = sum_i (q - w_i^2) x_i / s`` per layer, ``q`` = the ``amount`` quantile
  of ``w^2`` and ``s`` = mean ``w^2`` of the layer (the scale makes one ``beta`` schedule fit every
  layer; the paper tunes ``beta`` per network). Spins are independent:
  ``P(m_i = 1) = sigmoid(2 beta (w_i^2 - q) / s)``; sampled exactly.
* neuron (the paper's filter Hamiltonian, for Linear rows): within each hidden neuron's incoming
  row ``H(x) = -c sum_{i != j} x_i x_j + sum_i b_i x_i``, ``b_i = (q - w_i^2) / s`` with ``q`` the
  ``amount`` quantile of the rows' mean ``w^2``; the coupling ``c`` makes a row's mask agree,
  so whole neurons switch off. Sampled by sequential single-site Gibbs sweeps (all rows at once)
of one persistent chain per row, started, as in the paper's code, from the thresholded state.

A fresh mask is drawn for every training batch; weights get the gradient of ``w * m``.
``beta`` rises geometrically from ``gibbs_beta0`` to ``gibbs_beta1`` over the epochs. At the end
the ground state (``beta -> infinity``) is taken: exactly ``round(amount * n)`` weights of each
layer (lowest ``w^2``) or neurons of each layer (lowest mean ``w^2``) are removed.
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
from certprune.pruning.layers import unit_layers, weight_layers
from certprune.pruning.masks import unstructured_masks
from certprune.pruning.structural import select_units

GRANULARITIES = ("unstructured", "neuron")


@dataclass(frozen=True)
class Config:
    """Gibbs options: epochs, annealing range of beta, row coupling, Gibbs sweeps per batch."""

    gibbs_epochs: int = 5
    gibbs_beta0: float = 1.0
    gibbs_beta1: float = 100.0
    gibbs_coupling: float = 0.05
    gibbs_sweeps: int = 1


def beta_schedule(epoch: int, epochs: int, beta0: float, beta1: float) -> float:
    """Geometric annealing: ``beta0`` at the first epoch, ``beta1`` at the last."""
    return beta0 if epochs <= 1 else beta0 * (beta1 / beta0) ** (epoch / (epochs - 1))


def keep_probability(w2: torch.Tensor, q: float, scale: float, beta: float) -> torch.Tensor:
    """Unstructured ``P(m = 1)`` for ``H = sum (q - w^2) x / scale``."""
    return torch.sigmoid(2.0 * beta * (w2 - q) / scale)


def row_energy(x: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """Structured Hamiltonian of spins ``x`` (rows x N, entries +-1): ``-c sum_{i!=j} x_i x_j + b.x``."""
    s = x.sum(dim=-1)
    return -c * (s * s - x.shape[-1]) + (b * x).sum(dim=-1)


def gibbs_sweep(x: torch.Tensor, b: torch.Tensor, c: float, beta: float, gen: torch.Generator) -> torch.Tensor:
    """One sequential sweep over positions (every row at once) of single-site Gibbs updates:
    ``P(x_i = +1 | rest) = sigmoid(-beta (2 b_i - 4 c S_{-i}))``; updates ``x`` in place."""
    s = x.sum(dim=1)
    u = torch.rand(x.shape, generator=gen, dtype=x.dtype)
    for i in range(x.shape[1]):
        rest = s - x[:, i]
        p_up = torch.sigmoid(-beta * (2.0 * b[:, i] - 4.0 * c * rest))
        new = torch.where(u[:, i] < p_up, 1.0, -1.0).to(x.dtype)
        s = rest + new
        x[:, i] = new
    return x


def _quantile(v: torch.Tensor, amount: float) -> float:
    """Midway between the k-th and (k+1)-th smallest entries, k = round(amount * n)."""
    srt = torch.sort(v.reshape(-1)).values
    k = round(amount * srt.numel())
    if k == 0:
        return float(srt[0]) - 1.0
    return float(srt[k - 1] + srt[min(k, srt.numel() - 1)]) / 2


class _Sampler:
    """Draws one layer's mask from its Gibbs distribution at the current ``beta``."""

    def __init__(self, weight: torch.Tensor, amount: float, structured: bool, cfg: Config, gen: torch.Generator):
        self.w, self.amount, self.structured, self.cfg, self.gen = weight, amount, structured, cfg, gen
        w2 = weight.detach().double().pow(2).reshape(weight.shape[0], -1).mean(dim=1)
        start = torch.where(w2 > _quantile(w2, amount), 1.0, -1.0).to(torch.float64)  # the paper's x_cvg
        self.x = start[:, None].expand(-1, weight[0].numel()).clone()  # a persistent chain

    def sample(self, beta: float) -> torch.Tensor:
        """A {0, 1} mask of the weight's shape."""
        w2 = self.w.detach().double().pow(2).reshape(self.w.shape[0], -1)
        scale = float(w2.mean()) or 1.0
        if not self.structured:
            p = keep_probability(w2, _quantile(w2, self.amount), scale, beta)
            m = (torch.rand(p.shape, generator=self.gen, dtype=p.dtype) < p).double()
            return m.reshape(self.w.shape).to(self.w.dtype)
        b = (_quantile(w2.mean(dim=1), self.amount) - w2) / scale
        for _ in range(self.cfg.gibbs_sweeps):
            gibbs_sweep(self.x, b, self.cfg.gibbs_coupling, beta, self.gen)
        return ((self.x + 1) / 2).reshape(self.w.shape).to(self.w.dtype)


def snapshot(state: dict, gen: torch.Generator, samplers: dict) -> dict:
    """What a resumed run needs besides the module: temperature, history, generator, chains."""
    return {"state": dict(state), "gen": gen.get_state(), "chains": {n: s.x.clone() for n, s in samplers.items()}}


def restore(saved: dict, state: dict, gen: torch.Generator, samplers: dict) -> None:
    """Undo :func:`snapshot` into the live run."""
    state.update(saved["state"])
    gen.set_state(saved["gen"])
    for name, x in saved["chains"].items():
        samplers[name].x.copy_(x)


def learn(work: nn.Module, X, y, amount, granularity, cfg: Config, opts, seed: int, checkpoint=None) -> Learned:
    """Train with Gibbs-sampled masks under annealing; return the ground-state masks / units."""
    if cfg.gibbs_epochs < 1 or not 0 < cfg.gibbs_beta0 <= cfg.gibbs_beta1 or cfg.gibbs_sweeps < 1:
        raise ConfigError("gibbs needs gibbs_epochs >= 1, 0 < gibbs_beta0 <= gibbs_beta1 and gibbs_sweeps >= 1")
    structured = granularity == "neuron"
    layers = [(l.name, l.module) for l in unit_layers(work, "neuron")] if structured else weight_layers(work)
    gen = torch.Generator().manual_seed(seed + 2)
    masks, samplers = {}, {}
    for name, m in layers:
        masks[name] = RecoverableMask(m.weight.shape, recover=False)
        parametrize.register_parametrization(m, "weight", masks[name])
        samplers[name] = _Sampler(m.parametrizations.weight.original, amount, structured, cfg, gen)
    state = {"beta": cfg.gibbs_beta0, "kept": []}

    def resample(_it: int = 0) -> None:
        with torch.no_grad():
            for name, mk in masks.items():
                mk.t.copy_(samplers[name].sample(state["beta"]))

    def on_epoch(e: int) -> None:
        state["beta"] = beta_schedule(e, cfg.gibbs_epochs, cfg.gibbs_beta0, cfg.gibbs_beta1)
        resample()
        state["kept"].append(sum(float(mk.t.sum()) for mk in masks.values()) / sum(mk.t.numel() for mk in masks.values()))

    try:
        train_loop(work, X, y, loop_config(cfg.gibbs_epochs, opts, seed), Hooks(on_epoch=on_epoch, after_step=resample, state=lambda: snapshot(state, gen, samplers),
                         load=lambda s: restore(s, state, gen, samplers)),
                   list(work.parameters()), checkpoint=checkpoint, desc="gibbs")
    finally:
        for _, m in layers:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    stats = {"amount": amount, "sampled_kept_share_per_epoch": [round(k, 4) for k in state["kept"]],
             "beta_final": state["beta"]}
    w2 = {name: m.weight.detach().double().pow(2) for name, m in layers}
    if not structured:
        return Learned(masks=unstructured_masks(w2, amount, "local"), stats=stats)
    removal = select_units({n: v.reshape(v.shape[0], -1).mean(dim=1) for n, v in w2.items()}, amount, "local")
    return Learned(removal=removal, stats=stats)
