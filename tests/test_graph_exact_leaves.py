"""Exact leaves built from the graph IR (``graph.encode`` + ``lp_leaf`` / ``milp_leaf``): on
chains, residual adds, concats, convolutions and a twin graph, the encoding of a linear piece
equals the forward pass, the MILP minimum equals an independent MILP (tests/graph_milp.py) or,
for the convnet, is attained at its own optimum and never above sampled points, and LP leaves on
fully split domains agree with brute force over the points of the domain."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certprune.bounds import crown
from certprune.bounds.engine import domain_bounds
from certprune.graph import build_graph
from certprune.graph.encode import encode
from certprune.results import Verdict
from certprune.specs import box_property
from certprune.verifiers.lp_leaf import solve_leaf
from certprune.verifiers.milp_leaf import solve_milp
from certprune.verifiers.verify import verify
from tests.graph_milp import milp_min
from tests.graph_nets import GRAPHS
from tests.conftest import random_mlp

NAMES = ["residual_mlp", "residual_relu_add", "concat_branches", "conv_residual", "twin_mlp", "chain"]


def _graph(name: str, seed: int):
    if name == "chain":
        m = random_mlp([4, 12, 10, 3], seed=seed)
        return m, build_graph(m, (4,))
    make, shape = GRAPHS[name]
    m = make(seed)
    return m, build_graph(m, shape)


def _box(g, seed: int, width=(0.3, 0.9)):
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0.3, g.input_dim)
    return lo, lo + rng.uniform(*width, g.input_dim), rng


def _pre(g, lo, hi, splits=None):
    sp = None if splits is None else dict(zip(g.relu_nodes, splits))
    st = crown.intermediate(g, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None], intersect=True, sparse=True,
                            splits=sp)
    return [tuple(t.reshape(-1).numpy() for t in st.pre[i]) for i in g.relu_nodes], st


@pytest.mark.parametrize("name", NAMES)
def test_encoding_of_a_linear_piece_equals_the_forward_pass(name):
    _, g = _graph(name, 1)
    lo, _, rng = _box(g, 1)
    hi = lo + 1e-7  # a box this small lies in one linear piece (checked: no unstable neuron)
    pre, _ = _pre(g, lo, hi)
    assert all(not ((l < 0) & (u > 0)).any() for l, u in pre)
    enc = encode(g, pre)
    assert enc.n_vars == g.input_dim
    x = lo + rng.random((20, g.input_dim)) * (hi - lo)
    y = g.forward(torch.as_tensor(x)).reshape(20, -1).numpy()
    np.testing.assert_allclose(x @ np.asarray(enc.out.M).T + enc.out.c, y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["residual_mlp", "residual_relu_add", "concat_branches", "twin_mlp", "chain"])
def test_milp_leaf_minimum_equals_an_independent_milp(name):
    _, g = _graph(name, 2)
    lo, hi, rng = _box(g, 2)
    a = rng.normal(size=g.output_dim)
    best = milp_min(g, lo, hi, a)
    pre, _ = _pre(g, lo, hi)
    assert any(((l < 0) & (u > 0)).any() for l, u in pre)  # binaries are needed
    above = solve_milp(g, lo, hi, pre, a[None], np.array([best - 0.01]), 1e-9, 30.0)
    assert above.status == "refuted"
    below = solve_milp(g, lo, hi, pre, a[None], np.array([best + 0.01]), 1e-9, 30.0)
    assert below.status == "candidate" and below.bound == pytest.approx(-0.01, abs=1e-5)
    y = g.forward(torch.as_tensor(below.x)[None]).reshape(-1).numpy()
    assert float(a @ y) == pytest.approx(best, abs=1e-5)


def test_milp_leaf_on_a_residual_convnet_is_attained_and_below_samples():
    _, g = _graph("conv_residual", 3)
    lo, hi, rng = _box(g, 3, width=(0.05, 0.2))
    a = rng.normal(size=g.output_dim)
    pre, _ = _pre(g, lo, hi)
    out = solve_milp(g, lo, hi, pre, a[None], np.array([1e3]), 1e-9, 60.0)
    assert out.status == "candidate"
    y = g.forward(torch.as_tensor(out.x)[None]).reshape(-1).numpy()
    t = float(a @ y)
    assert t - 1e3 == pytest.approx(out.bound, abs=1e-5)  # the optimum is the forward value at its point
    x = lo + rng.random((3000, g.input_dim)) * (hi - lo)
    ys = g.forward(torch.as_tensor(x)).reshape(3000, -1).numpy()
    assert (ys @ a >= t - 1e-6).all()
    assert solve_milp(g, lo, hi, pre, a[None], np.array([t - 0.01]), 1e-9, 60.0).status == "refuted"


def _piece_lp_min(g, x0, lo, hi, a, signs):
    """Independent reference: min of ``a . y`` over the box points with the phases ``signs``
    (+1 / -1 per ReLU input), the graph being affine there with the Jacobians at ``x0``
    (torch autograd), by scipy linprog."""
    from scipy.optimize import linprog

    def f(x):
        vals = g.forward(x[None], keep=True)
        return torch.cat([vals[g.nodes[i].inputs[0]].reshape(-1) for i in g.relu_nodes] + [vals[g.output].reshape(-1)])
    x0t = torch.as_tensor(x0)
    J = torch.autograd.functional.jacobian(f, x0t).numpy()
    v0 = f(x0t).detach().numpy()
    off = v0 - J @ x0
    n_pre = sum(g.relu_sizes)
    Gz, gz, Gy, gy = J[:n_pre], off[:n_pre], J[n_pre:], off[n_pre:]
    res = linprog(a @ Gy, A_ub=-signs[:, None] * Gz, b_ub=signs * gz, bounds=list(zip(lo, hi)), method="highs")
    assert res.status == 0
    return float(res.fun + a @ gy)


@pytest.mark.parametrize("name", ["chain", "residual_mlp", "concat_branches", "twin_mlp"])
def test_lp_leaf_on_fully_split_domains_agrees_with_brute_force(name):
    """Every ReLU split to the phase of a sampled point: the leaf refutes just below the exact
    minimum over the domain (an independent LP through autograd Jacobians) and returns a
    candidate just above it whose float64 value and phases are right; no sampled point of the
    domain is below that minimum."""
    _, g = _graph(name, 4)
    lo, hi, rng = _box(g, 4)
    a = rng.normal(size=g.output_dim)
    x = lo + rng.random((20000, g.input_dim)) * (hi - lo)
    vals = g.forward(torch.as_tensor(x), keep=True)
    pats = np.concatenate([(vals[g.nodes[i].inputs[0]].reshape(len(x), -1) >= 0).numpy() for i in g.relu_nodes], 1)
    ys = vals[g.output].reshape(len(x), -1).numpy() @ a
    uniq, inv, counts = np.unique(pats, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    tried = 0
    for p in np.argsort(-counts)[:4]:
        flat = np.where(uniq[p], 1, -1).astype(np.int8)
        splits = [torch.as_tensor(s)[None] for s in np.split(flat, np.cumsum(g.relu_sizes)[:-1])]
        db = domain_bounds(g, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None], splits,
                           torch.as_tensor(a)[None], torch.zeros(1))
        assert not bool(db.infeasible[0]) and int(db.unstable_count()[0]) == 0
        pre = [(l[0].numpy(), u[0].numpy()) for l, u in db.pre]
        sp = [s[0].numpy() for s in splits]
        exact = _piece_lp_min(g, x[np.flatnonzero(inv == p)[0]], lo, hi, a, flat.astype(np.float64))
        assert float(ys[inv == p].min()) >= exact - 1e-9
        assert solve_leaf(g, lo, hi, pre, sp, a[None], np.array([exact - 0.01]), 1e-9, 30.0).status == "refuted"
        got = solve_leaf(g, lo, hi, pre, sp, a[None], np.array([exact + 0.01]), 1e-9, 30.0)
        assert got.status == "candidate" and got.bound <= 1e-9
        v = g.forward(torch.as_tensor(got.x)[None], keep=True)
        assert float(v[g.output].reshape(-1).numpy() @ a) <= exact + 0.01 + 1e-7
        z = np.concatenate([v[g.nodes[i].inputs[0]].reshape(-1).numpy() for i in g.relu_nodes])
        assert (flat * z >= -1e-7).all()
        tried += 1
    assert tried >= 2


@pytest.mark.parametrize("side", ["certified", "falsified"])
def test_verify_residual_net_agrees_with_exact_milp(side):
    """ReLU branching on a residual net: both verdicts agree with the independent exact minimum.
    The MILP leaf is not used there (the encoder's rows of a sum of branches are float64
    products, which HiGHS's answer would be trusted on: ``graph.encode.rows_copied``); LP leaves
    with their rigorous dual certificate decide."""
    m, g = _graph("residual_relu_add", 6)
    lo, hi, rng = _box(g, 6, width=(0.1, 0.4))
    a = rng.normal(size=g.output_dim)
    best = milp_min(g, lo, hi, a)
    b = best - 0.01 if side == "certified" else best + 0.01
    res = verify(m.float(), box_property(lo, hi, a[None], np.array([b])), timeout=60,
                 config={"strategy": "relu", "attack_restarts": 0, "attack_samples": 0, "attack_corners": 0,
                         "milp_after": 0})
    assert res.verdict == (Verdict.CERTIFIED if side == "certified" else Verdict.FALSIFIED), res.stats
    if side == "certified":
        assert res.stats["phase"] == "bab" and res.stats.get("milp_calls", 0) == 0
    if side == "falsified":
        y = m.float()(torch.as_tensor(res.counterexample).reshape(1, -1)).detach().double().numpy().ravel()
        assert float(a @ y) <= b


def _other_op_nets():
    """AvgPool, zero Pad, Permute, MatMul by a constant, a constant Sub (Scale), Conv1d with
    BatchNorm1d, and the dense fallback (ConvTranspose2d): every remaining operator's encoding."""
    from torch import nn

    from certprune.io import onnx_ops as ops
    torch.manual_seed(0)
    pool = nn.Sequential(ops.ConstantPad((1, 0, 0, 1)), nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AvgPool2d(2),
                         ops.Permute((0, 2, 3, 1)), ops.MatMulConst(np.random.default_rng(0).normal(size=(3, 2))),
                         ops.ConstBinary("Sub", np.float32(0.5), True), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).eval()
    c1 = nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.BatchNorm1d(3).eval(), nn.ReLU(),
                       nn.Flatten(), nn.Linear(9, 2)).eval()
    dense = nn.Sequential(nn.ConvTranspose2d(1, 2, 2, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)).eval()
    rows = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).eval()  # Linear on (2, 3)
    return [(pool, (2, 5, 5), "pool"), (c1, (2, 6), "conv"), (dense, (1, 2, 2), "dense"), (rows, (2, 3), "linear")]


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_every_operator_encodes_its_linear_piece_and_the_milp_is_attained(k):
    m, shape, kind = _other_op_nets()[k]
    g = build_graph(m, shape)
    assert kind in [n.op.kind for n in g.nodes[1:]]
    lo, _, rng = _box(g, 7)
    hi = lo + 1e-7
    pre, _ = _pre(g, lo, hi)
    enc = encode(g, pre)
    assert enc.n_vars == g.input_dim  # one linear piece
    x = lo + rng.random((10, g.input_dim)) * (hi - lo)
    y = g.forward(torch.as_tensor(x)).reshape(10, -1).numpy()
    np.testing.assert_allclose(x @ np.asarray(enc.out.M).T + enc.out.c, y, rtol=1e-10, atol=1e-10)
    hi = lo + 0.3  # now with unstable neurons: the MILP optimum is attained and below the samples
    pre, _ = _pre(g, lo, hi)
    a = rng.normal(size=g.output_dim)
    out = solve_milp(g, lo, hi, pre, a[None], np.array([1e3]), 1e-9, 60.0)
    assert out.status == "candidate"
    t = float(a @ g.forward(torch.as_tensor(out.x)[None]).reshape(-1).numpy())
    assert t - 1e3 == pytest.approx(out.bound, abs=1e-5)
    xs = lo + rng.random((3000, g.input_dim)) * (hi - lo)
    assert (g.forward(torch.as_tensor(xs)).reshape(3000, -1).numpy() @ a >= t - 1e-6).all()
