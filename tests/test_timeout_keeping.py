"""``--timeout`` is held on a convnet: the ``certprune verify`` process answers ``timeout`` in time
(the watchdog covers model loading and bound passes that cannot be interrupted), and in process
``verify`` stops inside densifying and inside the root CROWN pass once its deadline passes.

The machine running the tests is shared and loaded, so the factors here are loose; the real
figures are measured by experiments/bench_startup.py (README, "Start-up and timeout keeping").
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from certprune.errors import DeadlineExceeded
from certprune.results import Verdict

REPO = Path(__file__).resolve().parents[1]


def oval(shared: Path) -> tuple[Path, Path]:
    d = shared / "vnncomp" / "oval21"
    onnx, vnn = (x.strip() for x in (d / "instances.csv").read_text().splitlines()[0].split(",")[:2])
    return d / f"{onnx}.gz", d / f"{vnn}.gz"


def test_cli_holds_a_tiny_timeout_on_a_convnet(shared_data, tmp_path):
    """oval21 cifar_base_kw at --timeout 3: loading + densifying alone take longer on a loaded
    machine; the answer is ``timeout`` (exit 3, result file written) well before 2x the budget."""
    model, prop = oval(shared_data)
    out = tmp_path / "res.txt"
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "certprune", "verify", str(model), str(prop), "--timeout", "3",
                        "--results-file", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO)
    wall = time.monotonic() - t
    assert r.returncode == 3, r.stderr
    assert r.stdout.strip() == "timeout"
    assert out.read_text() == "timeout\n"
    assert wall < 3 * 2.0, wall


def test_watchdog_does_not_override_a_given_answer(tmp_path):
    """The first answer wins: the watchdog firing after the verifier answered writes nothing."""
    import argparse

    from certprune.commands.verify import Answer

    out = tmp_path / "res.txt"
    args = argparse.Namespace(results_file=str(out), stats_file=None)
    a = Answer()
    assert a.give(args, "unsat")
    a._fire(args)  # would os._exit if it answered; returns because an answer was given
    assert not a.give(args, "sat")
    assert out.read_text() == "unsat\n"


@pytest.fixture
def conv_instance(shared_data):
    from certprune.network import load_model
    from certprune.vnnlib import property_for_model, read_vnnlib

    model, prop = oval(shared_data)
    net = load_model(model)
    p = read_vnnlib(prop, num_outputs=net.info.num_outputs)[0]
    return net, property_for_model(p, net.info.input_shape, net.info.num_outputs)


def test_verify_stops_at_a_tiny_budget(conv_instance):
    """A budget far below one bound pass: UNKNOWN (timeout) at once (the convnet is bounded on its
    graph IR, so nothing is densified; the densifier's own deadline is tested below)."""
    from certprune.verifiers.verify import verify

    net, prop = conv_instance
    t = time.monotonic()
    res = verify(net, prop, timeout=1e-3, config={"threads": 1})
    assert res.verdict is Verdict.UNKNOWN
    assert res.stats["phase"] in ("prepare", "falsify") and res.stats["reason"] == "timeout"
    assert time.monotonic() - t < 5.0


def test_densify_and_crown_pass_raise_past_their_deadline(conv_instance):
    from certprune.bounds import crown
    from certprune.verifiers.affine import AffineReluNet
    from certprune.verifiers.bounds import affine_net

    net, prop = conv_instance
    with pytest.raises(DeadlineExceeded):
        AffineReluNet.from_module(net, net.info.input_shape, deadline=time.monotonic() - 1)
    dense = affine_net(net, net.info.input_shape)  # no deadline: the conversion completes
    from certprune.graph import build_graph
    g = build_graph(dense)
    lo = torch.tensor(prop.region.lower.reshape(1, -1), dtype=torch.float64)
    hi = torch.tensor(prop.region.upper.reshape(1, -1), dtype=torch.float64)
    with pytest.raises(DeadlineExceeded):
        crown.intermediate(g, lo, hi, intersect=True, sparse=True, deadline=time.monotonic() - 1)
    st = crown.intermediate(g, lo, hi, intersect=True, sparse=True, deadline=time.monotonic() + 600)
    assert len(st.relax) == len(g.relu_nodes)
    # the bounds of the deadline-aware pass contain sampled points' pre-activations
    x = lo + torch.rand(64, lo.shape[1], dtype=torch.float64) * (hi - lo)
    _, pre = dense.forward(x, return_preactivations=True)
    for node, h in zip(g.relu_nodes, pre):
        l, u = (b.reshape(1, -1) for b in st.pre[node])
        assert bool((h >= l - 1e-9).all() and (h <= u + 1e-9).all())
    assert np.isfinite(st.pre[g.relu_nodes[-1]][0].numpy()).all()


def test_crown_pass_checks_its_deadline_between_backward_passes(monkeypatch):
    """One node's CROWN bounds take several backward passes (per-box row groups of 128 boxes on a
    1-D node, row chunks, window chunks): the deadline is checked before each, so that a large
    node overruns it by one pass at most, not by the whole node."""
    from certprune.bounds import crown
    from certprune.graph import build_graph
    from tests.conftest import random_mlp

    g = build_graph(random_mlp([6, 40, 30, 20, 3], seed=1), (6,))
    gen = torch.Generator().manual_seed(2)
    lo = torch.rand(1024, 6, generator=gen, dtype=torch.float64) * 2 - 1
    hi = lo + 0.05  # few unstable neurons: the per-box rows pass
    calls = []
    real = crown.check_deadline
    monkeypatch.setattr(crown, "check_deadline", lambda d, w: calls.append(d) or real(d, w))
    crown.intermediate(g, lo, hi, rows="unstable", deadline=time.monotonic() + 600)
    groups = 1024 // crown.BOX_GROUP
    assert len(calls) >= groups + 2  # the third layer alone: one check per group of boxes
    # a deadline that passes inside a node stops its remaining passes
    clock = iter(range(10_000))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    calls.clear()
    with pytest.raises(DeadlineExceeded):
        crown.intermediate(g, lo, hi, rows="unstable", deadline=3.5)
    assert len(calls) <= 5
