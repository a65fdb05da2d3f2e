"""PyTorch loader: TorchScript, state dict + architecture / sidecar, pickles only when trusted."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from certprune.errors import ConfigError, ModelLoadError
from certprune.io.torch_loader import load_torch, save_torch
from certprune.network import load_model
from certprune.verifiers.affine import AffineReluNet
from tests.conftest import random_mlp

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.* in torch 2.13


def _same(net, model, shape):
    x = torch.randn(8, *shape)
    np.testing.assert_allclose(net(x).detach().numpy(), model(x).detach().numpy(), atol=1e-6)


def _convnet():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                      nn.Linear(3 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        m[1].running_mean.uniform_(-1, 1)
    return m.eval()


@pytest.mark.parametrize("make", ["script", "trace"])
def test_torchscript_sequential_is_rebuilt_as_plain_sequential(tmp_path, make):
    model = _convnet()
    ts = torch.jit.script(model) if make == "script" else torch.jit.trace(model, torch.zeros(1, 1, 8, 8))
    path = tmp_path / "m.pt"
    torch.jit.save(ts, str(path))
    net = load_model(path, input_shape=(1, 8, 8))
    assert net.info.num_outputs == 2
    _same(net, model, (1, 8, 8))
    if make == "script":  # scripting keeps layer hyper-parameters, so a plain Sequential is rebuilt
        assert type(net.module) is nn.Sequential
        AffineReluNet.from_module(net)


def test_state_dict_with_architecture_string(tmp_path):
    model = random_mlp([20, 50, 30, 1], seed=3)
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    net = load_model(path, architecture="mlp:20-50-30-1")
    assert net.info.input_shape == (20,) and net.info.num_outputs == 1
    _same(net, model, (20,))
    with pytest.raises(ModelLoadError, match="without an architecture"):
        load_model(path)
    with pytest.raises(ModelLoadError, match="does not fit the architecture"):
        load_model(path, architecture="mlp:20-40-30-1")
    with pytest.raises(ConfigError, match="unknown architecture 'cnn:3'"):
        load_model(path, architecture="cnn:3")
    bundled = tmp_path / "bundle.pt"  # a checkpoint dict that names its own architecture
    torch.save({"state_dict": model.state_dict(), "architecture": "mlp:20-50-30-1"}, bundled)
    _same(load_model(bundled), model, (20,))


def test_save_torch_sidecar_round_trip_with_pruning_masks(tmp_path):
    model = _convnet()
    prune.l1_unstructured(model[4], "weight", amount=0.5)  # weight_orig + weight_mask in the state dict
    path = save_torch(model, tmp_path / "conv.pt", input_shape=(1, 8, 8))
    assert (tmp_path / "conv.pt.arch.json").is_file()
    net = load_torch(path)
    assert net.info.input_shape == (1, 8, 8)
    _same(net, model, (1, 8, 8))
    assert (net.module[4].weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_pickle_needs_trust(tmp_path):
    model = random_mlp([3, 4, 2])
    path = tmp_path / "full.pt"
    torch.save(model, path)
    with pytest.raises(ModelLoadError, match="full Python pickle.*trust_pickle=True"):
        load_model(path)
    net = load_model(path, trust_pickle=True)
    _same(net, model, (3,))


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00\x01 definitely not torch")
    with pytest.raises(ModelLoadError, match="junk.pt is not a readable PyTorch file"):
        load_model(path)
