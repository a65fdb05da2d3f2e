"""NISP, Neuron Importance Score Propagation (Yu et al. 2018, "NISP: Pruning Networks using Neuron
Importance Score Propagation", CVPR).

1. The final response layer (FRL: the last hidden layer, whose output the classifier reads) is
   scored by Infinite Feature Selection (Roffo et al. 2015, "Infinite Feature Selection") on its
   responses over the data (channels: mean over positions).
2. Importance is propagated backward through the absolute weights: s_k = |W_{k+1}|^T s_{k+1},
   with W_{k+1} the affine map from layer k's output to layer k+1's pre-activation (a BatchNorm
   after layer k+1 is folded in as |gamma / sqrt(var + eps)|; Conv2d kernels and Flatten
   positions are summed per input channel).
3. The least important units of every layer are removed (per layer, as in the paper).

Inf-FS: A_ij = alpha * max(sigma_i, sigma_j) + (1 - alpha) * (1 - |spearman_ij|) with sigma the
standard deviations scaled to [0, 1] and alpha = 0.5; S = (I - r A)^-1 - I with r = 0.9 / rho(A)
(the sum of r^l A^l over all path lengths l >= 1); score_i = sum_j S_ij. A constant response
carries no information, so its row and column of A are zero (Roffo's A is undefined there).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, relu_outputs
from certprune.pruning.layers import UnitLayer, unit_layers
from certprune.pruning.stability import bn_scale

ALPHA = 0.5


def inf_fs(features: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Infinite Feature Selection scores of the columns of ``features`` (N, n); higher = better."""
    sigma = features.std(axis=0)
    live = sigma > 1e-12
    s = sigma / sigma.max() if live.any() else sigma
    rho = np.zeros((features.shape[1],) * 2)
    if live.sum() > 1:
        r = stats.spearmanr(features[:, live]).statistic
        rho[np.ix_(live, live)] = np.nan_to_num(np.atleast_2d(r))
    elif live.sum() == 1:
        rho[np.ix_(live, live)] = 1.0
    A = alpha * np.maximum.outer(s, s) + (1 - alpha) * (1 - np.abs(rho))
    A[~live, :] = 0.0
    A[:, ~live] = 0.0
    radius = np.abs(np.linalg.eigvals(A)).max()
    if radius <= 0:
        return np.zeros(features.shape[1])
    r = 0.9 / radius
    S = np.linalg.inv(np.eye(len(A)) - r * A) - np.eye(len(A))
    return S.sum(axis=1)


def propagate(s_next: torch.Tensor, nxt: UnitLayer, width: int) -> torch.Tensor:
    """s_k = |W_{k+1}|^T s_{k+1} (BatchNorm scale folded, kernels/positions summed per input unit)."""
    W = nxt.module.weight.detach().double().abs()
    W = W * bn_scale(nxt).reshape(-1, *([1] * (W.dim() - 1))) if nxt.bn is not None else W
    per_input = W.reshape(W.shape[0], width, -1).sum(-1)  # (out, width)
    return per_input.T @ s_next


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """NISP score of every unit of ``layers`` (see module doc)."""
    chain = unit_layers(ctx.model, "structured")
    frl = chain[-1]
    acts = relu_outputs(ctx, [frl], "nisp")[frl.name]
    acts = acts.reshape(len(acts), frl.width, -1).mean(-1).double().numpy()
    s = torch.from_numpy(inf_fs(acts))
    out = {frl.name: s}
    for k in range(len(chain) - 2, -1, -1):
        s = propagate(s, chain[k + 1], chain[k].width)
        out[chain[k].name] = s
    return {l.name: out[l.name] for l in layers}


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: NISP scores neurons/channels."""
    raise ConfigError("nisp scores neurons/channels; use granularity neuron, channel or structured")
