"""certify_robustness and `certprune certify`: accuracies, soundness of verdicts, resume, bad input."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from certprune.cli import main
from certprune.errors import ConfigError, ShapeMismatchError, SpecError
from certprune.verifiers.robustness import certify_robustness

REPO = Path(__file__).resolve().parents[1]
DIGITS_MODEL = REPO / "certprune" / "models" / "digits_mlp.onnx"
MNIST_MODEL = REPO / "certprune" / "models" / "mnist_mlp.onnx"


@pytest.fixture(scope="module")
def digits():
    from certprune.datasets import load_digits
    from certprune.network import load_model
    X, y = load_digits()
    return load_model(DIGITS_MODEL), X[1500:], y[1500:]


def strong_attack_finds(net, x, label, eps, n_samples=10_000, restarts=16, steps=60) -> bool:
    """Random sampling in the ball plus PGD with many restarts (independent of the code under test)."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.from_numpy(x[None]).float()
    lo, hi = (x0 - eps).clamp(0, 1), (x0 + eps).clamp(0, 1)
    pts = lo + torch.rand((n_samples, *x.shape), generator=g) * (hi - lo)
    with torch.no_grad():
        out = net.module(pts)
    if (out.argmax(1) != label).any():
        return True
    z = lo + torch.rand((restarts, *x.shape), generator=g) * (hi - lo)
    for k in range(steps):
        z.requires_grad_(True)
        o = net.module(z)
        other = o.clone()
        other[:, label] = -1e9
        m = o[:, label] - other.max(1).values
        if (m <= 0).any():
            return True
        (gr,) = torch.autograd.grad(m.sum(), z)
        with torch.no_grad():
            z = torch.minimum(torch.maximum(z - eps / 10 * gr.sign(), lo), hi)
    return False


def test_accuracies_ordered_and_verdicts_sound(digits, tmp_path):
    net, X, y = digits
    rep = certify_robustness(net, X[:16], y[:16], 0.03, timeout=10, out_dir=tmp_path)
    assert rep.n == 16
    assert rep.certified_accuracy <= rep.pgd_accuracy <= rep.clean_accuracy
    assert sum(rep.counts.values()) == 16
    assert rep.counts["certified"] > 0  # the case must exercise certification
    rows = list(csv.DictReader(open(tmp_path / "samples.csv")))
    assert sorted(int(r["index"]) for r in rows) == list(range(16))  # written in completion order
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["certified_accuracy"] == rep.certified_accuracy
    certified = [r for r in rep.rows if r["verdict"] == "certified"][:5]
    for r in certified + [r for r in rep.rows if r["verdict"] == "falsified"]:
        k = r["index"]
        if r["verdict"] == "certified":
            assert not strong_attack_finds(net, X[k], int(y[k]), 0.03)
        if r["verdict"] == "falsified":  # an attack must find it too (PGD rows were re-checked in float32)
            assert strong_attack_finds(net, X[k], int(y[k]), 0.03)


def test_eps_zero_certifies_every_correct_sample(digits):
    """Exact value: with eps = 0 the ball is the point, so certified = PGD = clean accuracy."""
    net, X, y = digits
    rep = certify_robustness(net, X[:12], y[:12], 0.0, timeout=10)
    pred = net.run_float32(X[:12]).argmax(1)
    assert rep.clean_accuracy == pytest.approx(np.mean(pred == y[:12]))
    assert rep.certified_accuracy == rep.pgd_accuracy == rep.clean_accuracy


def test_resume_skips_finished_samples(digits, tmp_path, monkeypatch):
    import certprune.verifiers.verify as v
    net, X, y = digits
    first = certify_robustness(net, X[:6], y[:6], 0.02, timeout=10, out_dir=tmp_path, indices=range(1500, 1506))
    calls = []
    real = v.verify
    monkeypatch.setattr(v, "verify", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = certify_robustness(net, X[:6], y[:6], 0.02, timeout=10, out_dir=tmp_path, indices=range(1500, 1506))
    assert calls == [] and again.counts == first.counts
    # another n or offset is another run (its identity differs): refused, never mixed into the totals
    with pytest.raises(ConfigError, match="n, samples_sha256"):
        certify_robustness(net, X[:9], y[:9], 0.02, timeout=10, out_dir=tmp_path, indices=range(1500, 1509))
    with pytest.raises(ConfigError, match="offset"):
        certify_robustness(net, X[1:7], y[1:7], 0.02, timeout=10, out_dir=tmp_path, indices=range(1501, 1507))
    # a row cut off by a crash is redone, not trusted
    lines = (tmp_path / "samples.csv").read_text().splitlines(keepends=True)
    redo = int(lines[-1].split(",")[0])
    (tmp_path / "samples.csv").write_text("".join(lines[:-1]) + lines[-1][:9])
    rep = certify_robustness(net, X[:6], y[:6], 0.02, timeout=10, out_dir=tmp_path, indices=range(1500, 1506))
    assert [r["index"] for r in rep.rows] == list(range(1500, 1506)) and len(calls) <= 1
    assert rep.counts == first.counts and redo in range(1500, 1506)
    with pytest.raises(ConfigError, match="eps"):
        certify_robustness(net, X[:6], y[:6], 0.05, timeout=10, out_dir=tmp_path, indices=range(1500, 1506))


def test_bad_inputs(digits):
    net, X, y = digits
    with pytest.raises(ShapeMismatchError):
        certify_robustness(net, X[:3, :, :4], y[:3], 0.01)
    with pytest.raises(ShapeMismatchError):
        certify_robustness(net, X[:3], y[:2], 0.01)
    with pytest.raises(SpecError, match="labels"):
        certify_robustness(net, X[:3], np.array([1, 2, 11]), 0.01)
    with pytest.raises(SpecError, match="eps"):
        certify_robustness(net, X[:3], y[:3], -0.1)
    with pytest.raises(ConfigError, match="timeout"):
        certify_robustness(net, X[:3], y[:3], 0.1, timeout=0)


def test_cli_certify_digits_and_errors(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["certify", str(DIGITS_MODEL), "--dataset", "digits", "--eps", "0.01", "-n", "8", "--timeout", "10",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "certified accuracy" in text and "digits samples 1500..1507" in text
    assert len(list(csv.DictReader(open(out / "samples.csv")))) == 8
    assert main(args[:-3] + ["--offset", "5000", "--out", str(out)]) == 2
    assert "--offset" in capsys.readouterr().err
    assert main(["certify", str(DIGITS_MODEL), "--dataset", "mnist", "--eps", "0.01", "-n", "2",
                 "--out", str(tmp_path / "m")]) == 2  # 8x8 model on 28x28 images
    assert "shape" in capsys.readouterr().err


def test_mnist_model_on_held_out_images(shared_data, tmp_path):
    from certprune.datasets import load_mnist
    from certprune.network import load_model
    X, y = load_mnist(shared_data)
    net = load_model(MNIST_MODEL)
    rep = certify_robustness(net, X[8000:8006], y[8000:8006], 0.005, timeout=10, out_dir=tmp_path,
                             indices=range(8000, 8006))
    assert rep.certified_accuracy <= rep.pgd_accuracy <= rep.clean_accuracy
    assert rep.counts["certified"] >= 1
