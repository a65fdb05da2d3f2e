"""M-information flow for fairness (Venkatesh, Dutta, Mehta & Grover 2021, "Can Information Flows
Suggest Targets for Interventions in Neural Circuits?", NeurIPS; the framework of Venkatesh et al.
2020, "Information Flow in Computational Systems").

The message M is either the protected attribute Z (``ctx.protected``: a column of the inputs) or
the true label Y. A node's flow is the mutual information I(M; a_i) between M and its value over
the data (scikit-learn's kNN estimator, ``mutual_info_classif``). The flow on an edge i -> j is
the node's flow weighted by the edge's share of what j receives,
F_ij = I(M; a_i) * |w_ji| sigma_i / sum_k |w_jk| sigma_k (the paper's weighted flow: mutual
information is scale invariant, so the unweighted flow would be the same on every outgoing edge).
*Bias flow* uses M = Z, *accuracy flow* M = Y. Pruning removes what carries much bias and little
accuracy: the score is accuracy flow - bias flow (edges for unstructured masks; for neurons the
sum over their outgoing edges). Linear layers only (the paper's tabular MLPs).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from certprune.errors import ConfigError, UnsupportedModelError
from certprune.pruning.criteria.base import ScoreContext, require_data
from certprune.pruning.criteria.causal_mi import mutual_information
from certprune.pruning.layers import UnitLayer


def _messages(ctx: ScoreContext) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Y) as integer codes; ConfigError without a protected column."""
    X, y = require_data(ctx, "m-info-flow")
    if ctx.protected is None:
        raise ConfigError("criterion 'm-info-flow' needs protected=<column index of the protected attribute>")
    if not 0 <= ctx.protected < X.reshape(len(X), -1).shape[1]:
        raise ConfigError(f"protected column {ctx.protected} is outside the {X.shape[1]} input columns")
    z = X.reshape(len(X), -1)[:, ctx.protected].numpy()
    return np.unique(z, return_inverse=True)[1], y.numpy()


def linear_inputs(ctx: ScoreContext, modules: list[nn.Module]) -> list[torch.Tensor]:
    """The input (N, in_features) of every given Linear on the context's data (no grad)."""
    if any(not isinstance(m, nn.Linear) for m in modules):
        raise UnsupportedModelError("m-info-flow supports Linear layers only")
    X, _ = require_data(ctx, "m-info-flow")
    seen: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, inp: seen.__setitem__(id(mod), inp[0].detach())) for m in modules]
    try:
        with torch.no_grad():
            ctx.model(X)
    finally:
        for h in hooks:
            h.remove()
    return [seen[id(m)] for m in modules]


def edge_flows(ctx: ScoreContext, module: nn.Linear, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy flow, bias flow) per edge, shaped like ``module.weight`` (out, in)."""
    z, y = _messages(ctx)
    A = inputs.double().numpy()
    node_acc = torch.from_numpy(mutual_information(A, y, ctx.seed))
    node_bias = torch.from_numpy(mutual_information(A, z, ctx.seed))
    carried = module.weight.detach().double().abs() * torch.from_numpy(A.std(0))
    share = carried / carried.sum(1, keepdim=True).clamp(min=1e-300)
    return share * node_acc, share * node_bias


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Accuracy flow - bias flow on every edge."""
    inputs = linear_inputs(ctx, [m for _, m in layers])
    out = {}
    for (name, m), a in zip(layers, inputs):
        acc, bias = edge_flows(ctx, m, a)
        out[name] = acc - bias
    return out


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """Sum over a neuron's outgoing edges of accuracy flow - bias flow."""
    from certprune.pruning.criteria.base import next_affine

    nxts = [next(m for m in next_affine(ctx.model, l) if isinstance(m, (nn.Linear, nn.Conv2d))) for l in layers]
    inputs = linear_inputs(ctx, nxts)  # one forward pass for every layer
    out = {}
    for l, nxt, a in zip(layers, nxts, inputs):
        acc, bias = edge_flows(ctx, nxt, a)
        out[l.name] = (acc - bias).sum(0)
    return out
