"""`certprune info` and `certprune bounds`: output, soundness of printed bounds, exit codes."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from certprune.cli import main
from certprune.io.onnx_export import save_onnx
from certprune.network import load_model
from tests.conftest import REPO, random_mlp

ACAS = "vnncomp/acasxu"


@pytest.fixture
def acas(shared_data):
    d = shared_data / ACAS
    return d / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx", d / "vnnlib"


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_info_onnx_keras_and_torch(capsys, acas, shared_data, tmp_path):
    rc, out, _ = _run(capsys, ["info", str(acas[0])])
    assert rc == 0
    assert "input shape:  (1, 1, 5)" in out and "outputs:      5" in out
    assert "parameters:   13,310" in out  # 5 input offsets + 5*50+50 + 5*(50*50+50) + 50*5+5
    assert len(re.findall(r"^ +\d+ +ReLU ", out, flags=re.M)) == 6 and "native bound engine: yes" in out
    rc, out, _ = _run(capsys, ["info", str(shared_data / "fairness" / "fairify_models" / "GC-3.h5")])
    assert rc == 0 and "(20,)" in out and "sigmoid stripped" in out and "parameters:   199" in out
    path = tmp_path / "sd.pt"
    torch.save(random_mlp([4, 6, 2]).state_dict(), path)
    rc, out, _ = _run(capsys, ["info", str(path), "--architecture", "mlp:4-6-2"])
    assert rc == 0 and "parameters:   44" in out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_info_traced_torchscript(capsys, tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 4, 4)), str(tmp_path / "tr.pt"))
    rc, out, _ = _run(capsys, ["info", str(tmp_path / "tr.pt"), "--input-shape", "1,4,4"])
    assert rc == 0 and "parameters:   38" in out and "Conv2d" in out
    rc, _, err = _run(capsys, ["info", str(tmp_path / "tr.pt"), "--input-shape", "1,x"])
    assert rc == 2 and "--input-shape must be comma-separated integers" in err


@pytest.mark.parametrize("prop", ["prop_3.vnnlib", "prop_6.vnnlib"])
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_bounds_on_acas_enclose_sampled_outputs(capsys, acas, prop, method):
    rc, out, _ = _run(capsys, ["bounds", str(acas[0]), str(acas[1] / prop), "--method", method])
    assert rc == 0 and f"method {method}, engine native" in out
    rows = re.findall(r"^\s+Y_(\d) +(\S+) +(\S+)$", out, flags=re.M)
    from certprune.vnnlib import read_vnnlib
    props = read_vnnlib(acas[1] / prop)
    assert len(rows) == 5 * len(props)
    net = load_model(acas[0])
    rng = np.random.default_rng(0)
    for k, p in enumerate(props):
        lo, hi = np.array([float(r[1]) for r in rows[5 * k:5 * k + 5]]), np.array([float(r[2]) for r in rows[5 * k:5 * k + 5]])
        x = rng.uniform(p.region.lower, p.region.upper, size=(2000, 5)).reshape(-1, 1, 1, 5)
        y = net.run_float32(x)
        # printed with 6 significant digits: allow that rounding
        assert np.all(y >= lo - 1e-5 * (1 + np.abs(lo))) and np.all(y <= hi + 1e-5 * (1 + np.abs(hi)))


def test_bounds_stability_table(capsys, acas):
    rc, out, _ = _run(capsys, ["bounds", str(acas[0]), str(acas[1] / "prop_3.vnnlib"), "--stability"])
    assert rc == 0
    rows = re.findall(r"^ +(\d) +50 +(\d+) +(\d+) +(\d+)$", out, flags=re.M)
    assert len(rows) == 6 and all(sum(map(int, r[1:])) == 50 for r in rows)
    assert sum(int(r[1]) + int(r[2]) for r in rows) > 0  # a small box: some ReLUs are stable


def test_bounds_can_exclude_a_violation(capsys, tmp_path):
    model = random_mlp([2, 8, 2], seed=4)
    path = save_onnx(model, tmp_path / "m.onnx")
    y = model(torch.zeros(1, 2)).detach().numpy()[0]
    prop = tmp_path / "p.vnnlib"  # violation: Y_0 >= y0 + 1 on a tiny box around 0 -> impossible
    prop.write_text("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)"
                    "(assert (>= X_0 -0.001))(assert (<= X_0 0.001))(assert (>= X_1 -0.001))(assert (<= X_1 0.001))"
                    f"(assert (>= Y_0 {y[0] + 1.0}))")
    rc, out, _ = _run(capsys, ["bounds", str(path), str(prop)])
    assert rc == 0 and "the bounds exclude every violation" in out


def test_bounds_alpha_crown_runs_or_fails_cleanly(capsys, tmp_path):
    model = random_mlp([2, 8, 2], seed=5)
    path = save_onnx(model, tmp_path / "m.onnx")
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)"
                    "(assert (>= X_0 -1))(assert (<= X_0 1))(assert (>= X_1 -1))(assert (<= X_1 1))"
                    "(assert (<= Y_0 Y_1))")
    rc, out, err = _run(capsys, ["bounds", str(path), str(prop), "--method", "alpha-crown"])
    if rc == 0:  # alpha-CROWN available: its bounds must enclose sampled outputs
        table = np.array(re.findall(r"^\s+Y_\d +(\S+) +(\S+)$", out, flags=re.M), dtype=float)  # rows: lo, hi
        y = model(torch.rand(4000, 2) * 2 - 1).detach().numpy()
        assert "method alpha-crown" in out and table.shape == (2, 2)
        assert np.all(y >= table[:, 0] - 1e-4) and np.all(y <= table[:, 1] + 1e-4)
    else:
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "alpha-crown" in err


@pytest.mark.parametrize("case, match", [
    ("missing_model", "model file not found"),
    ("corrupt_onnx", "is not a valid ONNX model"),
    ("bad_vnnlib", "undeclared variable 'Y_9'"),
    ("too_many_outputs", "model has 5 outputs"),
    ("missing_property", "VNN-LIB file not found"),
])
def test_bad_input_exits_2_with_one_line(capsys, acas, tmp_path, case, match):
    model, props = str(acas[0]), acas[1]
    prop = str(props / "prop_1.vnnlib")
    if case == "missing_model":
        model = str(tmp_path / "nope.onnx")
    elif case == "corrupt_onnx":
        model = str(tmp_path / "bad.onnx")
        (tmp_path / "bad.onnx").write_bytes(b"\x0a\x05hello, not an onnx model at all \xff")
    elif case in ("bad_vnnlib", "too_many_outputs"):
        text = (props / "prop_1.vnnlib").read_text()
        extra = "(assert (<= Y_9 0))" if case == "bad_vnnlib" else "(declare-const Y_7 Real)(assert (<= Y_7 0))"
        prop = str(tmp_path / "p.vnnlib")
        (tmp_path / "p.vnnlib").write_text(text + extra)
    else:
        prop = str(tmp_path / "absent.vnnlib")
    rc, out, err = _run(capsys, ["bounds", model, prop])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and match in err
    assert "Traceback" not in err


def test_subprocess_exit_code_and_single_line(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"garbage")
    r = subprocess.run([sys.executable, "-m", "certprune", "info", str(bad)], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "broken.onnx" in r.stderr


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bounds_sigmoid_onnx_falls_back_from_native(capsys, tmp_path):
    """A kept ONNX Sigmoid: --engine native refuses it (exit 2), auto uses auto_LiRPA."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = np.random.default_rng(0).normal(size=(3, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["g"]), helper.make_node("Sigmoid", ["g"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "s.onnx"))
    (tmp_path / "s.vnnlib").write_text(
        "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const X_2 Real)(declare-const Y_0 Real)"
        + "".join(f"(assert (>= X_{i} -1))(assert (<= X_{i} 1))" for i in range(3)) + "(assert (>= Y_0 0.999))")
    argv = ["bounds", str(tmp_path / "s.onnx"), str(tmp_path / "s.vnnlib")]
    rc, _, err = _run(capsys, argv + ["--engine", "native"])
    assert rc == 2 and "unsupported layers: Sigmoid" in err
    rc, out, _ = _run(capsys, argv)
    assert rc == 0 and "engine lirpa" in out
    hi = 1 / (1 + np.exp(-np.abs(w).sum()))  # exact max of sigmoid(w . x) over the box
    upper = float(re.search(r"Y_0 +\S+ +(\S+)", out).group(1))
    assert upper >= hi - 1e-5 and "exclude every violation" in out
