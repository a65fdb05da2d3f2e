"""Gibbs pruning: the samplers against the exact Gibbs distribution on tiny cases, annealing to
the ground state, structured coupling, exact final counts."""
from __future__ import annotations

import itertools

import pytest
import torch

import certprune
from certprune.pruning.learners import gibbs
from conftest import random_mlp


def _exact(b: torch.Tensor, c: float, beta: float) -> dict[tuple, float]:
    """p(x) = exp(-beta H(x)) / Z over all spin vectors of length len(b)."""
    states = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=len(b))), dtype=torch.float64)
    logp = -beta * gibbs.row_energy(states, b.expand(len(states), -1), c)
    p = torch.softmax(logp, dim=0)
    return {tuple(s.tolist()): float(q) for s, q in zip(states, p)}


def test_unstructured_keep_probability_is_the_exact_single_spin_marginal():
    w2, q, s, beta = torch.tensor([0.0, 0.5, 1.0, 3.0], dtype=torch.float64), 0.8, 1.3, 2.0
    for w, p in zip(w2, gibbs.keep_probability(w2, q, s, beta)):
        exact = _exact(torch.tensor([(q - float(w)) / s], dtype=torch.float64), 0.0, beta)
        assert float(p) == pytest.approx(exact[(1.0,)], rel=1e-12)


@pytest.mark.parametrize("c,beta", [(0.3, 1.5), (0.0, 0.7), (-0.2, 1.0)])
def test_structured_gibbs_sweeps_sample_the_exact_distribution(c, beta):
    b = torch.tensor([0.4, -0.3, 0.1], dtype=torch.float64)
    chains = 40000
    x = torch.ones(chains, 3, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        gibbs.gibbs_sweep(x, b.expand(chains, -1), c, beta, gen)
    exact = _exact(b, c, beta)
    counts = {k: 0 for k in exact}
    for row in x.tolist():
        counts[tuple(row)] += 1
    tv = 0.5 * sum(abs(counts[k] / chains - p) for k, p in exact.items())
    assert tv < 0.012, tv


def test_beta_schedule_is_geometric_from_beta0_to_beta1():
    vals = [gibbs.beta_schedule(e, 5, 1.0, 16.0) for e in range(5)]
    assert vals == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0])


def _data(n=256, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g)
    return X, X[:, :3].argmax(1)


def test_annealing_concentrates_the_sampled_masks_on_the_ground_state():
    X, y = _data()
    pruned, manifest = certprune.prune(random_mlp([8, 16, 3]), method="gibbs", amount=0.5, data=(X, y),
                                       gibbs_epochs=6, gibbs_beta0=0.1, gibbs_beta1=200.0, lr=0.01, batch_size=32)
    kept = manifest.config["learned"]["sampled_kept_share_per_epoch"]
    # hot: masks near coin flips (far from the 50 % ground-state share in each weight, but share ~ 0.5 + noise);
    # cold: the sampled share equals the ground state's 1 - amount
    assert kept[-1] == pytest.approx(0.5, abs=0.03)
    zeros = [int((pruned[i].weight == 0).sum()) for i in (0, 2)]
    assert zeros[0] >= 64 and zeros[1] >= 24
    assert float((pruned(X).argmax(1) == y).float().mean()) > 0.6


def test_hot_sampling_is_random_and_cold_sampling_is_the_threshold_mask():
    w = torch.randn(6, 10, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(4)
    sampler = gibbs._Sampler(w, 0.4, False, gibbs.Config(), gen)
    ground = (w.pow(2) > gibbs._quantile(w.double().pow(2), 0.4)).float()
    assert torch.equal(sampler.sample(1e6), ground)
    hot = torch.stack([sampler.sample(1e-6) for _ in range(200)]).mean(0)
    assert hot.sub(0.5).abs().max() < 0.15


def test_structured_gibbs_prunes_whole_neurons_with_coupled_rows():
    w = torch.randn(8, 12, generator=torch.Generator().manual_seed(5)) * torch.linspace(0.1, 2.0, 8)[:, None]
    sampler = gibbs._Sampler(w, 0.5, True, gibbs.Config(gibbs_coupling=0.5, gibbs_sweeps=5), torch.Generator().manual_seed(6))
    m = sampler.sample(20.0)
    assert all(len(set(row.tolist())) == 1 for row in m)  # each row all kept or all pruned
    assert m[:3].sum() == 0 and m[-3:].sum() == m[-3:].numel()  # the small rows go, the large stay
    X, y = _data()
    pruned, manifest = certprune.prune(random_mlp([8, 16, 12, 3]), method="gibbs", amount=0.25, granularity="neuron",
                                       data=(X, y), gibbs_epochs=3, lr=0.01, batch_size=64)
    assert pruned[0].out_features == 12 and pruned[2].out_features == 9 and manifest.removed_units() == 7
