"""Runtime neuron gating: exactly k neurons per input, the gated function, run-time MACs, and the
verification story (every certifying path refuses a gated model clearly)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certprune
from certprune.errors import UnsupportedModelError
from certprune.pruning.learners import gating
from conftest import random_mlp


def _data(n=512, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g)
    return X, X[:, :3].argmax(1)


@pytest.fixture(scope="module")
def gated():
    X, y = _data()
    model, manifest = certprune.prune(random_mlp([10, 16, 16, 3], seed=1), method="gating", amount=0.75,
                                      granularity="neuron", data=(X, y), gating_epochs=8, lr=0.01, batch_size=32)
    return model, manifest, X, y


def test_exactly_k_neurons_per_input_and_the_gated_function(gated):
    model, manifest, X, y = gated
    blocks = [m for m in model if isinstance(m, gating.GatedBlock)]
    assert [b.k for b in blocks] == [4, 4]
    with torch.no_grad():
        h = X
        for m in model:
            if isinstance(m, gating.GatedBlock):
                s = torch.relu(m.up(m.down(h)))
                g = s * (s >= s.topk(m.k, dim=1).values[:, -1:]).float()
                assert ((m.gate(h) > 0).sum(1) <= m.k).all()
                assert torch.allclose(m.gate(h), g)
                h = torch.relu(m.linear(h)) * g
            else:
                h = m(h)
        assert torch.allclose(model(X), h)
    assert float((model(X).argmax(1) == y).float().mean()) > 0.8


def test_runtime_macs_count_only_the_computed_neurons(gated):
    model, manifest, _, _ = gated
    rank = 8
    expected = (10 * rank + rank * 16 + 4 * 10) + (4 * rank + rank * 16 + 4 * 4) + 3 * 4
    assert gating.runtime_macs(model) == expected == manifest.config["learned"]["runtime_macs"]


def test_every_certifying_path_refuses_a_gated_model(gated):
    model, _, X, _ = gated
    lo, hi = X[:2] - 0.01, X[:2] + 0.01
    for engine in ("native", "auto"):
        with pytest.raises(UnsupportedModelError, match="GatedBlock"):
            certprune.compute_bounds(model, lo, hi, method="crown", engine=engine, input_shape=(10,))
    with pytest.raises(UnsupportedModelError, match="GatedBlock"):
        certprune.verify(model, certprune.RobustnessSpec(X[0].numpy(), 0.01, 0, 0.0, 1.0).to_property(3), timeout=5)


def test_export_refuses_a_gated_model(gated, tmp_path):
    from certprune.pruning.export import save_pruned
    model, manifest, _, _ = gated
    with pytest.raises(UnsupportedModelError, match="GatedBlock"):
        save_pruned(model, manifest, tmp_path / "gated.onnx")


def test_gating_needs_a_relu_after_each_hidden_linear():
    with pytest.raises(UnsupportedModelError, match="ReLU"):
        gating.attach(nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)), 0.5, 2)
