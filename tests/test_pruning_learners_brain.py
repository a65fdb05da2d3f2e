"""Brain-inspired iterative pruning: firing frequencies and importance exactly on a hand-built
net, silent neurons' connections go first, rounds stop at the accuracy tolerance."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certprune
from certprune.pruning.learners import brain
from conftest import random_mlp


def _hand_net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, -1.0]]))  # unit 1 never fires on x >= 0
        net[0].bias.copy_(torch.tensor([-0.5, 0.0]))
        net[2].weight.copy_(torch.tensor([[-0.1, 5.0], [0.1, -5.0]]))
        net[2].bias.zero_()
    return net


def test_firing_frequency_and_importance_exactly():
    X = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.7, 2.0], [0.2, 0.0]])
    freq = brain.firing_frequency(_hand_net(), X)
    assert freq["0"].tolist() == [0.75, 0.5]   # input pixels > 0
    assert freq["2"].tolist() == [0.5, 0.0]    # hidden unit 0 fires on x0 > 0.5; unit 1 never
    imp = brain.importance(_hand_net(), X)
    assert torch.allclose(imp["2"], torch.tensor([[0.05, 0.0], [0.05, 0.0]], dtype=torch.float64))
    assert torch.allclose(imp["0"], torch.tensor([[0.75, 0.0], [0.75, 0.5]], dtype=torch.float64))


def test_connections_of_a_silent_neuron_go_first_despite_large_weights():
    X = torch.rand(64, 2)
    y = (X[:, 0] > 0.5).long()
    scores = brain.importance(_hand_net(), X)
    from certprune.pruning.masks import unstructured_masks
    keep = unstructured_masks({"2": scores["2"]}, 0.5, "local")["2"]
    assert keep[:, 0].all() and not keep[:, 1].any()  # |w| = 5 removed, |w| = 0.1 kept
    assert float((_hand_net()(X).argmax(1) == y).float().mean()) == 1.0


def _task(n=600, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g)
    return X, X[:, :3].argmax(1)


def _trained(X, y):
    from certprune.pruning.finetune import FinetuneConfig, finetune
    model = random_mlp([10, 32, 32, 3], seed=1)
    return finetune(model, X, y, FinetuneConfig(epochs=30, lr=0.01, batch_size=32, lr_schedule="constant"))


def test_rounds_shrink_until_the_tolerance_and_keep_accuracy():
    X, y = _task()
    model = _trained(X, y)
    pruned, manifest = certprune.prune(model, method="brain", data=(X, y), brain_rate=0.3, brain_epochs=2,
                                       lr=0.005, batch_size=32)
    st = manifest.config["learned"]
    rounds = st["rounds"]
    assert len(rounds) >= 3 and st["amount"] > 0.5
    accepted = [r for r in rounds if r[0] <= st["amount"] + 1e-9]
    assert all(acc >= st["dense_val_acc"] - 0.01 for _, acc in accepted)
    last_target, last_acc = rounds[-1]
    assert last_acc < st["dense_val_acc"] - 0.01 or last_target >= 0.99 - 1e-9 or len(rounds) == 30
    total = sum(m.weight.numel() for m in (pruned[0], pruned[2], pruned[4]))
    zeros = sum(int((m.weight == 0).sum()) for m in (pruned[0], pruned[2], pruned[4]))
    assert zeros == round(st["amount"] * total)
    Xv, yv = X[-120:], y[-120:]
    assert float((pruned(Xv).argmax(1) == yv).float().mean()) == pytest.approx(accepted[-1][1], abs=1e-6)


def test_amount_caps_the_rounds():
    X, y = _task(300)
    _, manifest = certprune.prune(_trained(X, y), method="brain", amount=0.3, data=(X, y), brain_rate=0.2,
                                  brain_epochs=1, lr=0.005)
    assert manifest.config["learned"]["amount"] <= 0.3 + 1e-12
