"""Session-14 bad-input red team: inputs that gave a traceback, exit code 1, a multi-line error, a
segfault or a silent acceptance, each now one line on stderr and exit 2 (or refused in the API
with certprune's own error type)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from certprune.cli import main
from certprune.errors import ConfigError, DatasetError, SpecError, UnsupportedModelError, VNNLibError

REPO = Path(__file__).resolve().parents[1]
GERMAN = REPO / "certprune" / "models" / "german_mlp.onnx"
PROP = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 -1))
(assert (<= X_0 1))
(assert (>= X_1 -1))
(assert (<= X_1 1))
"""


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("certprune: error: "), err
    return err


def _mlp_onnx(path: Path, W1, b1, W2, b2) -> Path:
    """x (1, 2) -> Gemm -> Relu -> Gemm, float32 weights as given."""
    f = lambda a, n: numpy_helper.from_array(np.asarray(a, np.float32).reshape(np.shape(a)), n)  # noqa: E731
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None])],
                              [f(W1, "W1"), f(b1, "b1"), f(W2, "W2"), f(b2, "b2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    model = _mlp_onnx(tmp_path / "ok.onnx", [[1, -1], [0.5, 1]], [0, 0], [[1, 1], [-1, 1]], [0, 0.1])
    prop = tmp_path / "p.vnnlib"
    prop.write_text(PROP + "(assert (<= Y_0 Y_1))\n")
    return model, prop


# ----------------------------------------------------------------------------- models
def test_onnx_model_with_zero_output_values_is_refused(tmp_path, capsys):
    """A last Gemm with 0 units: was a numpy ValueError from the onnxruntime check (traceback in
    ``info``, exit 1 'internal error' in ``verify``)."""
    from certprune.io.onnx_loader import load_onnx
    path = _mlp_onnx(tmp_path / "noout.onnx", [[1, -1], [0.5, 1]], [0, 0], np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(UnsupportedModelError, match="no values"):
        load_onnx(path)
    assert main(["info", str(path)]) == 2
    assert "at least one output" in _err(capsys)


def test_onnx_zero_width_hidden_layer_loads_without_torch_warnings(tmp_path):
    """A 0-unit hidden layer is a valid (constant) network; torch's init warned twice on stderr."""
    from certprune.io.onnx_loader import load_onnx
    path = _mlp_onnx(tmp_path / "zero.onnx", np.zeros((0, 2)), np.zeros(0), np.zeros((2, 0)), [0, 0.1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        net = load_onnx(path)
    np.testing.assert_allclose(net.run_float32(np.zeros((1, 2), np.float32)), [[0, 0.1]], atol=1e-7)


def test_onnx_weights_overflowing_float32_are_named_not_reported_as_converter_bug(tmp_path, capsys):
    """1e38 weights give inf/NaN outputs: was 'disagrees with onnxruntime by nan ... please report'
    after a numpy RuntimeWarning (three lines on stderr)."""
    path = _mlp_onnx(tmp_path / "big.onnx", [[1e38, -1e38], [0.5, 1]], [0, 0], [[1e38, 1e38], [-1, 1]], [0, 0.1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert main(["info", str(path)]) == 2
    err = _err(capsys)
    assert "not finite" in err and "please report" not in err


# ----------------------------------------------------------------------------- verify config and flags
@pytest.mark.parametrize("content,text", [
    (b'strategy = "\xff\xfe"\n', "not UTF-8"),                 # was UnicodeDecodeError: exit 1 / bench traceback
    (b"seed = -1\n", "seed must be >= 0"),                      # was numpy ValueError mid-run: exit 1
    (b"milp_time_limit = nan\n", "milp_time_limit must be a number"),   # was accepted silently
    (b"refine_milp_limit = nan\n", "refine_milp_limit must be a number"),
    (b"input_split_max_dim = -5\n", "input_split_max_dim must be >= 0"),
    (b"threads = 100000\n", "threads must be at most"),        # was a segfault (torch thread pool)
])
def test_verify_config_file_bad_values_are_one_line(tmp_path, capsys, tiny, content, text):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(content)
    model, prop = tiny
    assert main(["verify", str(model), str(prop), "--config", str(cfg)]) == 2
    assert text in _err(capsys)


def test_bench_config_file_not_utf8_is_one_line(tmp_path, capsys, tiny):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b'strategy = "\xff"\n')
    csv = tmp_path / "instances.csv"
    csv.write_text(f"{tiny[0].name},{tiny[1].name},5\n")
    assert main(["bench", str(csv), "--out", str(tmp_path / "b"), "--config", str(cfg)]) == 2
    assert "not UTF-8" in _err(capsys)


def test_threads_beyond_the_cap_are_refused_before_torch_sees_them(tmp_path, capsys, tiny):
    """``--threads 100000`` segfaulted verify and certify (torch.set_num_threads then a matmul)."""
    model, prop = tiny
    assert main(["verify", str(model), str(prop), "--threads", "100000"]) == 2
    assert "--threads must lie in 1..1024" in _err(capsys)
    assert main(["certify", "default", "--dataset", "digits", "--eps", "0.01", "-n", "1",
                 "--threads", "100000", "--out", str(tmp_path / "c")]) == 2
    assert "--threads must lie in 1..1024" in _err(capsys)


def test_verify_stats_file_that_is_a_directory_is_refused_before_the_answer(tmp_path, capsys, tiny):
    """Was: 'sat' printed (and the result file written), then exit 2 for the stats file."""
    model, prop = tiny
    assert main(["verify", str(model), str(prop), "--stats-file", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert "sat" not in out.out
    assert out.err.strip() == f"certprune: error: --stats-file {tmp_path} is a directory; give a file name"


def test_vnnlib_empty_disjunction_names_itself(tiny):
    from certprune.vnnlib import read_vnnlib
    with pytest.raises(VNNLibError, match=r"empty disjunction"):
        read_vnnlib(PROP + "(assert (or))\n")
    assert len(read_vnnlib(PROP + "(assert (or (and (<= Y_0 Y_1)) (and)))\n")) == 1  # an empty (and) is true


# ----------------------------------------------------------------------------- fairness
@pytest.mark.parametrize("extra,text", [
    (["--samples", "-5"], "samples must be an integer in 0..1000000"),           # was a numpy ValueError traceback
    (["--samples", "1000000000000"], "samples must be an integer in 0..1000000"),  # was MemoryError traceback
    (["--map-features", "age,age"], "two different features"),                  # was accepted silently
])
def test_fairness_bad_samples_map_features_and_relax_are_one_line(tmp_path, capsys, extra, text):
    argv = ["fairness", str(GERMAN), "--dataset", "german", "--protected", "age", "--timeout", "5",
            "--records", "none", "--no-progress", "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    assert text in _err(capsys)
    assert not (tmp_path / "o" / "audit.sqlite").exists()  # refused before the audit, not after it


def test_partition_size_beyond_int64_is_one_chunk_per_feature():
    """``--partition-size 99999999999999999999`` was a numpy 'Maximum allowed size exceeded' traceback."""
    from certprune.verifiers.partition import grid_partition
    lo, hi = np.array([0, 3]), np.array([10, 7])
    huge = grid_partition(lo, hi, 10 ** 20, whole=(0,))
    assert huge.count == 1
    assert [s.tolist() for s in huge.starts] == [[0], [3]] and [e.tolist() for e in huge.ends] == [[10], [7]]
    same = grid_partition(lo, hi, 5, whole=(0,))
    assert [s.tolist() for s in same.starts] == [s.tolist() for s in huge.starts]


def test_fairness_spec_relaxation_wider_than_the_domain_is_clamped():
    """A tolerance past the domain's width (``--relax month=99999999999999999999999`` was an
    OverflowError traceback) is the same constraint as the width: clamped to it."""
    from certprune.fairness_spec import FairnessSpec
    assert FairnessSpec(("p", "a"), [0, 0], [1, 9], ("p",), {"a": 9}).relaxed_deltas == (9,)
    assert FairnessSpec(("p", "a"), [0, 0], [1, 9], ("p",), {"a": 10 ** 23}).relaxed_deltas == (9,)


# ----------------------------------------------------------------------------- certify data files
def test_data_file_with_object_arrays_or_garbage_is_a_dataset_error(tmp_path):
    from certprune.datasets.user_data import load_data_file
    obj = tmp_path / "obj.npz"
    np.savez(obj, X=np.array([{"a": 1}] * 3, dtype=object), y=np.array([0, 1, 2]))
    with pytest.raises(DatasetError, match="obj.npz is not a readable .npz data file"):
        load_data_file(obj)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "y.npy").write_bytes(b"")
    with pytest.raises(DatasetError, match="bad.npy is not a readable .npy data file"):
        load_data_file(bad, tmp_path / "y.npy")


# ----------------------------------------------------------------------------- prune
@pytest.mark.parametrize("option,text", [
    ({"lr": -1.0}, "lr \\(learning rate\\) must be a positive number"),   # was torch's bare ValueError
    ({"lr": float("nan")}, "lr \\(learning rate\\) must be a positive number"),
    ({"min_keep": 1.5}, "min_keep must be a fraction in \\[0, 1\\]"),     # was accepted silently
    ({"stability_weight": -1.0}, "stability_weight must be a number >= 0"),  # was accepted silently
])
def test_prune_options_out_of_range_are_config_errors(option, text):
    from certprune.pruning.api import prune
    from tests.conftest import random_mlp
    X, y = torch.rand(16, 4), torch.randint(0, 3, (16,))
    with pytest.raises(ConfigError, match=text):
        prune(random_mlp([4, 8, 3]), method="magnitude", amount=0.5, data=(X, y), finetune_epochs=1, **option)


def test_prune_cli_negative_lr_is_one_line(tmp_path, capsys):
    assert main(["prune", str(REPO / "certprune" / "models" / "digits_mlp.onnx"), "--method", "magnitude",
                 "--amount", "0.5", "--dataset", "digits", "--finetune-epochs", "1", "--lr", "-1",
                 "--out", str(tmp_path / "p.onnx")]) == 2
    assert "learning rate" in _err(capsys)


# ----------------------------------------------------------------------------- bench files
@pytest.mark.parametrize("content,text", [
    (b"a.onnx,b.vnnlib,5\xff\n", "not a UTF-8 CSV file"),                 # was UnicodeDecodeError traceback
    (b"a.onnx,b.vnnlib,inf\n", "positive finite number"),                 # was one 'error' row per instance
    (b"a.onnx,b.vnnlib,1e400\n", "positive finite number"),
])
def test_bench_instances_file_not_utf8_or_infinite_timeout(tmp_path, content, text):
    from certprune.verifiers.bench import read_instances
    p = tmp_path / "instances.csv"
    p.write_bytes(content)
    with pytest.raises(ConfigError, match=text):
        read_instances(p)


@pytest.mark.parametrize("content,text", [
    (b"foo,result\nx,y\n", "no 'onnx' and no 'vnnlib' column"),          # was ValueError: 'onnx' is not in list
    (b"c,a.onnx,b.vnnlib,0,unsat\xff,1\n", "not a UTF-8 CSV file"),     # was UnicodeDecodeError traceback
])
def test_bench_reference_file_malformed_is_a_config_error(tmp_path, content, text):
    from certprune.verifiers.bench import read_reference
    p = tmp_path / "ref.csv"
    p.write_bytes(content)
    with pytest.raises(ConfigError, match=text):
        read_reference(p)


def test_bench_cli_reference_that_is_a_binary_file_is_one_line(tmp_path, capsys, tiny):
    csv = tmp_path / "instances.csv"
    csv.write_text(f"{tiny[0].name},{tiny[1].name},5\n")
    ref = tmp_path / "model.onnx"
    ref.write_bytes(b"\x08\x07\x12\x04\xe9\xff\xfe")  # e.g. a model file passed by mistake
    assert main(["bench", str(csv), "--out", str(tmp_path / "b"), "--reference", str(ref)]) == 2
    assert "reference file" in _err(capsys)
