"""Activating while pruning (AP): the dead-neuron rate exactly on a hand net, re-activation lowers
it, and prune(..., activate_while_pruning=True) wraps a base criterion."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certprune
from certprune.errors import ConfigError
from certprune.pruning.learners import activate
from conftest import random_mlp


def _hand() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        net[0].bias.copy_(torch.tensor([-0.5, 0.0, -10.0]))  # unit 2 is always dead on [0, 1]^2
    return net


def test_dead_rates_and_dnr_exactly():
    X = torch.tensor([[0.0, 0.0], [1.0, 0.2], [0.7, 0.0], [0.2, 0.9]])
    rates = activate.dead_rates(_hand(), X)["0"]
    assert rates.tolist() == [0.5, 0.5, 1.0]
    assert activate.dynamic_dnr(_hand(), X) == pytest.approx(2.0 / 3.0)


def test_reactivation_revives_only_dead_units_and_lowers_the_dnr():
    X = torch.rand(400, 2, generator=torch.Generator().manual_seed(0))
    net = _hand()
    stats = activate.activate(net, X)
    assert stats["reactivated"] == 1 and stats["dnr_after"] < stats["dnr_before"]
    rates = activate.dead_rates(net, X)["0"]
    assert rates[2] == pytest.approx(1 - activate.FIRE, abs=0.01)
    assert net[0].bias[:2].tolist() == [-0.5, 0.0]


def test_prune_with_ap_lowers_the_dead_neuron_rate_of_the_base_criterion():
    g = torch.Generator().manual_seed(1)
    X = torch.rand(300, 10, generator=g)
    y = X[:, :3].argmax(1)
    model = random_mlp([10, 32, 32, 3], seed=4)
    with torch.no_grad():  # kill a third of the first layer's units
        model[0].bias[:10] -= 20.0
    base, mb = certprune.prune(model, method="magnitude", amount=0.5, data=(X, y), steps=2)
    ap, ma = certprune.prune(model, method="magnitude", amount=0.5, data=(X, y), steps=2, activate_while_pruning=True)
    log = ma.config["activate_while_pruning"]
    assert len(log) == 2 and log[0]["reactivated"] >= 10
    assert activate.dynamic_dnr(ap, X) < activate.dynamic_dnr(base, X) - 0.05
    assert "activate_while_pruning" not in mb.config
    for a, b in zip(ma.steps, mb.steps):  # AP does not change what the base criterion removes
        assert a.masks == b.masks


def test_ap_needs_data_and_a_scoring_criterion():
    with pytest.raises(ConfigError, match="needs data"):
        certprune.prune(random_mlp([4, 4, 2]), method="magnitude", amount=0.5, activate_while_pruning=True)
    with pytest.raises(ConfigError, match="mask learner"):
        certprune.prune(random_mlp([4, 4, 2]), method="scl", data=(torch.rand(8, 4), torch.zeros(8).long()),
                        activate_while_pruning=True)
