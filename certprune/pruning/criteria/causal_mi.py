"""Causal (interventional) mutual information under maximum-entropy perturbations.

For each hidden layer, the layer's outputs are *set* (an intervention, do(a = U)) to independent
draws U_i ~ Uniform[min_i, max_i] over each unit's observed range on the data (the
maximum-entropy distribution on that support); the draws are propagated layer by layer through the
rest of the network, and a unit's score is the mutual information I(U_i; Y_hat) between its
intervened value and the network's decision. Because the interventions are independent, the score
measures the unit's causal effect on the output, not its correlation with other units (Ay & Polani
2008, "Information flows in causal networks"; the maximum-entropy intervention is the one that
lets a unit show its full influence). MI is estimated with scikit-learn's k-nearest-neighbour
estimator (``mutual_info_classif``, Kraskov/Ross). Channels are intervened on as a whole (one value
per channel, broadcast over its positions). ``INTERVENTIONS`` draws per layer.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, relu_outputs, split_after
from certprune.pruning.layers import UnitLayer

INTERVENTIONS = 2048


def mutual_information(features: np.ndarray, target: np.ndarray, seed: int) -> np.ndarray:
    """I(feature_i; target) in nats for a discrete target (scikit-learn's kNN estimator)."""
    from sklearn.feature_selection import mutual_info_classif

    if len(np.unique(target)) < 2:
        return np.zeros(features.shape[1])
    return mutual_info_classif(features, target, discrete_features=False, n_neighbors=3, random_state=seed)


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """I(do(a_i); Y_hat) per unit (see module doc)."""
    acts = relu_outputs(ctx, layers, "causal-mi")
    gen = torch.Generator().manual_seed(ctx.seed)
    out = {}
    for l in layers:
        A = acts[l.name]
        per_unit = A.reshape(len(A), l.width, -1)
        lo, hi = per_unit.amin((0, 2)), per_unit.amax((0, 2))
        U = lo + (hi - lo) * torch.rand(INTERVENTIONS, l.width, generator=gen, dtype=A.dtype)
        _, suffix = split_after(ctx.model, l.relu)
        with torch.no_grad():
            z = U.reshape(INTERVENTIONS, l.width, *([1] * (A.dim() - 2))).expand(INTERVENTIONS, *A.shape[1:])
            decision = suffix(z.contiguous()).argmax(1).numpy()
        mi = mutual_information(U.double().numpy(), decision, ctx.seed)
        out[l.name] = torch.from_numpy(np.asarray(mi, dtype=np.float64))
    return out


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: causal MI scores neurons/channels."""
    raise ConfigError("causal-mi scores neurons/channels; use granularity neuron, channel or structured")
