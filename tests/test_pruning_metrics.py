"""The metrics table: counts by hand, compression/speedup, and CROWN certification soundness."""
from __future__ import annotations

import torch
from torch import nn

import certprune
from certprune.pruning.metrics import crown_certified, mac_counts, pruning_metrics
from conftest import random_mlp

COLUMNS = {"model", "params", "nonzeros", "compression", "macs", "nonzero_macs", "speedup", "latency_ms",
           "clean_acc", "unstable_per_input", "crown_cert_acc", "crown_s_per_input"}


def test_macs_by_hand():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 5))
    with torch.no_grad():
        conv[0].weight[0].zero_()
    dense, nonzero = mac_counts(conv, (1, 6, 6))
    assert dense == 2 * 9 * 16 + 32 * 5 and nonzero == 9 * 16 + 32 * 5


def test_metrics_table_for_dense_and_pruned_models():
    torch.manual_seed(0)
    model = random_mlp([10, 16, 16, 3])
    X, y = torch.rand(60, 10), torch.randint(0, 3, (60,))
    structured, _ = certprune.prune(model, method="magnitude", amount=0.5, granularity="neuron")
    masked, _ = certprune.prune(model, method="magnitude", amount=0.5)
    table = pruning_metrics({"dense": model, "neuron": structured, "masked": masked}, (X, y), 0.01, verify_samples=20)
    assert COLUMNS <= set(table.columns) and list(table.model) == ["dense", "neuron", "masked"]
    dense, neuron, mask = (table.iloc[i] for i in range(3))
    assert dense.compression == 1.0 and dense.speedup == 1.0 and dense.params == 10 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3
    assert neuron.params == 10 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3 and neuron.params == neuron.nonzeros
    assert mask.params == dense.params and mask.nonzeros < dense.params and mask.speedup > 1.9
    assert 0 <= mask.crown_cert_acc <= mask.clean_acc + 1e-9
    alone = pruning_metrics({"masked": masked}, (X, y), 0.01, reference=model, verify_samples=20).iloc[0]
    assert list(alone.index) == list(mask.index) and alone.compression == mask.compression > 1.0
    assert alone.speedup == mask.speedup and alone.crown_cert_acc == mask.crown_cert_acc  # the reference as a module


def test_crown_certified_inputs_survive_sampling():
    torch.manual_seed(1)
    model = random_mlp([4, 12, 12, 3], seed=1)
    X = torch.rand(40, 4)
    with torch.no_grad():
        y = model(X).argmax(1)
    cert, unstable = crown_certified(model, X, y, 0.02)
    assert cert.any() and (unstable >= 0).all()
    for x, label in zip(X[torch.from_numpy(cert)], y[torch.from_numpy(cert)]):
        pts = (x + (torch.rand(300, 4) * 2 - 1) * 0.02).clamp(0, 1)
        with torch.no_grad():
            assert (model(pts).argmax(1) == label).all()
