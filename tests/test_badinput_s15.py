"""Bad input refused early with one line and exit 2: files that onnxruntime cannot run and that are
not valid ONNX (instead of being verified with the converter's guess of their semantics), and
local worker counts a machine cannot hold."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from certprune.errors import ModelLoadError
from certprune.network import load_model


def _save(tmp_path, name, nodes, inits=(), opset=13):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3 if inits else 2])],
                          list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    p = tmp_path / name
    onnx.save(m, str(p))
    return p


def _ill_typed(tmp_path):
    """A float32 graph whose Gemm weight is float64: onnxruntime and onnx's checker reject it."""
    W = numpy_helper.from_array(np.ones((3, 2), np.float64), "W")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "b")
    return _save(tmp_path, "typed.onnx", [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], [W, b])


def test_ill_typed_file_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="not a valid ONNX model.*inconsistent type"):
        load_model(_ill_typed(tmp_path))


def test_unknown_opset_is_refused(tmp_path):
    p = _save(tmp_path, "opset.onnx", [helper.make_node("Relu", ["x"], ["y"])], opset=99)
    with pytest.raises(ModelLoadError, match="opset 99, newer than the newest defined"):
        load_model(p)


def test_valid_file_still_checked(tmp_path):
    net = load_model(_save(tmp_path, "ok.onnx", [helper.make_node("Relu", ["x"], ["y"])]))
    assert net.info.extra["onnxruntime_check"]["ran"] is True


def test_cli_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "certprune", "info", str(_ill_typed(tmp_path))],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "not a valid ONNX model" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("argv", [["fairness", "M.h5", "--dataset", "german", "--protected", "age", "--out", "o"],
                                  ["demo"]])
@pytest.mark.parametrize("workers,msg", [("100000", "local processes on a machine with"),
                                         ("0", "must be an integer >= 1")])
def test_workers_checked_before_work(argv, workers, msg):
    """--workers past MAX_WORKERS_PER_CPU x CPUs (it would fork that many copies) or below 1: one
    line and exit 2, before any model is read."""
    r = subprocess.run([sys.executable, "-m", "certprune", *argv, "--workers", workers], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and "--workers" in r.stderr and "Traceback" not in r.stderr


ACAS = Path(os.environ.get("CERTPRUNE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "vnncomp" / "acasxu"
needs_acas = pytest.mark.skipif(not (ACAS / "onnx").is_dir(), reason="ACAS Xu data not found")


@needs_acas
def test_absurd_config_size_is_refused(tmp_path):
    """attack_samples = 10^12 used to end in a MemoryError (exit 1, 'internal error')."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("attack_samples = 1000000000000\n")
    res = tmp_path / "out.txt"
    r = subprocess.run([sys.executable, "-m", "certprune", "verify", str(ACAS / "onnx/ACASXU_run2a_1_1_batch_2000.onnx"),
                        str(ACAS / "vnnlib/prop_1.vnnlib"), "--config", str(cfg), "--results-file", str(res)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "attack_samples must be below 2^31" in r.stderr, r.stderr


@needs_acas
def test_out_of_memory_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """A MemoryError during the search (a size the machine cannot hold) is reported as bad input:
    result file 'error', one line, exit 2; the same in every other command (cli.main)."""
    from certprune import cli
    from certprune.commands import verify as verify_cmd

    def boom(*a, **k):
        raise MemoryError("Unable to allocate 36.4 TiB for an array")
    monkeypatch.setattr(verify_cmd, "decide_with_progress", boom)
    res = tmp_path / "out.txt"
    code = cli.main(["verify", str(ACAS / "onnx/ACASXU_run2a_1_1_batch_2000.onnx"), str(ACAS / "vnnlib/prop_1.vnnlib"),
                     "--results-file", str(res)])
    err = capsys.readouterr().err
    assert code == 2 and res.read_text().strip() == "error"
    assert "out of memory" in err and err.strip().count("\n") == 0
    from certprune.commands import info as info_cmd
    monkeypatch.setattr(info_cmd, "run", boom)
    assert cli.main(["info", "x.onnx"]) == 2
    assert "out of memory" in capsys.readouterr().err
