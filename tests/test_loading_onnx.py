"""ONNX loader: equivalence with onnxruntime (ACAS Xu, exported nets, hand-built graphs) and errors."""
from __future__ import annotations

import gzip

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import certprune
from certprune.errors import ModelLoadError, UnsupportedModelError
from certprune.io import onnx_ops
from certprune.io.onnx_export import save_onnx
from certprune.io.onnx_loader import load_onnx
from certprune.network import load_model
from certprune.verifiers.affine import AffineReluNet
from tests.conftest import random_mlp

RNG = np.random.default_rng(0)


def _ort_outputs(path, x: np.ndarray) -> np.ndarray:
    """onnxruntime reference, one sample at a time (ACAS Xu files have a fixed batch of 1)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # starting a thread pool per file is slow
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0].reshape(1, -1) for i in range(len(x))])


def _check_equivalent(path, n: int = 20, scale: float = 1.0) -> certprune.Network:
    net = load_model(path)
    x = (RNG.normal(size=(n, *net.info.input_shape)) * scale).astype(np.float32)
    np.testing.assert_allclose(net.run_float32(x), _ort_outputs(path, x), atol=1e-5, rtol=1e-5)
    return net


def test_all_45_acas_nets_load_match_onnxruntime_and_bound(shared_data):
    paths = sorted((shared_data / "vnncomp" / "acasxu" / "onnx").glob("*.onnx"))
    assert len(paths) == 45
    for path in paths:
        net = _check_equivalent(path, n=20, scale=0.5)
        assert net.info.input_shape == (1, 1, 5) and net.info.num_outputs == 5
        assert isinstance(net.module, nn.Sequential) and len(net.module) == 15
        assert len(net.info.sha256) == 64 and net.info.input_names == ("input",)
    affine = AffineReluNet.from_module(net)
    assert affine.relu_sizes == [50] * 6
    lo, hi = np.full((1, 1, 5), -0.2), np.full((1, 1, 5), 0.2)
    b = certprune.compute_bounds(net, lo, hi, method="crown")
    ys = net.run_float32(RNG.uniform(lo, hi, size=(2000, 1, 1, 5)))
    assert np.all(ys >= b.lower.numpy() - 1e-6) and np.all(ys <= b.upper.numpy() + 1e-6)


def test_exported_torch_models_round_trip(tmp_path):
    mlp = random_mlp([6, 16, 8, 3], seed=2)
    conv = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 2, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 5)).eval()
    with torch.no_grad():
        conv[1].running_mean.uniform_(-1, 1)
        conv[1].running_var.uniform_(0.5, 2)
    for model, shape in ((mlp, (6,)), (conv, (2, 6, 6))):
        path = save_onnx(model, tmp_path / "m.onnx", shape)
        net = _check_equivalent(path)
        assert net.info.input_shape == shape and isinstance(net.module, nn.Sequential)
        x = torch.randn(4, *shape)
        np.testing.assert_allclose(net(x).detach().numpy(), model(x).detach().numpy(), atol=1e-5)
        AffineReluNet.from_module(net)  # chain of affine layers and ReLUs


def test_gz_is_read_transparently(tmp_path):
    path = save_onnx(random_mlp([3, 5, 2]), tmp_path / "m.onnx")
    gz = tmp_path / "m.onnx.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    a, b = load_model(path), load_model(gz)
    x = RNG.normal(size=(3, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.run_float32(x), b.run_float32(x))
    assert b.info.sha256 != a.info.sha256  # hash of the file bytes as stored


def test_external_data_weights(tmp_path):
    model = random_mlp([4, 8, 2])
    proto = onnx.load(str(save_onnx(model, tmp_path / "tmp.onnx")))
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.bin",
                    size_threshold=0)
    assert (tmp_path / "ext.bin").is_file()
    net = _check_equivalent(tmp_path / "ext.onnx")
    (tmp_path / "ext.bin").unlink()
    with pytest.raises(ModelLoadError, match="external weight data"):
        load_model(tmp_path / "ext.onnx")
    assert net.info.num_outputs == 2


def test_export_metadata_is_read_back(tmp_path):
    path = save_onnx(random_mlp([3, 5, 2]), tmp_path / "m.onnx", metadata={"manifest": {"kept": [0, 2]}})
    assert load_model(path).info.extra["metadata"] == {"manifest": '{"kept": [0, 2]}'}


# ---------------------------------------------------------------- hand-built graphs
def _model(nodes, inits: dict, in_shape, out_name="y", opset=13):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(tmp_path, model, name="g.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _f32(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def test_gemm_attributes_and_const_ops(tmp_path):
    nodes = [helper.make_node("Mul", ["x", "s"], ["a"]), helper.make_node("Sub", ["m", "a"], ["b"]),
             helper.make_node("Constant", [], ["d"], value=numpy_helper.from_array(np.float32(3.0))),
             helper.make_node("Div", ["b", "d"], ["c"]),
             helper.make_node("Gemm", ["c", "W", "C"], ["g"], transB=1, alpha=0.5, beta=2.0),
             helper.make_node("Relu", ["g"], ["r"]), helper.make_node("MatMul", ["r", "W2"], ["mm"]),
             helper.make_node("Add", ["B2", "mm"], ["y"])]
    inits = {"s": _f32(4), "m": _f32(1, 4), "W": _f32(6, 4), "C": _f32(6),
             "W2": _f32(6, 2), "B2": _f32(2)}
    net = _check_equivalent(_save(tmp_path, _model(nodes, inits, ["N", 4])))
    assert isinstance(net.module, nn.Sequential)
    assert sum(isinstance(m, nn.Linear) for m in net.module) == 2  # MatMul + Add fused
    AffineReluNet.from_module(net)


def test_shape_arithmetic_reshape_transpose_squeeze(tmp_path):
    """PyTorch's old flatten pattern: Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
             helper.make_node("Shape", ["t"], ["sh"]),
             helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["t", "target"], ["flat"]),
             helper.make_node("Unsqueeze", ["flat", "ax1"], ["u"]),
             helper.make_node("Squeeze", ["u", "ax1"], ["sq"]),
             helper.make_node("Gemm", ["sq", "W"], ["y"])]
    inits = {"zero": np.array(0, dtype=np.int64), "ax0": np.array([0], dtype=np.int64),
             "minus1": np.array([-1], dtype=np.int64), "ax1": np.array([1], dtype=np.int64), "W": _f32(6, 3)}
    net = _check_equivalent(_save(tmp_path, _model(nodes, inits, [1, 1, 2, 3])))
    assert net.info.input_shape == (1, 2, 3)
    assert any(isinstance(m, onnx_ops.Permute) for m in net.module)
    AffineReluNet.from_module(net)


