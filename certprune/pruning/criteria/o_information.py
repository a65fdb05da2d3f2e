"""O-information of a layer's units (Rosas et al. 2019, "Quantifying high-order
interdependencies via multivariate extensions of the mutual information"), and each unit's
contribution to it (Scagliarini et al. 2023, "Gradients of O-information").

For variables X = (X_1..X_n): Omega(X) = (n - 2) H(X) + sum_i [H(X_i) - H(X_-i)]; Omega > 0 means
redundancy dominates, Omega < 0 synergy. A unit's gradient d_i Omega = Omega(X) - Omega(X_-i) is
positive when the unit adds redundancy and negative when it takes part in synergistic
(multi-unit) interactions. Score = -d_i Omega: redundant units go first, the synergistic
subnetwork is kept. Entropies use the Gaussian-copula estimator (Ince et al. 2017: ranks ->
standard normal, then Gaussian entropies from log-determinants), with every H(X_-i) and
H(X_-ij) read off the precision matrix (log det S_-A = log det S + log det P_AA). Channels: mean
over positions. Constant units carry no information: they get the lowest score.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import special, stats
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.criteria.base import ScoreContext, relu_outputs
from certprune.pruning.layers import UnitLayer

RIDGE = 1e-6


def copula_normal(X: np.ndarray) -> np.ndarray:
    """Gaussian-copula transform of each column: ranks / (N + 1) -> standard normal quantiles."""
    ranks = stats.rankdata(X, axis=0)
    return special.ndtri(ranks / (len(X) + 1))


def o_information_gradients(cov: np.ndarray) -> tuple[float, np.ndarray]:
    """(Omega(X), d_i Omega for every i) for Gaussian variables with covariance ``cov`` (nats)."""
    n = len(cov)
    _, logdet = np.linalg.slogdet(cov)
    P = np.linalg.inv(cov)
    h = lambda ld, k: 0.5 * (ld + k * np.log(2 * np.pi * np.e))  # noqa: E731  entropy of k Gaussians
    h1 = h(np.log(np.diag(cov)), 1)
    ld_minus_i = logdet + np.log(np.diag(P))
    pair = np.outer(np.diag(P), np.diag(P)) - P ** 2  # det of each 2x2 block P_{ij}
    np.fill_diagonal(pair, 1.0)
    ld_minus_ij = logdet + np.log(pair)
    omega = (n - 2) * h(logdet, n) + np.sum(h1 - h(ld_minus_i, n - 1))
    # Omega(X_-i) = (n - 3) H(X_-i) + sum_{j != i} [H(X_j) - H(X_-ij)]
    terms = h1[None, :] - h(ld_minus_ij, n - 2)
    np.fill_diagonal(terms, 0.0)
    omega_minus = (n - 3) * h(ld_minus_i, n - 1) + terms.sum(1)
    return float(omega), omega - omega_minus


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """-d_i Omega per unit over the layer's responses (see module doc)."""
    acts = relu_outputs(ctx, layers, "o-information")
    out = {}
    for l in layers:
        A = acts[l.name]
        F = A.reshape(len(A), l.width, -1).mean(-1).double().numpy()
        live = F.std(0) > 1e-12
        score = np.full(l.width, -np.inf)
        if live.sum() >= 3:
            Z = copula_normal(F[:, live])
            cov = np.cov(Z, rowvar=False) + RIDGE * np.eye(int(live.sum()))
            _, grad = o_information_gradients(cov)
            score[live] = -grad
        score[~np.isfinite(score)] = (score[np.isfinite(score)].min() - 1.0) if np.isfinite(score).any() else 0.0
        out[l.name] = torch.from_numpy(score)
    return out


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Not defined: O-information scores neurons/channels."""
    raise ConfigError("o-information scores neurons/channels; use granularity neuron, channel or structured")
