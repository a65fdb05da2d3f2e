"""Additive Gaussian noise as a model of approximate multipliers (after Trommer et al. 2022,
"Combining Gradients and Probabilities for Heterogeneous Approximation of Neural Networks",
agn-approx), for MLPs.

1. Training: every Linear layer's output gets noise ``sigma_l * std(out) * N(0, 1)`` with a
   learned ``sigma_l = exp(rho_l)`` (Adam, lr ``agn_sigma_lr``); the loss adds
   ``-agn_lambda * mean_l log sigma_l``, so each layer learns how much relative noise it tolerates.
2. Mapping: each layer is assigned the most aggressive truncated multiplier
   (:mod:`~certprune.pruning.learners.approx_mult`, ``t`` truncated columns) whose relative output
   error ``sqrt(n_l) * rms_t * dw_l * dx_l / std(out_l)`` is at most ``sigma_l`` (``n_l``: mean
   non-zero weights per row, ``rms_t`` from the exact error distribution, ``dw, dx`` the 8-bit
   quantisation steps of weights and of the layer's input, calibrated on the training data).
3. Check: the quantised network with truncated products is *simulated*; while its validation
   accuracy (last ``agn_val`` of the data) is more than ``agn_tolerance`` below the float
   network's, the layer with the largest ``t`` backs off by one column.
4. Energy: ``1 - sum_l macs_l e(t_l) / sum_l macs_l`` with ``e`` the multiplier's cell share.

Verification (:func:`certified_with_multiplier_error`): every product of layer ``l`` is allowed
an error within the truncation worst case, so each pre-activation gets a bounded perturbation
``|delta_i| <= (2^t - 1) dw dx n_i`` (``n_i`` non-zero weights of row ``i``). The network with
these perturbations is an ordinary ReLU network with the deltas as extra inputs (carried through
earlier ReLUs as ``delta + r >= 0``), bounded by the existing CROWN engine. The certificate covers
the real-valued network plus worst-case multiplier errors; operand quantisation itself is not in
it (the simulation covers it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from certprune.errors import ConfigError, UnsupportedModelError
from certprune.pruning.finetune import Hooks, train_loop
from certprune.pruning.learners import Learned, loop_config
from certprune.pruning.learners.approx_mult import energy_factor, truncated_product, truncation_stats, worst_error

GRANULARITIES = ("unstructured",)
AMOUNT_OPTIONAL = True


@dataclass(frozen=True)
class Config:
    """AGN options: noise-training epochs, noise reward weight, initial sigma, operand bits,
    accuracy tolerance of the multiplier choice, validation share."""

    agn_epochs: int = 3
    agn_lambda: float = 0.05
    agn_init: float = 0.01
    agn_sigma_lr: float = 0.05
    agn_bits: int = 8
    agn_tolerance: float = 0.01
    agn_val: float = 0.2


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """The Linear layers of an MLP made of Flatten / Linear / ReLU (UnsupportedModelError otherwise)."""
    mods = list(module) if isinstance(module, nn.Sequential) else [module]
    bad = sorted({type(m).__name__ for m in mods if not isinstance(m, (nn.Flatten, nn.Linear, nn.ReLU))})
    if bad:
        raise UnsupportedModelError(f"agn supports MLPs of Flatten, Linear and ReLU only; got {', '.join(bad)}")
    return [m for m in mods if isinstance(m, nn.Linear)]


@dataclass(frozen=True)
class LayerPlan:
    """One layer's multiplier: ``t`` truncated columns, weight and input quantisation steps."""

    t: int
    dw: float
    dx: float