def test_slice_gather_neg_become_affine_selections(tmp_path):
    nodes = [helper.make_node("Slice", ["x", "st", "en", "ax"], ["s"]),  # x[:, 1:5]
             helper.make_node("Neg", ["s"], ["n"]),
             helper.make_node("Gather", ["n", "gi"], ["g"], axis=1),  # columns 3, 0, 0, 2
             helper.make_node("Gemm", ["g", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Slice", ["r", "st0", "en_all"], ["y"])]  # a full slice of all axes: no-op
    inits = {"st": np.array([1], dtype=np.int64), "en": np.array([5], dtype=np.int64),
             "ax": np.array([1], dtype=np.int64), "gi": np.array([3, 0, 0, 2], dtype=np.int64),
             "W": _f32(4, 3), "st0": np.array([0, 0], dtype=np.int64),
             "en_all": np.array([2 ** 62, 2 ** 62], dtype=np.int64)}
    net = _check_equivalent(_save(tmp_path, _model(nodes, inits, ["N", 6])))
    assert isinstance(net.module, nn.Sequential)
    AffineReluNet.from_module(net)
    bad = [helper.make_node("Gather", ["x", "gi"], ["y"], axis=0, name="batchgather")]
    with pytest.raises(UnsupportedModelError, match="batchgather.*batch dimension"):
        load_onnx(_save(tmp_path, _model(bad, {"gi": np.array([0], dtype=np.int64)}, ["N", 6]), "b.onnx"))


def test_conv_asymmetric_pads_pool_and_batchnorm(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[0, 1, 1, 0], strides=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "sc", "bb", "mu", "var"], ["bn"], epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1), helper.make_node("Gemm", ["f", "W", "B"], ["y"])]
    inits = {"w": _f32(3, 2, 3, 3), "b": _f32(3), "sc": _f32(3), "bb": _f32(3),
             "mu": _f32(3), "var": np.abs(_f32(3)) + 0.5, "W": _f32(3 * 2 * 2, 4), "B": _f32(4)}
    net = _check_equivalent(_save(tmp_path, _model(nodes, inits, ["batch", 2, 6, 6])))
    AffineReluNet.from_module(net)


def test_final_sigmoid_is_kept_and_native_engine_rejects_it(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W"], ["g"]), helper.make_node("Sigmoid", ["g"], ["y"])]
    net = _check_equivalent(_save(tmp_path, _model(nodes, {"W": _f32(3, 1)}, ["N", 3])))
    assert isinstance(net.module[-1], nn.Sigmoid) and net.info.output_activation is None
    with pytest.raises(UnsupportedModelError, match="Sigmoid"):
        AffineReluNet.from_module(net)


def test_residual_graph_becomes_graph_module(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Add", ["r", "x"], ["s"]), helper.make_node("Softmax", ["s"], ["y"], axis=-1)]
    net = _check_equivalent(_save(tmp_path, _model(nodes, {"W1": _f32(4, 4)}, ["N", 4])))
    assert isinstance(net.module, onnx_ops.OnnxGraph)


# ---------------------------------------------------------------- errors
def test_unsupported_ops_are_all_listed(tmp_path):
    nodes = [helper.make_node("Sin", ["x"], ["a"]), helper.make_node("Cos", ["a"], ["b"]),
             helper.make_node("Erf", ["b"], ["y"])]
    with pytest.raises(UnsupportedModelError, match=r"g\.onnx: unsupported ONNX operators: Cos, Erf, Sin"):
        load_onnx(_save(tmp_path, _model(nodes, {}, ["N", 3])))


def test_unsupported_usage_names_the_node(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "x"], ["y"], name="selfmul")]
    with pytest.raises(UnsupportedModelError, match="selfmul"):
        load_onnx(_save(tmp_path, _model(nodes, {}, ["N", 3])))


def test_corrupt_and_empty_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xfe")
    with pytest.raises(ModelLoadError, match="broken.onnx is not a valid ONNX model"):
        load_model(bad)
    gz = tmp_path / "broken.onnx.gz"
    gz.write_bytes(b"not gzip")
    with pytest.raises(ModelLoadError, match="broken.onnx.gz"):
        load_model(gz)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "missing.onnx")


