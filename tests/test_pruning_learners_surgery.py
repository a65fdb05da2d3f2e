"""Dynamic network surgery: recoverable masks (a pruned weight keeps learning and is spliced
back), the hysteresis rule, exact final counts."""
from __future__ import annotations

import torch
from torch import nn

import certprune
from certprune.pruning.learners import surgery
from certprune.pruning.manifest import decode_mask


def _task(n=256, seed=0):
    """Label = x0 > 0.5; x1 is a weaker, noisy hint of it. A linear 2 -> 2 classifier whose x0
    column starts tiny (so it is pruned first) and x1 column large."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g)
    X[:, 1] = 0.3 * (X[:, 0] > 0.5).float() + 0.7 * X[:, 1]
    model = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.01, 0.3], [-0.01, -0.3]]))
        model[0].bias.zero_()
    return model, X, (X[:, 0] > 0.5).long()


def test_hysteresis_rule():
    t = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    w = torch.tensor([0.05, 0.15, -0.15, 0.3, -0.3])
    assert surgery.hysteresis(t, w, 0.1, 0.2).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_a_pruned_weight_keeps_learning_and_is_spliced_back():
    model, X, y = _task()
    pruned, manifest = certprune.prune(model, method="dynamic-surgery", amount=0.5, data=(X, y), surgery_epochs=20,
                                       lr=0.05, batch_size=32, surgery_gamma=0.0)
    counts = manifest.config["learned"]["surgery"]["0"]
    keep = decode_mask(manifest.steps[0].masks["0"])
    # at the start the x0 column (0.01) is the one pruned; it must have come back, x1 gone instead
    assert counts["spliced"] >= 2 and counts["pruned"] >= 4
    assert keep[:, 0].all() and not keep[:, 1].any()
    assert float((pruned(X).argmax(1) == y).float().mean()) > 0.9


def test_without_recovery_the_pruned_weight_stays_pruned():
    model, X, y = _task()
    _, manifest = certprune.prune(model, method="dynamic-surgery", amount=0.5, data=(X, y), surgery_epochs=20,
                                  lr=0.05, batch_size=32, surgery_gamma=0.0, surgery_recover=False)
    keep = decode_mask(manifest.steps[0].masks["0"])
    assert manifest.config["learned"]["surgery"]["0"]["spliced"] == 0 and not keep[:, 0].any() and keep[:, 1].all()


def test_final_masks_remove_the_exact_count_per_layer():
    from conftest import random_mlp
    g = torch.Generator().manual_seed(1)
    X = torch.rand(128, 10, generator=g)
    y = X[:, :3].argmax(1)
    pruned, manifest = certprune.prune(random_mlp([10, 12, 3]), method="dynamic-surgery", amount=0.6, data=(X, y),
                                       surgery_epochs=3, lr=0.01)
    for name, n in (("0", 120), ("2", 36)):
        assert int((~decode_mask(manifest.steps[0].masks[name])).sum()) == round(0.6 * n)
    assert int((pruned[0].weight == 0).sum()) >= round(0.6 * 120)