def _layer_inputs(module: nn.Module, X: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Inputs and outputs of every Linear layer on ``X`` (float32)."""
    ins, outs = [], []

    def record(_m, i, o) -> None:
        ins.append(i[0].detach())
        outs.append(o.detach())

    hooks = [m.register_forward_hook(record) for m in linear_layers(module)]
    try:
        with torch.no_grad():
            module(X)
    finally:
        for h in hooks:
            h.remove()
    return ins, outs


def quant_steps(module: nn.Module, X: torch.Tensor, bits: int) -> list[tuple[float, float]]:
    """Per layer ``(dw, dx)``: max |weight| and max |input| on ``X`` over ``2^bits - 1``."""
    top = 2 ** bits - 1
    ins, _ = _layer_inputs(module, X)
    return [(float(m.weight.detach().abs().max()) / top or 1.0, float(h.abs().max()) / top or 1.0)
            for m, h in zip(linear_layers(module), ins)]


def relative_error(t: int, bits: int, n_eff: float, dw: float, dx: float, out_std: float) -> float:
    """RMS output error of a layer with truncation ``t``, relative to its output std."""
    mean, std = truncation_stats(t, bits)
    return math.sqrt(n_eff) * math.sqrt(mean ** 2 + std ** 2) * dw * dx / max(out_std, 1e-12)


def choose_plan(module: nn.Module, X: torch.Tensor, sigma: list[float], bits: int) -> list[LayerPlan]:
    """The largest ``t`` per layer whose relative error is within its learned ``sigma``."""
    _, outs = _layer_inputs(module, X)
    plans = []
    for m, (dw, dx), s, out in zip(linear_layers(module), quant_steps(module, X, bits), sigma, outs):
        n_eff = float((m.weight != 0).sum(1).double().mean())
        t = max([k for k in range(2 * bits + 1) if relative_error(k, bits, n_eff, dw, dx, float(out.std())) <= s]
                or [0])
        plans.append(LayerPlan(t, dw, dx))
    return plans


def simulate(module: nn.Module, X: torch.Tensor, plans: list[LayerPlan], bits: int, chunk: int = 64) -> torch.Tensor:
    """Outputs of the quantised network with truncated products (sign-magnitude operands)."""
    top = 2 ** bits - 1
    lin = iter(zip(linear_layers(module), plans))
    h = X.double()
    for m in (list(module) if isinstance(module, nn.Sequential) else [module]):
        if isinstance(m, nn.Linear):
            layer, p = next(lin)
            w = layer.weight.detach().double()
            a = torch.round(w.abs() / p.dw).clamp(0, top).long()
            rows = []
            for hc in h.split(chunk):
                b = torch.round(hc.abs() / p.dx).clamp(0, top).long()
                prod = truncated_product(a[None], b[:, None], p.t).double()
                sign = torch.sign(w)[None] * torch.sign(hc)[:, None]
                rows.append((sign * prod).sum(-1) * (p.dw * p.dx))
            h = torch.cat(rows) + (0 if layer.bias is None else layer.bias.detach().double())
        else:
            h = m(h)
    return h


def energy_saving(module: nn.Module, plans: list[LayerPlan], bits: int) -> float:
    """Share of multiplication energy saved (MACs = non-zero weights per input)."""
    macs = [int((m.weight != 0).sum()) for m in linear_layers(module)]
    return 1.0 - sum(n * energy_factor(p.t, bits) for n, p in zip(macs, plans)) / max(1, sum(macs))


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).double().mean())


def back_off(module, plans, Xv, yv, bits, tolerance) -> tuple[list[LayerPlan], float, float]:
    """Lower the largest ``t`` until the simulated accuracy is within ``tolerance`` of float's."""
    with torch.no_grad():
        ref = _accuracy(module(Xv), yv)
    plans = list(plans)
    while True:
        acc = _accuracy(simulate(module, Xv, plans, bits), yv)
        if acc >= ref - tolerance or all(p.t == 0 for p in plans):
            return plans, ref, acc
        k = max(range(len(plans)), key=lambda i: (plans[i].t, i))
        plans[k] = LayerPlan(plans[k].t - 1, plans[k].dw, plans[k].dx)


def learn(work: nn.Module, X, y, amount, granularity, cfg: Config, opts, seed: int, checkpoint=None) -> Learned:
    """Learn noise tolerances, map them to multipliers, check by simulation (see module doc)."""
    if cfg.agn_epochs < 1 or cfg.agn_init <= 0 or cfg.agn_lambda < 0 or not 0 < cfg.agn_val < 1:
        raise ConfigError("agn needs agn_epochs >= 1, agn_init > 0, agn_lambda >= 0 and 0 < agn_val < 1")
    layers = linear_layers(work)
    cut = len(X) - max(1, round(cfg.agn_val * len(X)))
    torch.manual_seed(seed)
    rho = nn.Parameter(torch.full((len(layers),), math.log(cfg.agn_init)))

    def noise(k):
        return lambda m, i, o: o + rho[k].exp() * o.detach().std() * torch.randn_like(o)

    hooks = [m.register_forward_hook(noise(k)) for k, m in enumerate(layers)]
    try:
        train_loop(work, X[:cut], y[:cut], loop_config(cfg.agn_epochs, opts, seed),
                   Hooks(extra_loss=lambda: -cfg.agn_lambda * rho.mean()), list(work.parameters()),
                   torch.optim.Adam([rho], lr=cfg.agn_sigma_lr), checkpoint=checkpoint, desc="agn")
    finally:
        for h in hooks:
            h.remove()
    sigma = rho.detach().exp().tolist()
    plans = choose_plan(work, X[:cut][:2048], sigma, cfg.agn_bits)
    plans, ref, acc = back_off(work, plans, X[cut:], y[cut:], cfg.agn_bits, cfg.agn_tolerance)
    stats = {"sigma": sigma, "truncation": [p.t for p in plans], "dw": [p.dw for p in plans],
             "dx": [p.dx for p in plans], "bits": cfg.agn_bits, "val_acc_float": ref, "val_acc_approx": acc,
             "energy_saving": energy_saving(work, plans, cfg.agn_bits), "amount": 0.0}
    return Learned(stats=stats)


def plans_from_stats(stats: dict) -> list[LayerPlan]:
    """The multiplier plan stored in ``manifest.config["learned"]`` by :func:`learn`."""
    return [LayerPlan(t, dw, dx) for t, dw, dx in zip(stats["truncation"], stats["dw"], stats["dx"])]


def error_radius(module: nn.Module, plans: list[LayerPlan]) -> list[torch.Tensor]:
    """Per layer, the worst-case multiplier error of each pre-activation: ``(2^t-1) dw dx n_i``."""
    return [worst_error(p.t) * p.dw * p.dx * (m.weight != 0).sum(1).double()
            for m, p in zip(linear_layers(module), plans)]


def perturbed_network(module: nn.Module, radii: list[torch.Tensor]) -> nn.Sequential:
    """A ReLU MLP on ``[x, delta_1, ..., delta_K]`` equal to ``module`` with ``delta_l`` added to
    layer ``l``'s pre-activation; later deltas ride through earlier ReLUs as ``delta + r >= 0``."""
    layers = linear_layers(module)
    sizes = [m.out_features for m in layers]
    out, h_in = [], layers[0].in_features
    for k, m in enumerate(layers):
        n, later = sizes[k], sum(sizes[k + 1:])
        W = torch.zeros(n + later, h_in + n + later, dtype=torch.float64)
        b = torch.zeros(n + later, dtype=torch.float64)
        W[:n, :h_in] = m.weight.detach().double()
        W[:n, h_in:h_in + n] = torch.eye(n, dtype=torch.float64)
        W[n:, h_in + n:] = torch.eye(later, dtype=torch.float64)
        if m.bias is not None:
            b[:n] = m.bias.detach().double()
        if k > 0:
            b[:n] -= radii[k]  # it arrived as delta + r
        elif later:
            b[n:] = torch.cat(radii[1:])  # shift the later deltas to be >= 0
        lin = nn.Linear(h_in + n + later, n + later).double()
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        out += [lin, nn.ReLU()] if k < len(layers) - 1 else [lin]
        h_in = n
    return nn.Sequential(*out)


def certified_with_multiplier_error(module: nn.Module, X: torch.Tensor, y: torch.Tensor, epsilon: float,
                                    plans: list[LayerPlan], domain=(0.0, 1.0)) -> torch.Tensor:
    """Per input: correctly classified and CROWN-certified at ``epsilon`` for every multiplier
    error within the plan's worst case (margin ``metrics.CERT_MARGIN``)."""
    from certprune.pruning.metrics import CERT_MARGIN
    from certprune.pruning.stability import perturbation_boxes
    from certprune.verifiers.bounds import compute_bounds

    radii = error_radius(module, plans)
    net = perturbed_network(module, radii)
    r = torch.cat(radii)
    flat = X.reshape(len(X), -1).double()
    lo, hi = perturbation_boxes(flat, epsilon, domain)
    lo = torch.cat([lo, -r.expand(len(X), -1)], 1)
    hi = torch.cat([hi, r.expand(len(X), -1)], 1)
    k = linear_layers(module)[-1].out_features
    eye = torch.eye(k, dtype=torch.float64)
    C = eye[y].unsqueeze(1) - eye.unsqueeze(0)
    with torch.no_grad():
        correct = module(X).argmax(1) == y
    b = compute_bounds(net, lo, hi, method="crown", C=C, input_shape=(lo.shape[1],))
    others = b.lower.masked_fill(torch.eye(k, dtype=torch.bool)[y], torch.inf)
    return (others.min(dim=1).values > CERT_MARGIN) & correct
