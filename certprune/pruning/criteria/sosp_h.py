"""SOSP-H, second-order structured pruning with Hessian-vector products (Nonnenmacher et al. 2022,
"SOSP: Efficiently Capturing Global Correlations by Second-Order Structured Pruning", ICLR).

A structure s (a unit's group: incoming weights, bias, its BatchNorm's gamma/beta) with parameters
theta^s (theta masked to s) has saliency

    lambda_s = | (theta^s)^T H theta |

with H the Gauss-Newton approximation of the Hessian of the mean cross-entropy,
H = mean_n J_n^T (diag(p_n) - p_n p_n^T) J_n (J_n = d logits_n / d theta, p_n = softmax). H theta is
one product (a Jacobian-vector product, then a vector-Jacobian product) for the whole network, so
the score of every structure includes its second-order correlations with *all* other structures,
at the cost of about two backward passes. Structures are ranked globally (one threshold for the
whole network, as in the paper).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jvp

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, batches, per_unit, require_data, unit_group
from certprune.pruning.layers import UnitLayer, base_module

DEFAULT_SCOPE = "global"


def gauss_newton_product(ctx: ScoreContext, vector: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """H_GN v for ``vector`` given by parameter name (missing names: zero), by parameter name."""
    model = base_module(ctx.model)
    named = dict(model.named_parameters())
    names = list(named)
    tangent = tuple(vector.get(k, torch.zeros_like(named[k])).detach() for k in names)
    total = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in named.items()}
    for x, _ in batches(ctx, "sosp-h"):
        def f(*ps, x=x):
            return functional_call(model, dict(zip(names, ps)), (x,))
        _, u = jvp(f, tuple(p.detach() for p in named.values()), tangent)
        logits = model(x)
        p = torch.softmax(logits.detach(), dim=1)
        w = p * u - p * (p * u).sum(1, keepdim=True)  # (diag(p) - p p^T) u, per sample
        for k, g in zip(names, torch.autograd.grad(logits, list(named.values()), grad_outputs=w)):
            total[k] += g.double()
    n = len(require_data(ctx, "sosp-h")[0])
    return {k: v / n for k, v in total.items()}


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """|theta_s^T H_GN theta| per unit (see module doc)."""
    model = base_module(ctx.model)
    theta = {k: p.detach() for k, p in model.named_parameters()}
    h_theta = gauss_newton_product(ctx, theta)
    by_id = {id(p): k for k, p in model.named_parameters()}
    out = {}
    for l in layers:
        contrib = [per_unit(l, p.detach().double() * h_theta[by_id[id(p)]]) for p in unit_group(l)]
        out[l.name] = sum(contrib).abs()
    return out


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: SOSP-H scores structures (neurons/channels)."""
    raise ConfigError("sosp-h scores neurons/channels; use granularity neuron, channel or structured")
