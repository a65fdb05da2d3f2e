"""Physical removal of neurons and channels equals the masked model; manifests replay; export."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import certprune
from certprune.errors import ConfigError
from certprune.pruning import apply_manifest, remove_units
from certprune.pruning.manifest import Manifest
from certprune.pruning.structural import masked_copy
from conftest import random_mlp


def convnet_bn(seed: int = 0) -> nn.Sequential:
    """Conv-BN-ReLU, Conv-BN-ReLU, Flatten, Linear-BN1d-ReLU, Linear with non-trivial BN stats."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Conv2d(6, 5, 3, stride=2), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(),
                        nn.Linear(5 * 3 * 3, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 4))
    for m in net:
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.3, 0.3), m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_mlp_removal_equals_masked_model():
    model = random_mlp([10, 9, 8, 3])
    removal = {"0": [1, 4, 8], "2": [0, 7]}
    x = torch.randn(64, 10)
    with torch.no_grad():
        ref = masked_copy(model, removal)(x)
        pruned = remove_units(random_mlp([10, 9, 8, 3]), removal, x[:1])
        out = pruned(x)
    assert pruned[0].weight.shape == (6, 10) and pruned[2].weight.shape == (6, 6) and pruned[4].weight.shape == (3, 6)
    assert torch.allclose(out, ref, atol=1e-6)


def test_convnet_with_batchnorm_removal_equals_masked_model():
    removal = {"0": [0, 5], "3": [2], "7": [1, 3, 6]}
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        ref = masked_copy(convnet_bn(), removal)(x)
        pruned = remove_units(convnet_bn(), removal, x[:1])
        out = pruned(x)
    assert pruned[0].out_channels == 4 and pruned[1].num_features == 4 and pruned[3].in_channels == 4
    assert pruned[3].out_channels == 4 and pruned[4].num_features == 4
    assert pruned[7].in_features == 4 * 9 and pruned[7].out_features == 4 and pruned[8].num_features == 4
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("method", ["random", "magnitude", "l2", "taylor", "obd", "snip", "slimming", "stability"])
def test_structured_prune_of_convnet_shrinks_and_replays(method):
    X, y = torch.rand(24, 1, 8, 8), torch.randint(0, 4, (24,))
    model = convnet_bn()
    pruned, manifest = certprune.prune(model, method=method, amount=0.4, granularity="structured", data=(X, y),
                                       epsilon=0.01, hvp_samples=4)
    n_before = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in pruned.parameters()) < n_before
    replay = apply_manifest(model, Manifest.from_json(manifest.to_json()))
    with torch.no_grad():
        assert torch.equal(replay(X), pruned(X))
    assert manifest.removed_units() == round(0.4 * (6 + 5 + 7))


def test_channel_granularity_only_touches_convolutions():
    X, y = torch.rand(8, 1, 8, 8), torch.randint(0, 4, (8,))
    pruned, manifest = certprune.prune(convnet_bn(), method="magnitude", amount=0.5, granularity="channel", data=(X, y))
    assert set(manifest.steps[0].units) == {"0", "3"} and pruned[7].out_features == 7


def test_removing_a_whole_layer_is_rejected():
    with pytest.raises(ConfigError, match="zero width"):
        remove_units(random_mlp([4, 3, 2]), {"0": [0, 1, 2]}, torch.zeros(1, 4))


def test_global_threshold_that_empties_a_layer_is_rejected():
    model = random_mlp([6, 5, 5, 2])
    with torch.no_grad():
        model[2].weight.mul_(1e-3)  # the whole second hidden layer is tiny
    with pytest.raises(ConfigError, match="zero width"):
        certprune.prune(model, method="magnitude", amount=0.6, granularity="neuron", scope="global")


def test_bad_unit_indices_are_rejected():
    with pytest.raises(ConfigError, match="out of range"):
        remove_units(random_mlp([4, 3, 2]), {"0": [5]}, torch.zeros(1, 4))
    with pytest.raises(ConfigError, match="no prunable hidden layer"):
        remove_units(random_mlp([4, 3, 2]), {"2": [0]}, torch.zeros(1, 4))


def test_export_is_smaller_and_carries_the_manifest(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from certprune.pruning import save_pruned
    X, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    model = convnet_bn()
    pruned, manifest = certprune.prune(model, method="magnitude", amount=0.5, granularity="structured", data=(X, y))
    dense_path, _ = save_pruned(model, Manifest("none", "structured", 0.0, [1, 8, 8]), tmp_path / "dense.onnx")
    onnx_path, json_path = save_pruned(pruned, manifest, tmp_path / "pruned.onnx")
    assert json_path.name == "pruned.manifest.json" and Manifest.load(json_path).steps[0].units == manifest.steps[0].units
    assert _onnx_weights(onnx_path) < 0.6 * _onnx_weights(dense_path)
    sess = ort.InferenceSession(str(onnx_path))
    out = sess.run(None, {sess.get_inputs()[0].name: X.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, pruned(X).numpy(), atol=1e-5)


def _onnx_weights(path) -> int:
    """Number of stored numbers in an ONNX file's initializers."""
    import onnx
    return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
