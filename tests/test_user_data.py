"""User data files for certify (npz, npy pair, csv), shape and range errors, normalisation inside
the model (eps in input units), and the CIFAR-10 loader on the shared test images."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from certprune.cli import main
from certprune.datasets.user_data import fit_to_model, load_data_file, with_normalization
from certprune.errors import DatasetError, ShapeMismatchError

REPO = Path(__file__).resolve().parents[1]
DIGITS_MODEL = REPO / "certprune" / "models" / "digits_mlp.onnx"


@pytest.fixture(scope="module")
def digits4():
    from certprune.datasets import load_digits
    X, y = load_digits()
    return X[1500:1504], y[1500:1504]


def _write_all(tmp_path: Path, X, y) -> dict[str, list[str]]:
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    flat = X.reshape(len(X), -1)
    with open(tmp_path / "d.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target"] + [f"p{j}" for j in range(flat.shape[1])])
        for lab, row in zip(y, flat):
            w.writerow([int(lab)] + [repr(float(v)) for v in row])
    return {"npz": [str(tmp_path / "d.npz")], "npy": [str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")],
            "csv": [str(tmp_path / "d.csv"), "--label-column", "target"]}


def test_each_file_form_loads_the_same_arrays(tmp_path, digits4):
    X, y = digits4
    _write_all(tmp_path, X, y)
    for args in [(tmp_path / "d.npz",), (tmp_path / "x.npy", tmp_path / "y.npy"), (tmp_path / "d.csv", None, "target")]:
        Xl, yl = load_data_file(*args)
        assert np.array_equal(fit_to_model(Xl, (1, 8, 8)), X) and np.array_equal(yl, y)
        assert Xl.dtype == np.float32 and yl.dtype == np.int64


def test_certify_on_a_data_file_equals_the_named_data_set(tmp_path, digits4, capsys):
    X, y = digits4
    forms = _write_all(tmp_path, X, y)
    base = ["certify", str(DIGITS_MODEL), "--eps", "0.03", "--timeout", "5", "--no-progress"]
    assert main(base + ["--dataset", "digits", "-n", "4", "--out", str(tmp_path / "ref")]) == 0
    ref = {r["index"]: r["verdict"] for r in csv.DictReader(open(tmp_path / "ref" / "samples.csv"))}
    for name, args in forms.items():
        out = tmp_path / f"out_{name}"
        workers = ["--workers", "2"] if name == "npz" else []  # the local runner gives the serial verdicts
        assert main(base + ["--data", *args, *workers, "--out", str(out)]) == 0, name
        got = {str(int(r["index"]) + 1500): r["verdict"] for r in csv.DictReader(open(out / "samples.csv"))}
        assert got == ref, name
    assert "file:d.csv samples 0..3 (n=4)" in capsys.readouterr().out


def test_bad_data_files_are_one_line_exit_2(tmp_path, digits4, capsys):
    X, y = digits4
    base = ["certify", str(DIGITS_MODEL), "--eps", "0.03", "--no-progress", "--out", str(tmp_path / "o")]
    np.savez(tmp_path / "wrong.npz", X=X[:, :, :7, :], y=y)        # 56 values, the model takes 64
    np.savez(tmp_path / "nolab.npz", X=X)
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "range.npz", X=X * 16, y=y)                # 0..16 pixels, range not stated
    cases = {"wrong.npz": ["expects (1, 8, 8)"], "nolab.npz": ["lacks array(s) y"],
             "x.npy": ["--labels"], "range.npz": ["--input-range"]}
    for f, needles in cases.items():
        assert main(base + ["--data", str(tmp_path / f)]) == 2, f
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and all(n in err for n in needles), err
    assert main(base + ["--data", str(tmp_path / "range.npz"), "--input-range", "0,16", "--eps", "20"]) == 2
    assert "--eps must lie in [0, 16]" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="no label column 'label'"):
        (tmp_path / "c.csv").write_text("a,b\n1,2\n")
        load_data_file(tmp_path / "c.csv")
    with pytest.raises(ShapeMismatchError):
        fit_to_model(np.zeros((2, 10), np.float32), (1, 8, 8))


def test_normalisation_is_inside_the_model_and_eps_in_input_units(digits4):
    """Exact: bounds of net((x - m) / s) on [x - e, x + e] equal bounds of net on the mapped box."""
    from certprune.network import load_model
    from certprune.verifiers.bounds import compute_bounds
    X, _ = digits4
    net = load_model(DIGITS_MODEL)
    mean, std = 0.3, 0.5
    wrapped = with_normalization(net, (mean,), (std,))
    Xr = X * std + mean                              # raw units that normalise back to X
    assert np.allclose(wrapped.run_float32(Xr), net.run_float32(X), atol=1e-5)
    eps = 0.02
    a = compute_bounds(wrapped, torch.from_numpy(Xr - eps).double(), torch.from_numpy(Xr + eps).double())
    b = compute_bounds(net, torch.from_numpy((Xr - eps - mean) / std).double(),
                       torch.from_numpy((Xr + eps - mean) / std).double())
    assert torch.allclose(a.lower, b.lower, atol=1e-6) and torch.allclose(a.upper, b.upper, atol=1e-6)
    assert wrapped.info.sha256 != net.info.sha256


def test_cifar10_loader_on_the_shared_images():
    from certprune.datasets.cifar10 import load_cifar10
    X, y = load_cifar10()
    assert X.shape == (100, 3, 32, 32) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert y[:20].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]  # README
    assert np.bincount(y, minlength=10).tolist() == [10, 6, 8, 10, 7, 8, 16, 11, 13, 11]
    from certprune.datasets.paths import data_root
    raw = np.loadtxt(data_root() / "images" / "cifar10_test100" / "cifar10_test.csv", delimiter=",", max_rows=1)
    assert X[0, :, 0, 0].tolist() == pytest.approx((raw[1:4] / 255).tolist())  # H-W-C order: pixel (0, 0) = R, G, B


def test_default_cifar10_model_with_its_normalisation_classifies_the_images():
    """The OVAL21 base net with the benchmark's normalisation: 73 of 100 correct (8 without)."""
    from certprune.datasets.cifar10 import OVAL21_MEAN, OVAL21_STD, default_model_path, load_cifar10
    from certprune.network import load_model
    X, y = load_cifar10()
    net = load_model(default_model_path())
    assert (with_normalization(net, OVAL21_MEAN, OVAL21_STD).run_float32(X).argmax(1) == y).sum() == 73
    assert (net.run_float32(X).argmax(1) == y).sum() < 20


