"""SCL (sparse connectivity learning): identity-STE gradients, per-feature normalisation,
learned sparsity driven by the kept-count regulariser, structured neuron masks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import certprune
from certprune.errors import ConfigError
from certprune.pruning.learners import scl
from certprune.pruning.learners.ste import ste_step
from conftest import random_mlp


def _blobs(n=256, d=8, k=3, seed=0):
    """Separable classes: label = argmax of the first k features (the rest is noise)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g)
    return X, X[:, :k].argmax(1)


def test_ste_step_is_binary_forward_and_identity_backward():
    m = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
    out = ste_step(m)
    assert out.tolist() == [0.0, 0.0, 1.0]
    (out * torch.tensor([2.0, 3.0, 4.0])).sum().backward()
    assert m.grad.tolist() == [2.0, 3.0, 4.0]


def test_mask_gradient_is_dense_gradient_times_weight_even_for_pruned_weights():
    model = random_mlp([6, 5, 3], seed=1)
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    logits = scl.attach(model, "unstructured", 1.0)
    with torch.no_grad():  # prune some connections: negative logits
        logits["0"][:, :3] = -0.5
    F.cross_entropy(model(X), y).backward()
    w = model[0].parametrizations.weight.original.detach()
    gate = (logits["0"] > 0).float()
    dense = nn.Linear(6, 5)
    with torch.no_grad():
        dense.weight.copy_(w * gate)
        dense.bias.copy_(model[0].bias)
    ref = nn.Sequential(dense, nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        ref[2].weight.copy_(model[2].weight)
        ref[2].bias.copy_(model[2].bias)
    F.cross_entropy(ref(X), y).backward()
    assert torch.allclose(logits["0"].grad, dense.weight.grad * w, atol=1e-6)
    assert logits["0"].grad[:, :3].abs().sum() > 0  # pruned entries still get a gradient
    assert torch.allclose(model[0].parametrizations.weight.original.grad, dense.weight.grad * gate, atol=1e-6)


def test_per_feature_normalisation_gives_unit_rms_rows():
    g = torch.tensor([[1.0, -1.0, 2.0, 0.0], [100.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    n = scl.normalise_per_feature(g)
    assert torch.allclose(n[:2].pow(2).mean(1), torch.ones(2))
    assert torch.allclose(n[0] / n[0, 0], g[0] / g[0, 0]) and torch.equal(n[2], g[2])


def test_regulariser_drives_sparsity_up_and_sparsity_is_learned():
    X, y = _blobs()
    model = random_mlp([8, 16, 3], seed=2)
    shares = []
    for weight in (0.0, 0.5, 2.0):
        pruned, manifest = certprune.prune(model, method="scl", data=(X, y), scl_weight=weight, scl_epochs=8,
                                           scl_mask_lr=0.01, lr=0.01, batch_size=32)
        zeros = sum(int((p == 0).sum()) for n, p in pruned.named_parameters() if n.endswith("weight"))
        total = sum(p.numel() for n, p in pruned.named_parameters() if n.endswith("weight"))
        assert manifest.amount == pytest.approx(zeros / total, abs=0.02)
        shares.append(manifest.amount)
    assert shares[0] < 0.2 and shares[0] < shares[1] < shares[2] and shares[2] > 0.5


def test_amount_caps_the_learned_sparsity():
    X, y = _blobs()
    _, free = certprune.prune(random_mlp([8, 16, 3]), method="scl", data=(X, y), scl_weight=2.0, scl_epochs=8,
                              scl_mask_lr=0.01, batch_size=32)
    _, capped = certprune.prune(random_mlp([8, 16, 3]), method="scl", amount=0.3, data=(X, y), scl_weight=2.0,
                                scl_epochs=8, scl_mask_lr=0.01, batch_size=32)
    assert free.amount > 0.5 and 0.2 < capped.amount <= round(0.3 * 176) / 176 + 1e-12  # 8*16 + 16*3 weights


def test_structured_scl_removes_whole_neurons_and_matches_the_masked_network():
    X, y = _blobs()
    model = random_mlp([8, 24, 16, 3], seed=3)
    pruned, manifest = certprune.prune(model, method="scl", granularity="neuron", data=(X, y), scl_weight=1.0,
                                       scl_epochs=10, scl_mask_lr=0.02, lr=0.01, batch_size=32)
    removed = manifest.removed_units()
    assert removed > 0 and pruned[0].out_features + pruned[2].out_features == 40 - removed
    # the learned network itself: retrain with the same seed, keep it masked, compare the functions
    work = random_mlp([8, 24, 16, 3], seed=3)
    from certprune.pruning.api import make_options
    learned = scl.learn(work, X, y, None, "neuron", scl.Config(10, 1.0, 1.0, 0.02), make_options({"lr": 0.01, "batch_size": 32}), 0)
    assert learned.removal == {k: v["removed"] for k, v in manifest.steps[0].units.items()}
    with torch.no_grad():
        assert torch.allclose(work(X), pruned(X), atol=1e-5)
    acc = float((pruned(X).argmax(1) == y).float().mean())
    assert acc > 0.8


def test_bad_scl_options_and_granularity_are_rejected():
    X, y = _blobs(32)
    with pytest.raises(ConfigError, match="granularity"):
        certprune.prune(random_mlp([8, 4, 3]), method="scl", granularity="nm", data=(X, y))
    with pytest.raises(ConfigError, match="needs data"):
        certprune.prune(random_mlp([8, 4, 3]), method="scl")
    with pytest.raises(ConfigError, match="unknown prune option"):
        certprune.prune(random_mlp([8, 4, 3]), method="scl", data=(X, y), scl_wieght=1.0)
    with pytest.raises(ConfigError, match="steps"):
        certprune.prune(random_mlp([8, 4, 3]), method="dynamic-surgery", amount=0.5, data=(X, y), steps=3)


def test_network_in_network_out_and_the_manifest_replays_the_learned_pattern():
    from certprune.pruning import apply_manifest
    from conftest import REPO
    net = certprune.load_model(REPO / "certprune" / "models" / "digits_mlp.onnx")
    g = torch.Generator().manual_seed(0)
    X = torch.rand(128, *net.info.input_shape, generator=g)
    y = torch.randint(0, 10, (128,), generator=g)
    pruned, manifest = certprune.prune(net, method="scl", data=(X, y), scl_weight=1.0, scl_epochs=3, scl_mask_lr=0.02,
                                       batch_size=16)
    assert hasattr(pruned, "info") and tuple(pruned.info.input_shape) == tuple(net.info.input_shape)
    replay = apply_manifest(net, manifest)
    zeros = lambda m: [(p == 0) for n, p in m.named_parameters() if n.endswith("weight")]  # noqa: E731
    assert manifest.amount > 0.05
    assert all(torch.equal(a, a & b) for a, b in zip(zeros(replay), zeros(pruned)))  # replayed zeros stay zero
