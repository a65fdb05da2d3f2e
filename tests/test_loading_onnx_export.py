"""save_onnx: exported graphs run in onnxruntime and agree with the torch module."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from certprune.errors import ShapeMismatchError
from certprune.io.onnx_export import save_onnx
from certprune.network import as_network
from tests.conftest import random_mlp


def _ort(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


def _convnet() -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Flatten(), nn.Linear(4 * 4 * 4, 10), nn.ReLU(), nn.Linear(10, 3))
    with torch.no_grad():  # non-trivial BatchNorm statistics so folding is exercised
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.5, 2)
        m[1].weight.uniform_(0.5, 1.5)
    return m.eval()


@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_export_matches_onnxruntime_with_dynamic_batch(tmp_path, batch):
    m = random_mlp([5, 20, 10, 3], seed=1)
    path = save_onnx(m, tmp_path / "mlp.onnx")
    x = np.random.default_rng(0).normal(size=(batch, 5)).astype(np.float32)
    np.testing.assert_allclose(_ort(path, x), m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    graph_in = onnx.load(str(path)).graph.input[0]
    assert graph_in.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_convnet_with_batchnorm_export_matches(tmp_path):
    m = _convnet()
    path = save_onnx(m, tmp_path / "conv.onnx", input_shape=(1, 8, 8))
    x = np.random.default_rng(1).normal(size=(5, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_ort(path, x), m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    assert m[1].training is False  # eval state preserved


def test_network_export_uses_its_input_shape_and_metadata(tmp_path):
    net = as_network(random_mlp([3, 4, 2]))
    path = save_onnx(net, tmp_path / "n.onnx", metadata={"pruning": {"removed": [1, 2]}, "note": "x"})
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props == {"pruning": '{"removed": [1, 2]}', "note": "x"}
    x = np.ones((2, 3), dtype=np.float32)
    np.testing.assert_allclose(_ort(path, x), net.run_float32(x), atol=1e-5)


def test_double_model_is_not_mutated(tmp_path):
    m = random_mlp([3, 4, 2]).double()
    save_onnx(m, tmp_path / "d.onnx")
    assert next(m.parameters()).dtype == torch.float64


def test_unknown_input_shape_and_wrong_shape_raise(tmp_path):
    conv = _convnet()
    with pytest.raises(ShapeMismatchError, match="input shape"):
        save_onnx(conv, tmp_path / "x.onnx")
    with pytest.raises(ShapeMismatchError, match=r"\(1, 3, 3\)"):
        save_onnx(conv, tmp_path / "x.onnx", input_shape=(1, 3, 3))


def test_loaded_acas_net_reexports_with_dynamic_batch(shared_data, tmp_path):
    from certprune.network import load_model
    net = load_model(shared_data / "vnncomp" / "acasxu" / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx")
    path = save_onnx(net, tmp_path / "acas.onnx")  # input shape taken from net.info: (1, 1, 5)
    x = np.random.default_rng(2).uniform(-0.5, 0.5, size=(64, 1, 1, 5)).astype(np.float32)
    np.testing.assert_allclose(_ort(path, x).reshape(64, -1), net.run_float32(x), atol=1e-5)
    again = load_model(path)
    np.testing.assert_allclose(again.run_float32(x), net.run_float32(x), atol=1e-6)