def test_default_model_and_option_conflicts_are_one_line_exit_2(tmp_path, digits4, capsys):
    X, y = digits4
    np.savez(tmp_path / "d.npz", X=X, y=y)
    base = ["certify", "--eps", "0.01", "--no-progress", "--out", str(tmp_path / "o")]
    cases = [(["default", "--data", str(tmp_path / "d.npz")], "needs a named --dataset"),
             (["default", "--dataset", "cifar10", "--mean", "0.5"], "drop --mean/--std"),
             ([str(DIGITS_MODEL), "--dataset", "digits", "--labels", str(tmp_path / "d.npz")], "--labels goes with"),
             ([str(DIGITS_MODEL), "--dataset", "digits", "--workers", "0"], "--workers must be an integer >= 1"),
             ([str(DIGITS_MODEL), "--dataset", "digits", "--mean", "a,b"], "--mean takes comma-separated numbers"),
             ([str(DIGITS_MODEL), "--dataset", "digits", "--std", "0.5,0.5"], "--std has 2 values")]
    for extra, needle in cases:
        assert main(base[:1] + extra + base[1:]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err


@pytest.mark.slow
def test_certify_default_cifar10_model_end_to_end(tmp_path, capsys):
    """OVAL21 base net on the first 4 CIFAR-10 images at eps 0.004 (about 30 s): every falsified
    sample's saved input breaks the normalised model in float32; certified ones survive sampling."""
    from certprune.datasets.cifar10 import OVAL21_MEAN, OVAL21_STD, default_model_path, load_cifar10
    from certprune.network import load_model
    out = tmp_path / "c"
    assert main(["certify", "default", "--dataset", "cifar10", "-n", "4", "--eps", "0.004", "--timeout", "5",
                 "--no-progress", "--out", str(out)]) == 0
    X, y = load_cifar10()
    net = with_normalization(load_model(default_model_path()), OVAL21_MEAN, OVAL21_STD)
    rows = list(csv.DictReader(open(out / "samples.csv")))
    assert len(rows) == 4 and any(r["verdict"] == "certified" for r in rows)
    g = np.random.default_rng(0)
    for r in rows:
        k = int(r["index"])
        if r["verdict"] == "falsified":
            x = np.load(out / r["adversarial"])
            out_k = net.run_float32(x)[0]
            assert np.abs(x - X[k]).max() <= 0.004 + 1e-7
            assert out_k[y[k]] - np.delete(out_k, y[k]).max() <= 0   # the property's violation (non-strict)
        if r["verdict"] == "certified":
            pts = np.clip(X[k] + g.uniform(-0.004, 0.004, (256, *X[k].shape)), 0, 1).astype(np.float32)
            assert (net.run_float32(pts).argmax(1) == y[k]).all()
    assert (out / "adversarial" / "grid.png").exists() == any(r["verdict"] == "falsified" for r in rows)
