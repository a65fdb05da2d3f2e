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
        assert r["unstable_relus"] == int(unstable[k])                  # the one CROWN margin function
        if r["crown_margin"] > CERT_MARGIN:
            assert cert[k] and r["verdict"] == "certified"               # a positive bound cannot be falsified
    assert any(r["verdict"] == "certified" and r["crown_margin"] != "" for r in verified)


def test_crown_margins_are_exact_on_an_affine_model():
    """No ReLU: CROWN is exact, min over the box of (w_y - w_j) x + (b_y - b_j) per coordinate."""
    from certprune.verifiers.robustness import crown_margins
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 4).double()
    model = torch.nn.Sequential(lin)
    lo = torch.rand(6, 5, dtype=torch.float64) * 0.5
    hi = lo + torch.rand(6, 5, dtype=torch.float64) * 0.3
    labels = np.array([0, 1, 2, 3, 1, 2])
    m, u = crown_margins(model, lo, hi, labels)
    W, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    for i, c in enumerate(labels):
        exact = min(float(np.minimum((W[c] - W[j]) * lo[i].numpy(), (W[c] - W[j]) * hi[i].numpy()).sum()
                          + b[c] - b[j]) for j in range(4) if j != c)
        assert m[i] == pytest.approx(exact, abs=1e-9)
    assert u.tolist() == [0] * 6


def test_crown_is_run_once_and_verify_only_gets_what_it_cannot_certify(run, monkeypatch):
    """Samples whose batched root CROWN margin clears verify's criterion are certified without a
    verify call (phase bound), and verify agrees on each of them; the rest go to verify."""
    from certprune.results import Verdict
    from certprune.specs import RobustnessSpec
    from certprune.verifiers import robustness
    from certprune.verifiers.verify import verify
    net, X, y, rep, _ = run
    calls = []
    real = robustness._verify_job
    monkeypatch.setattr(robustness, "_verify_job", lambda n, job, **k: (calls.append(job[1]["index"]),
                                                                         real(n, job, **k))[1])
    again = certify_robustness(net, X, y, EPS, timeout=5, indices=range(1500, 1512))
    assert {r["index"]: r["verdict"] for r in again.rows} == {r["index"]: r["verdict"] for r in rep.rows}
    shortcut = [r for r in again.rows if r["verdict"] == "certified" and r["crown_margin"] > 1e-7]
    assert shortcut, "the digits MLP has CROWN-certified samples at this eps"
    waited = [r["index"] for r in again.rows if r["clean_correct"] and r["pgd_robust"] and r not in shortcut]
    assert sorted(calls) == sorted(waited)
    for r in shortcut:
        assert r["phase"] == "bound"
        prop = RobustnessSpec(X[r["index"] - 1500], EPS, int(y[r["index"] - 1500])).to_property(10)
        assert verify(net, prop, timeout=5).verdict is Verdict.CERTIFIED


def test_float32_semantics_sends_every_sample_to_verify(run, monkeypatch):
    from certprune.verifiers import robustness
    net, X, y, _, _ = run
    calls = []
    real = robustness._verify_job
    monkeypatch.setattr(robustness, "_verify_job", lambda n, job, **k: (calls.append(job[1]["index"]),
                                                                         real(n, job, **k))[1])
    rep = certify_robustness(net, X[:6], y[:6], EPS, timeout=5, indices=range(1500, 1506), semantics="float32")
    assert sorted(calls) == [r["index"] for r in rep.rows if r["clean_correct"] and r["pgd_robust"]]


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


def test_crown_margins_run_on_the_graph_and_equal_the_densified_chain():
    """crown_margins bounds a convnet on the graph engine (convolutions kept): the margins and
    unstable counts equal CROWN on the densified AffineReluNet up to float64 rounding, and a
    residual graph, which has no dense form, gets margins too."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from graph_nets import residual_mlp
    from torch import nn

    from certprune.verifiers.bounds import affine_net, compute_bounds
    from certprune.verifiers.robustness import crown_margins
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 10), nn.ReLU(), nn.Linear(10, 4)).double().eval()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (12, 1, 8, 8))
    labels = conv(torch.as_tensor(x)).argmax(1).detach().numpy()
    eps = np.linspace(0.05, 2.0, 12)[:, None, None, None]
    lo, hi = x - eps, x + eps
    m, u = crown_margins(conv, lo, hi, labels)
    eye = torch.eye(4, dtype=torch.float64)
    ys = torch.as_tensor(labels)
    b = compute_bounds(affine_net(conv, (1, 8, 8)), torch.as_tensor(lo), torch.as_tensor(hi), method="crown",
                       C=eye[ys].unsqueeze(1) - eye.unsqueeze(0), return_intermediate=True, engine="native")
    dense = b.lower.masked_fill(eye.bool()[ys], torch.inf).min(1).values.numpy()
    np.testing.assert_allclose(m, dense, rtol=0, atol=1e-12)
    assert np.array_equal(u, sum(((l < 0) & (h > 0)).sum(1) for l, h in b.intermediate).numpy())
    assert 0 < (m > 0).sum() < len(m)  # both outcomes occur
    res = residual_mlp(0).double()
    xr = rng.uniform(-1, 1, (5, 6))
    mr, ur = crown_margins(res, xr - 0.01, xr + 0.01, res(torch.as_tensor(xr)).argmax(1).detach().numpy())
    assert mr.shape == (5,) and np.all(np.isfinite(mr)) and ur.shape == (5,)
