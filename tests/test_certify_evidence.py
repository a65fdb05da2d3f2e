"""certify's evidence: adversarial inputs saved and re-checked independently, CROWN margins of
verified rows, the PNG grid; workers=2 gives the serial verdicts."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from certprune.verifiers.robustness import certify_robustness

REPO = Path(__file__).resolve().parents[1]
DIGITS_MODEL = REPO / "certprune" / "models" / "digits_mlp.onnx"
EPS = 0.06


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from certprune.datasets import load_digits
    from certprune.network import load_model
    X, y = load_digits()
    net = load_model(DIGITS_MODEL)
    out = tmp_path_factory.mktemp("ev")
    X, y = X[1500:1512], y[1500:1512]
    rep = certify_robustness(net, X, y, EPS, timeout=5, out_dir=out, indices=range(1500, 1512))
    return net, X, y, rep, out


def test_every_falsified_sample_has_an_adversarial_input_that_breaks_the_model(run):
    net, X, y, rep, out = run
    rows = list(csv.DictReader(open(out / "samples.csv")))
    falsified = [r for r in rows if r["verdict"] == "falsified"]
    assert falsified and any(r["verdict"] == "certified" for r in rows)  # both kinds are exercised
    for r in rows:
        k = int(r["index"]) - 1500
        if r["verdict"] != "falsified":
            assert r["adversarial"] == "" and not (out / "adversarial" / f"{r['index']}.npy").exists()
            continue
        assert r["adversarial"] == f"adversarial/{r['index']}.npy"
        x = np.load(out / r["adversarial"])
        assert x.dtype == np.float32 and x.shape == X[k].shape
        lo, hi = np.clip(X[k].astype(np.float64) - EPS, 0, 1), np.clip(X[k].astype(np.float64) + EPS, 0, 1)
        assert np.all(x >= lo.astype(np.float32)) and np.all(x <= hi.astype(np.float32))
        logits = net.module.float()(torch.from_numpy(x[None])).detach().numpy()[0]
        margin = logits[y[k]] - np.max(np.delete(logits, y[k]))
        assert margin <= 0 and float(r["adversarial_margin"]) == pytest.approx(margin, abs=1e-6)
    assert (out / "adversarial" / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verified_rows_carry_their_crown_margin_and_it_agrees_with_the_verdict(run):
    net, X, y, rep, out = run
    from certprune.pruning.metrics import CERT_MARGIN, crown_certified
    verified = rep.rows
    assert verified
    cert, unstable = crown_certified(net.module, torch.from_numpy(X), torch.from_numpy(y), EPS)
    for r in verified:
        k = r["index"] - 1500
        assert isinstance(r["crown_margin"], float) and isinstance(r["unstable_relus"], int)
        assert r["unstable_relus"] == int(unstable[k])                  # same CROWN pass, other code path
        if r["crown_margin"] > CERT_MARGIN:
            assert cert[k] and r["verdict"] == "certified"               # a positive bound cannot be falsified
    assert any(r["verdict"] == "certified" and r["crown_margin"] != "" for r in verified)


def test_workers_two_gives_the_serial_verdicts(run):
    net, X, y, rep, _ = run
    par = certify_robustness(net, X, y, EPS, timeout=5, indices=range(1500, 1512), workers=2)
    assert {r["index"]: r["verdict"] for r in par.rows} == {r["index"]: r["verdict"] for r in rep.rows}
    assert [r["crown_margin"] for r in par.rows] == [r["crown_margin"] for r in rep.rows]


def test_workers_must_be_positive(run):
    from certprune.errors import ConfigError
    net, X, y, _, _ = run
    with pytest.raises(ConfigError, match="workers"):
        certify_robustness(net, X[:1], y[:1], EPS, workers=0)


@pytest.mark.slow
def test_ray_on_localhost_gives_the_serial_verdicts(run):
    ray = pytest.importorskip("ray")
    net, X, y, rep, _ = run
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        par = certify_robustness(net, X, y, EPS, timeout=5, indices=range(1500, 1512), ray_address="auto")
    finally:
        ray.shutdown()
    assert {r["index"]: r["verdict"] for r in par.rows} == {r["index"]: r["verdict"] for r in rep.rows}


def _square(v: int) -> int:
    if v == 7:
        raise ValueError("boom")
    return v * v


def test_map_items_local_workers_return_every_result_and_report_a_dead_worker():
    from certprune.verifiers.parallel import map_items
    items = [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert sorted(map_items(_square, items, workers=2)) == [v * v for v in items]
    assert list(map_items(_square, items, workers=1)) == [v * v for v in items]  # serial keeps the order
    with pytest.raises(RuntimeError, match="worker"):
        list(map_items(_square, items + [7], workers=2))
