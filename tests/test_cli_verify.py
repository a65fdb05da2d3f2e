"""`certprune verify`: VNN-COMP result files, exit codes, bad input, and one easy ACAS Xu instance.

Counterexamples written by the CLI are checked independently: the Y values must equal
onnxruntime's output on the X values, X must lie in the VNN-LIB box, and the output must satisfy
the (negated) property as read back from the file.
"""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from certprune.cli import main
from certprune.vnncomp import format_result, parse_result

REPO = Path(__file__).resolve().parents[1]
DIGITS_MODEL = REPO / "certprune" / "models" / "digits_mlp.onnx"


def acas(shared: Path, net: str, prop: int) -> tuple[Path, Path]:
    d = shared / "vnncomp" / "acasxu"
    return d / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx", d / "vnnlib" / f"prop_{prop}.vnnlib"


def ort_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    return sess.run(None, {inp.name: x.astype(np.float32).reshape(shape)})[0].ravel()


def test_format_result_words_and_roundtrip():
    assert format_result("unsat") == "unsat\n"
    assert format_result("timeout") == "timeout\n"
    text = format_result("sat", np.array([0.5, np.float32(0.1)]), np.array([[1.0, -2.25]]))
    assert text.splitlines()[0] == "sat"
    word, vals = parse_result(text)
    assert word == "sat"
    assert vals == {"X_0": 0.5, "X_1": float(np.float32(0.1)), "Y_0": 1.0, "Y_1": -2.25}
    with pytest.raises(ValueError):
        format_result("sat")
    with pytest.raises(ValueError):
        format_result("maybe")


def test_acas_sat_instance_through_cli(shared_data, tmp_path, capsys):
    """ACAS Xu net 1_7, property 3 is sat (Marabou agrees); the witness must check out."""
    from certprune.vnnlib import read_vnnlib
    model, prop = acas(shared_data, "1_7", 3)
    out = tmp_path / "res.txt"
    assert main(["verify", str(model), str(prop), "--timeout", "60", "--results-file", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "sat"
    word, vals = parse_result(out.read_text())
    assert word == "sat"
    x = np.array([vals[f"X_{i}"] for i in range(5)])
    y = np.array([vals[f"Y_{j}"] for j in range(5)])
    np.testing.assert_allclose(ort_outputs(model, x), y, rtol=1e-5, atol=1e-6)
    (p,) = read_vnnlib(prop)
    assert p.region.contains(x).all()
    assert p.is_violated(y[None]).all()


def test_unsat_instance_gzipped_through_subprocess(tmp_path):
    """A tiny box around a correctly classified digit is certified; gzipped model and property
    are accepted; the real entry point exits 0 and writes ``unsat``."""
    from certprune.datasets import load_digits
    from certprune.specs import RobustnessSpec
    from certprune.vnnlib import write_vnnlib
    x, y = load_digits()
    i = 1700  # held-out image, correctly classified by the bundled model
    assert int(np.argmax(ort_outputs(DIGITS_MODEL, x[i]))) == y[i]
    prop = RobustnessSpec(x[i].ravel(), 0.002, int(y[i])).to_property(10)
    vnn = write_vnnlib(prop, tmp_path / "robust.vnnlib.gz")
    model_gz = tmp_path / "digits.onnx.gz"
    model_gz.write_bytes(gzip.compress(DIGITS_MODEL.read_bytes()))
    out, stats = tmp_path / "res.txt", tmp_path / "stats.json"
    r = subprocess.run([sys.executable, "-m", "certprune", "verify", str(model_gz), str(vnn), "--timeout", "60",
                        "--results-file", str(out), "--stats-file", str(stats), "--fast-exit"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "unsat"
    assert out.read_text() == "unsat\n"
    s = json.loads(stats.read_text())
    assert s["result"] == "unsat" and len(s["verify"]) == 1
    assert 0 <= s["seconds_after_imports"] <= s["seconds_after_loading"] <= s["seconds_total"]


def test_timeout_exit_code_3(shared_data, tmp_path, capsys):
    """ACAS Xu 1_1 / property 3 is hard (Marabou: no answer in 60 s); 2 s is not enough."""
    model, prop = acas(shared_data, "1_1", 3)
    out = tmp_path / "res.txt"
    assert main(["verify", str(model), str(prop), "--timeout", "2", "--results-file", str(out)]) == 3
    assert capsys.readouterr().out.strip() == "timeout"
    assert out.read_text() == "timeout\n"


BAD_VNNLIB = {
    "unknown construct": ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-fun f () Real)\n"
                          "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= Y_0 0))\n", "unsupported command"),
    "output beyond model": ("".join(f"(declare-const X_{i} Real)\n" for i in range(5)) + "(declare-const Y_7 Real)\n"
                            + "".join(f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 0.1))\n" for i in range(5))
                            + "(assert (<= Y_7 0))\n", "Y_7"),
    "empty box": ("".join(f"(declare-const X_{i} Real)\n" for i in range(5)) + "(declare-const Y_0 Real)\n"
                  + "".join(f"(assert (>= X_{i} 0.5))\n(assert (<= X_{i} 0.1))\n" for i in range(5))
                  + "(assert (<= Y_0 0))\n", "infeasible"),
}


@pytest.mark.parametrize("case", sorted(BAD_VNNLIB))
def test_bad_property_exit_2(case, shared_data, tmp_path, capsys):
    text, needle = BAD_VNNLIB[case]
    model, _ = acas(shared_data, "1_1", 1)
    prop = tmp_path / "bad.vnnlib"
    prop.write_text(text)
    out = tmp_path / "res.txt"
    assert main(["verify", str(model), str(prop), "--results-file", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("certprune: error:")
    assert needle in err
    assert out.read_text() == "error\n"


def test_missing_model_and_bad_timeout_exit_2(tmp_path, capsys):
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n")
    assert main(["verify", str(tmp_path / "nope.onnx"), str(prop)]) == 2
    assert "nope.onnx" in capsys.readouterr().err
    assert main(["verify", str(DIGITS_MODEL), str(prop), "--timeout", "-1"]) == 2
    assert "--timeout" in capsys.readouterr().err
    assert main(["verify", str(DIGITS_MODEL), str(prop), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_internal_error_exit_1(tmp_path, capsys, monkeypatch):
    """An unexpected exception inside the verifier: word ``error``, one stderr line, exit 1."""
    import certprune.verifiers.verify as v
    from certprune.specs import RobustnessSpec
    from certprune.vnnlib import write_vnnlib

    def boom(*a, **k):
        raise RuntimeError("simulated crash")
    monkeypatch.setattr(v, "verify", boom)
    prop = write_vnnlib(RobustnessSpec(np.full(64, 0.5), 0.01, 0).to_property(10), tmp_path / "p.vnnlib")
    out = tmp_path / "res.txt"
    assert main(["verify", str(DIGITS_MODEL), str(prop), "--results-file", str(out)]) == 1
    cap = capsys.readouterr()
    assert cap.out.strip() == "error" and "simulated crash" in cap.err
    assert out.read_text() == "error\n"


def test_cli_parsing_does_not_import_torch():
    """Start-up stays fast: building the verify parser imports no torch (measured in README)."""
    code = ("import sys; from certprune.cli import build_parser; "
            "build_parser(['verify']).parse_args(['verify', 'm.onnx', 'p.vnnlib']); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.stdout.strip() == "False", r.stderr
