"""Bad input to the bound engine raises specific certprune errors whose message names the problem."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from certprune.errors import ConfigError, InputRegionError, ModelLoadError, ShapeMismatchError, UnsupportedModelError
from certprune.network import as_network
from certprune.verifiers.bounds import compute_bounds, neuron_stability
from tests.conftest import random_mlp


@pytest.fixture
def model() -> nn.Sequential:
    return random_mlp([3, 5, 2], seed=0)


@pytest.mark.parametrize("engine", ["native", "lirpa"])
def test_lower_above_upper(model, engine):
    with pytest.raises(InputRegionError, match=r"lower > upper in 1 of 2"):
        compute_bounds(model, [[0.0, 0, 0], [1, 1, 1]], [[1.0, 1, 1], [1, 0.5, 1]], engine=engine)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_in_box(model, bad):
    with pytest.raises(InputRegionError, match="NaN or infinite"):
        compute_bounds(model, [0.0, bad, 0.0], [1.0, 1.0, 1.0])


def test_nan_in_weights_network_raises(model):
    with torch.no_grad():
        model[0].weight[1, 2] = float("nan")
    with pytest.raises(ModelLoadError, match=r"NaN or infinite values in: 0\.weight"):
        as_network(model)
    with pytest.raises(ModelLoadError, match=r"0\.weight"):  # plain modules are checked too
        compute_bounds(model, [0.0] * 3, [1.0] * 3, engine="native")


def test_wrong_input_shape(model):
    with pytest.raises(ShapeMismatchError, match=r"do not fit the model input shape \(3,\)"):
        compute_bounds(model, torch.zeros(2, 4), torch.ones(2, 4))
    with pytest.raises(InputRegionError, match="lower bound shape"):
        compute_bounds(model, torch.zeros(2, 3), torch.ones(3, 3))


def test_wrong_spec_matrix(model):
    with pytest.raises(ShapeMismatchError, match=r"spec matrix C of shape \(1, 3\)"):
        compute_bounds(model, [0.0] * 3, [1.0] * 3, C=torch.ones(1, 3))
    with pytest.raises(InputRegionError, match="spec matrix C contains NaN"):
        compute_bounds(model, [0.0] * 3, [1.0] * 3, C=torch.tensor([[float("nan"), 1.0]]))


def test_unknown_method_engine_mode(model):
    with pytest.raises(ConfigError, match="unknown bound method 'deeppoly'"):
        compute_bounds(model, [0.0] * 3, [1.0] * 3, method="deeppoly")
    with pytest.raises(ConfigError, match="unknown bound engine 'gpu'"):
        neuron_stability(model, [0.0] * 3, [1.0] * 3, engine="gpu")
    with pytest.raises(ConfigError, match="unknown bound mode 'sideways'"):
        compute_bounds(model, [0.0] * 3, [1.0] * 3, mode="sideways")
    with pytest.raises(ConfigError, match="intersect_ibp is an option of the native engine"):
        compute_bounds(model, [0.0] * 3, [1.0] * 3, engine="lirpa", intersect_ibp=True)


def test_native_engine_rejects_non_relu_layers():
    m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    with pytest.raises(UnsupportedModelError, match="unsupported layers: Tanh"):
        compute_bounds(m, [0.0] * 3, [1.0] * 3, engine="native")