def test_inconsistent_shapes_raise_model_load_error(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], name="g1")]
    with pytest.raises(ModelLoadError, match="Gemm node 'g1' fails on inputs of shape"):
        load_onnx(_save(tmp_path, _model(nodes, {"W": _f32(5, 2)}, ["N", 3])))


def test_nan_weights_are_rejected(tmp_path):
    w = _f32(3, 2)
    w[1, 1] = np.nan
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"])]
    with pytest.raises(ModelLoadError, match="NaN or infinite values in initializers: W"):
        load_onnx(_save(tmp_path, _model(nodes, {"W": w}, ["N", 3])))


def test_converted_graphs_are_accepted_by_auto_lirpa(tmp_path):
    """Residual graph + final sigmoid (not native-engine material) still bound soundly in auto_LiRPA."""
    import warnings
    from certprune.verifiers.lirpa_compat import import_auto_lirpa
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_auto_lirpa()
        from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
        nodes = [helper.make_node("Sub", ["x", "mu"], ["c"]), helper.make_node("Gemm", ["c", "W1", "b1"], ["h"]),
                 helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Add", ["r", "c"], ["s"]),
                 helper.make_node("Gemm", ["s", "W2"], ["z"]), helper.make_node("Sigmoid", ["z"], ["y"])]
        inits = {"mu": _f32(4), "W1": _f32(4, 4), "b1": _f32(4), "W2": _f32(4, 2)}
        net = load_onnx(_save(tmp_path, _model(nodes, inits, ["N", 4])))
        x = torch.zeros(1, 4)
        bounded = BoundedModule(net.module, x)
        ptb = PerturbationLpNorm(x_L=x - 0.5, x_U=x + 0.5)
        lo, hi = bounded.compute_bounds(x=(BoundedTensor(x, ptb),), method="CROWN")
    ys = net.run_float32(RNG.uniform(-0.5, 0.5, size=(5000, 4)))
    assert np.all(ys >= lo.detach().numpy() - 1e-6) and np.all(ys <= hi.detach().numpy() + 1e-6)


def test_corrupted_bytes_raise_only_certprune_errors(tmp_path):
    """Random byte flips / truncations of a real model either load or raise a certprune error."""
    from certprune.errors import CertpruneError
    raw = save_onnx(random_mlp([6, 10, 3]), tmp_path / "m.onnx").read_bytes()
    rng = np.random.default_rng(1)
    errors = 0
    for k in range(150):
        b = bytearray(raw)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        if k % 3 == 0:
            b = b[:int(rng.integers(len(b)))]
        path = tmp_path / f"f{k}.onnx"
        path.write_bytes(bytes(b))
        try:
            load_onnx(path)
        except CertpruneError:
            errors += 1
    assert errors > 30


def test_load_time_self_check_catches_a_wrong_conversion(tmp_path, monkeypatch):
    from certprune.io import onnx_loader
    path = save_onnx(random_mlp([4, 6, 3]), tmp_path / "m.onnx")
    check = load_onnx(path).info.extra["onnxruntime_check"]
    assert check["max_abs_diff"] < 1e-5
    real_fuse = onnx_loader._fuse_bias

    def broken_fuse(seq):  # simulate a converter bug: a slightly wrong bias
        seq = real_fuse(seq)
        with torch.no_grad():
            seq[-1].bias += 0.01
        return seq

    monkeypatch.setattr(onnx_loader, "_fuse_bias", broken_fuse)
    with pytest.raises(ModelLoadError, match="m.onnx: converted model disagrees with onnxruntime"):
        load_onnx(path)
    assert "onnxruntime_check" not in load_onnx(path, check=False).info.extra
