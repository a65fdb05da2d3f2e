"""AffineReluNet conversion: equivalence with the torch module, clear errors otherwise."""
import pytest
import torch
from torch import nn

from certprune.errors import ModelLoadError, UnsupportedModelError
from certprune.network import ModelInfo, Network, as_network
from certprune.verifiers.affine import AffineReluNet
from tests.conftest import random_mlp


def _bn(c):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return bn


@pytest.mark.parametrize("relu_last", [False, True])
def test_convnet_with_batchnorm_is_folded_exactly(relu_last):
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 3, 3, stride=2, padding=1), _bn(3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(),
              nn.Flatten(), nn.Linear(4 * 4 * 4, 5)]
    m = nn.Sequential(*(layers + ([nn.ReLU()] if relu_last else []))).eval()
    net = AffineReluNet.from_module(m, (1, 12, 12))
    x = torch.rand(16, 1, 12, 12)
    with torch.no_grad():
        ref = m.double()(x.double())
    assert torch.allclose(net.forward(x), ref.reshape(16, -1), atol=1e-10)
    assert net.relu_sizes == [3 * 6 * 6, 4 * 4 * 4] + ([5] if relu_last else [])


def test_mlp_preactivations_match():
    m = random_mlp([4, 6, 5, 2], seed=3)
    net = AffineReluNet.from_module(m, (4,))
    x = torch.randn(7, 4)
    y, pre = net.forward(x, return_preactivations=True)
    with torch.no_grad():
        assert torch.allclose(pre[0], m[0].double()(x.double()))
        assert torch.allclose(y, m.double()(x.double()))


def test_unsupported_layers_are_all_listed():
    m = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3), nn.Sigmoid())
    with pytest.raises(UnsupportedModelError, match="Sigmoid, Tanh"):
        AffineReluNet.from_module(m, (3,))


def test_fake_affine_module_is_detected():
    class Square(nn.Module):
        is_affine = True

        def forward(self, x):
            return x * x

    with pytest.raises(UnsupportedModelError, match="not affine"):
        AffineReluNet.from_module(nn.Sequential(nn.Linear(2, 2), Square()), (2,))


def test_network_rejects_nan_weights():
    m = random_mlp([2, 3, 1])
    with torch.no_grad():
        m[0].weight[0, 0] = float("nan")
    with pytest.raises(ModelLoadError, match="0.weight"):
        Network(m, ModelInfo((2,), 1))


def test_as_network_infers_shape_and_runs_float32():
    net = as_network(random_mlp([3, 4, 2]))
    assert net.info.input_shape == (3,) and net.info.num_outputs == 2
    assert net.run_float32(torch.zeros(3).numpy()).shape == (1, 2)
