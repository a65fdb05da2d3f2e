"""verify(): time limits, accepted model forms, config validation, and clear errors on bad input."""
from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch

from certprune.errors import ConfigError, InputRegionError, ShapeMismatchError
from certprune.network import ModelInfo, Network
from certprune.results import Verdict
from certprune.specs import InputRegion, LinearConstraints, Property, RobustnessSpec, box_property
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.attack import falsify, float32_forward
from certprune.verifiers.verify import VerifyConfig, verify
from conftest import random_mlp


@functools.lru_cache(maxsize=None)
def hard_instance(n_in: int = 10):
    """A 3x64 random net and a threshold 0.02 below the strongest attack's minimum: no attack
    finds a violation, and bounds need far more than a few seconds."""
    net = random_mlp([n_in, 64, 64, 64, 2], 7)
    lo, hi = -np.ones(n_in), np.ones(n_in)
    probe = box_property(lo, hi, [[1.0, -1.0]], [-100.0])
    att = falsify(float32_forward(net, (n_in,)), probe, lo, hi, restarts=100, steps=100, samples=50_000)
    return net, box_property(lo, hi, [[1.0, -1.0]], [att.margin - 100.0 - 0.02])


@pytest.mark.parametrize("strategy", ["input", "relu"])
def test_timeout_returns_unknown_within_ten_percent(strategy):
    net, prop = hard_instance()
    verify(net, prop, timeout=0.5, config={"strategy": strategy})  # warm-up (lazy imports)
    t = time.monotonic()
    res = verify(net, prop, timeout=3.0, config={"strategy": strategy})
    elapsed = time.monotonic() - t
    assert res.verdict is Verdict.UNKNOWN
    assert elapsed <= 3.3, elapsed
    assert res.stats["domains"] > 0 and res.stats["reason"] == "timeout"
    for key in ("time_falsify", "time_bound", "time_bab", "max_depth", "strategy"):
        assert key in res.stats


def test_model_forms_agree():
    seq = random_mlp([3, 8, 8, 2], 4)
    net = Network(seq, ModelInfo((3,), 2))
    aff = AffineReluNet.from_module(seq, (3,))
    prop = box_property(-0.5 * np.ones(3), 0.5 * np.ones(3), [[1.0, -1.0]], [-10.0])
    verdicts = {verify(m, prop, timeout=20).verdict for m in (seq, net, aff)}
    assert verdicts == {Verdict.CERTIFIED}
    weak = box_property(-0.5 * np.ones(3), 0.5 * np.ones(3), [[1.0, -1.0]], [10.0])
    for m in (seq, net, aff):
        res = verify(m, weak, timeout=20)
        assert res.verdict is Verdict.FALSIFIED
        assert res.counterexample.dtype == np.float32 and res.counterexample.shape == (3,)


def test_robustness_property_multi_disjunct():
    net = random_mlp([4, 16, 16, 3], 11)
    x0 = np.array([0.2, -0.1, 0.3, 0.0])
    label = int(net(torch.as_tensor(x0[None], dtype=torch.float32)).argmax())
    small = RobustnessSpec(x0, 0.001, label, clip_min=-1, clip_max=1).to_property(3)
    big = RobustnessSpec(x0, 1.0, label, clip_min=-1, clip_max=1).to_property(3)
    assert verify(net, small, timeout=20).verdict is Verdict.CERTIFIED
    res = verify(net, big, timeout=20)
    assert res.verdict is Verdict.FALSIFIED
    assert int(np.argmax(res.counterexample_output)) != label or np.sum(
        res.counterexample_output == res.counterexample_output[label]) > 1


def test_non_input_shape_model():
    """A conv net with image input: property region shaped like the image."""
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(2 * 4 * 4, 2)).eval()
    net = Network(conv, ModelInfo((1, 6, 6), 2))
    x0 = np.full((1, 6, 6), 0.5)
    prop = Property(InputRegion(x0 - 0.01, x0 + 0.01), (LinearConstraints([[1.0, -1.0]], [-50.0]),))
    assert verify(net, prop, timeout=20).verdict is Verdict.CERTIFIED
    loose = Property(InputRegion(x0 - 0.01, x0 + 0.01), (LinearConstraints([[1.0, -1.0]], [50.0]),))
    res = verify(net, loose, timeout=20)
    assert res.verdict is Verdict.FALSIFIED and res.counterexample.shape == (1, 6, 6)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown verify config key.*frobnicate"):
        VerifyConfig.from_dict({"frobnicate": 1})
    with pytest.raises(ConfigError, match="strategy"):
        VerifyConfig(strategy="magic")
    with pytest.raises(ConfigError, match="batch"):
        VerifyConfig(batch=0)
    with pytest.raises(dataclasses_frozen_error()):
        VerifyConfig().batch = 3  # type: ignore[misc]
    net = random_mlp([2, 4, 2], 0)
    prop = box_property([0, 0], [1, 1], [[1.0, -1.0]], [0.0])
    with pytest.raises(ConfigError, match="unknown verify config key"):
        verify(net, prop, config={"nope": True})
    with pytest.raises(ConfigError, match="timeout"):
        verify(net, prop, timeout=-1)


def dataclasses_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


def test_shape_errors_name_the_problem():
    net = random_mlp([3, 4, 2], 0)
    wrong_out = box_property(np.zeros(3), np.ones(3), [[1.0, -1.0, 0.0]], [0.0])
    with pytest.raises(ShapeMismatchError, match="3 outputs but the model has 2"):
        verify(net, wrong_out)
    wrong_in = box_property(np.zeros(5), np.ones(5), [[1.0, -1.0]], [0.0])
    with pytest.raises(ShapeMismatchError, match="5 inputs"):
        verify(net, wrong_in)


def test_empty_boxes_are_rejected():
    with pytest.raises(InputRegionError, match="infeasible input box"):
        box_property([0, 1], [1, 0], [[1.0, -1.0]], [0.0])
    with pytest.raises(InputRegionError, match="no integer point"):
        InputRegion([0.2, 0], [0.8, 1], integer_mask=[True, False])


def test_point_box_and_linear_network():
    """Degenerate cases: a zero-width box, and a network with no ReLU at all (pure LP)."""
    net = random_mlp([3, 4, 2], 1)
    x = np.array([0.1, 0.2, 0.3])
    y = net(torch.as_tensor(x[None], dtype=torch.float32)).detach().double().numpy()[0]
    gap = y[0] - y[1]
    assert verify(net, box_property(x, x, [[1.0, -1.0]], [gap - 0.01])).verdict is Verdict.CERTIFIED
    assert verify(net, box_property(x, x, [[1.0, -1.0]], [gap + 0.01])).verdict is Verdict.FALSIFIED
    lin = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    prop = box_property(-np.ones(3), np.ones(3), [[1.0, -1.0], [-1.0, 0.0]], [0.0, -0.2])
    res = verify(lin, prop, timeout=10, config={"attack_restarts": 0, "attack_samples": 0, "attack_corners": 0})
    assert res.decided
