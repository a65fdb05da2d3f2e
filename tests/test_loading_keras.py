"""Keras HDF5 loader: all 25 Fairify models equal a plain numpy forward pass; clear errors."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from certprune.errors import ModelLoadError, UnsupportedModelError
from certprune.network import load_model
from certprune.verifiers.affine import AffineReluNet


def _numpy_forward(path, x: np.ndarray) -> np.ndarray:
    """Reference: Keras semantics (x @ kernel + bias, activation per layer) in float64 numpy."""
    acts = {"relu": lambda z: np.maximum(z, 0), "linear": lambda z: z, "sigmoid": lambda z: 1 / (1 + np.exp(-z))}
    with h5py.File(path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        h = x.astype(np.float64)
        for lay in layers:
            g = f["model_weights"][lay["config"]["name"]]
            kernel, bias = (np.asarray(g[n]) for n in g.attrs["weight_names"])
            h = acts[lay["config"]["activation"]](h @ kernel + bias)
    return h


def test_all_25_fairify_models_match_numpy(shared_data):
    paths = sorted((shared_data / "fairness" / "fairify_models").glob("*.h5"))
    assert len(paths) == 25
    rng = np.random.default_rng(0)
    for path in paths:
        net = load_model(path)
        assert net.info.output_activation == "sigmoid" and net.info.num_outputs == 1
        assert net.info.source_format == "keras" and len(net.info.sha256) == 64
        x = rng.integers(0, 10, size=(200, *net.info.input_shape)).astype(np.float32)
        logits = net.run_float32(x)
        probs = torch.sigmoid(torch.from_numpy(logits)).numpy()
        np.testing.assert_allclose(probs, _numpy_forward(path, x), atol=1e-5)
        assert isinstance(net.module[-1], nn.Linear)  # sigmoid stripped
        AffineReluNet.from_module(net)
    assert net.info.input_shape == (20,)  # GC-5: German credit, 20 features


def _write_h5(path, layers: list[dict], weights: dict[str, list[np.ndarray]]):
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": layers}})
        mw = f.create_group("model_weights")
        for name, arrays in weights.items():
            g = mw.create_group(name)
            names = [f"{name}/w{i}:0" for i in range(len(arrays))]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, a in zip(names, arrays):
                g.create_dataset(n, data=a)
    return path


def _dense(name, units, act, **extra):
    return {"class_name": "Dense", "config": {"name": name, "units": units, "activation": act, **extra}}


def test_softmax_activation_layers_and_dropout(tmp_path):
    rng = np.random.default_rng(1)
    w1, b1, w2, b2 = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=(6, 3)), rng.normal(size=3)
    layers = [{"class_name": "InputLayer", "config": {"name": "in", "batch_input_shape": [None, 4]}},
              _dense("d1", 6, "linear"), {"class_name": "Activation", "config": {"name": "a", "activation": "relu"}},
              {"class_name": "Dropout", "config": {"name": "drop", "rate": 0.5}}, _dense("d2", 3, "softmax")]
    path = _write_h5(tmp_path / "m.h5", layers, {"d1": [w1, b1], "d2": [w2, b2]})
    net = load_model(path)
    assert net.info.output_activation == "softmax" and net.info.input_shape == (4,)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    np.testing.assert_allclose(net.run_float32(x), np.maximum(x @ w1 + b1, 0) @ w2 + b2, atol=1e-5)


def test_functional_chain_model(tmp_path):
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=(3, 2)), rng.normal(size=2)
    layers = [{"class_name": "InputLayer", "name": "inp", "config": {"name": "inp", "batch_input_shape": [None, 3]},
               "inbound_nodes": []},
              {**_dense("d", 2, "sigmoid"), "name": "d", "inbound_nodes": [[["inp", 0, 0, {}]]]}]
    path = _write_h5(tmp_path / "f.h5", layers, {"d": [w, b]})
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": {"layers": layers}})
    net = load_model(path)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(net.run_float32(x), x @ w + b, atol=1e-5)
    layers[1]["inbound_nodes"] = [[["elsewhere", 0, 0, {}]]]
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": {"layers": layers}})
    with pytest.raises(UnsupportedModelError, match="not a chain"):
        load_model(path)


def test_unsupported_layers_are_all_listed(tmp_path):
    layers = [{"class_name": "Conv2D", "config": {"name": "c"}}, {"class_name": "LSTM", "config": {"name": "l"}},
              _dense("d", 2, "elu")]
    path = _write_h5(tmp_path / "bad.h5", layers, {})
    with pytest.raises(UnsupportedModelError, match=r"bad.h5: unsupported Keras layers: Conv2D, Dense\(activation='elu'\), LSTM"):
        load_model(path)


def test_corrupt_missing_weights_and_nan(tmp_path):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"this is not hdf5")
    with pytest.raises(ModelLoadError, match="corrupt.h5 is not a readable HDF5 file"):
        load_model(bad)
    path = _write_h5(tmp_path / "now.h5", [_dense("d", 2, "relu")], {})
    with pytest.raises(ModelLoadError, match="no weights stored for layer 'd'"):
        load_model(path)
    w = np.ones((3, 2))
    w[0, 0] = np.nan
    path = _write_h5(tmp_path / "nan.h5", [_dense("d", 2, "linear")], {"d": [w, np.zeros(2)]})
    with pytest.raises(ModelLoadError, match="NaN"):
        load_model(path)
    path = _write_h5(tmp_path / "odd.h5", [{"config": {"name": "no class name"}}], {})
    with pytest.raises(ModelLoadError, match="malformed Keras model"):
        load_model(path)
    with h5py.File(tmp_path / "weights_only.h5", "w") as f:
        f.create_group("d")
    with pytest.raises(ModelLoadError, match="no model_config"):
        load_model(tmp_path / "weights_only.h5")
