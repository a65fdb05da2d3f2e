"""The mnist_fc search heuristics: output-diversified PGD (attack.odi_starts / odi_pgd) and
filtered smart branching (bab_relu.choose_relus_fsb).

- ODI finds the violation of the real mnist_fc 256x4 / prop_6 eps 0.05 instance (alpha-beta-CROWN:
  sat); the point lies in the VNN-LIB box and violates the property when onnxruntime runs the
  ONNX file. On properties that hold (exact MILP minimum above the threshold) the attack with ODI
  never reports a violation.
- FSB picks an unstable neuron of each domain; its child estimates are lower bounds of the
  children (checked against sampled points that satisfy the split); verify with FSB under ReLU
  branching agrees with the exact MILP minimum for both verdicts.
"""
from __future__ import annotations

import copy
import gzip

import numpy as np
import pytest
import torch

from certprune.graph import build_graph
from certprune.results import Verdict
from certprune.specs import box_property
from certprune.verifiers.attack import falsify, float32_forward, odi_starts
from certprune.verifiers.verify import verify
from tests.conftest import random_mlp
from tests.graph_milp import milp_min


def _mnist_instance(shared, net: str, prop: str):
    from certprune.network import load_model
    from certprune.vnnlib import property_for_model, read_vnnlib

    d = shared / "vnncomp" / "mnist_fc"
    path = d / "onnx" / f"mnist-net_{net}.onnx.gz"
    model = load_model(str(path))
    shape, n_out = model.info.input_shape, model.info.num_outputs
    p = read_vnnlib(str(d / "vnnlib" / f"{prop}.vnnlib.gz"), num_inputs=int(np.prod(shape)), num_outputs=n_out)[0]
    return path, model, property_for_model(p, shape, n_out)


def _onnxruntime(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(gzip.decompress(path.read_bytes()), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if isinstance(s, str) or s is None else s for s in inp.shape]
    return np.asarray(sess.run(None, {inp.name: x.astype(np.float32).reshape(shape)})[0], dtype=np.float64).ravel()


def test_odi_attack_falsifies_real_mnist_fc_instance_checked_by_onnxruntime(shared_data):
    path, model, prop = _mnist_instance(shared_data, "256x4", "prop_6_0.05")
    run = float32_forward(model, model.info.input_shape)
    lo, hi = prop.region.lower.ravel(), prop.region.upper.ravel()
    att = falsify(run, prop, lo, hi, odi_restarts=256, odi_steps=10)
    assert att.violated, att.margin
    x = att.x.astype(np.float32)
    assert np.all(x >= lo.astype(np.float32)) and np.all(x <= hi.astype(np.float32))
    y = _onnxruntime(path, x)
    assert prop.is_violated(y[None])[0]


def test_verify_reports_the_odi_counterexample_in_float32(shared_data):
    path, model, prop = _mnist_instance(shared_data, "256x4", "prop_6_0.05")
    res = verify(model, prop, timeout=120)
    assert res.verdict == Verdict.FALSIFIED, res.stats
    assert prop.is_violated(_onnxruntime(path, np.asarray(res.counterexample))[None])[0]


def test_odi_starts_lie_in_the_box():
    m = random_mlp([6, 16, 16, 3], seed=1)
    run = float32_forward(m, (6,))
    rng = np.random.default_rng(0)
    lo = rng.uniform(-1, 0, 6)
    hi = lo + rng.uniform(0.1, 1, 6)
    x = odi_starts(run, lo, hi, 64, 10, rng)
    assert x.shape == (64, 6)
    assert np.all(x >= lo.astype(np.float32)) and np.all(x <= hi.astype(np.float32))
    assert len(np.unique(x.round(6), axis=0)) > 1  # diversified, not one point


def _mlp_with_exact_min(sizes, seed: int, widths):
    """A random MLP, a random box (widths drawn from ``widths``), the output weight ``a`` and the
    exact MILP minimum of ``a . y`` over the box."""
    m = random_mlp(sizes, seed=seed)
    g = build_graph(m, (sizes[0],))
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0, sizes[0])
    hi = lo + rng.uniform(*widths, sizes[0])
    a = np.array([1.0])
    return m, lo, hi, a, milp_min(g, lo, hi, a)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_odi_attack_never_violates_a_property_that_holds(seed):
    m, lo, hi, a, best = _mlp_with_exact_min([5, 20, 20, 1], seed, (0.2, 1))
    prop = box_property(lo, hi, a[None], np.array([best - 1e-3]))  # violation a.y <= b never happens
    att = falsify(float32_forward(m, (5,)), prop, lo, hi, odi_restarts=128)
    assert not att.violated and att.margin > 0


def _fsb_setup(seed: int):
    from certprune.bounds.engine import domain_bounds
    from certprune.verifiers.problem import build_spec

    m = random_mlp([4, 12, 12, 3], seed=seed)
    g = build_graph(m, (4,))
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0, 4)
    hi = lo + rng.uniform(0.5, 1.5, 4)
    A = np.array([[1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])
    prop = box_property(lo, hi, A, np.zeros(2))
    spec = build_spec(prop, 1e-7)
    lo_t = torch.as_tensor(lo)[None].repeat(3, 1)
    hi_t = torch.as_tensor(hi)[None].repeat(3, 1)
    splits = [torch.zeros(3, n, dtype=torch.int8) for n in g.relu_sizes]
    db = domain_bounds(g, lo_t, hi_t, splits, spec.C, spec.c)
    return m, g, lo, hi, spec, lo_t, hi_t, db


@pytest.mark.parametrize("seed", [0, 3])
def test_fsb_child_estimates_are_lower_bounds_of_the_children(seed):
    from certprune.verifiers.bab_relu import _children_keys

    m, g, lo, hi, spec, lo_t, hi_t, db = _fsb_setup(seed)
    flat_l = torch.cat([l for l, _ in db.pre], 1)[0]
    flat_u = torch.cat([u for _, u in db.pre], 1)[0]
    unstable = torch.nonzero((flat_l < 0) & (flat_u > 0)).flatten()
    assert len(unstable) >= 2
    got = {}

    def key_of(lower, owner):
        got["lower"] = lower
        return lower.min(1).values
    cand = unstable[:4]
    _children_keys(g, lo_t, hi_t, db.pre, torch.zeros(len(cand), dtype=torch.long), cand, spec.C, spec.c, key_of)
    est = got["lower"].reshape(len(cand), 2, -1)  # (candidate, active/inactive, rows)
    x = torch.as_tensor(lo + np.random.default_rng(seed).random((20000, 4)) * (hi - lo))
    md = copy.deepcopy(m).double()
    with torch.no_grad():
        h1 = md[0](x)
        pre1 = h1
        h2 = md[2](torch.relu(h1))
        y = md[4](torch.relu(h2))
    pre = torch.cat([pre1, h2], 1).double()
    rows = y.double() @ spec.C.T + spec.c
    for j, n in enumerate(cand.tolist()):
        for side, mask in ((0, pre[:, n] >= 0), (1, pre[:, n] <= 0)):
            if mask.any():
                assert torch.all(est[j, side] <= rows[mask].min(0).values + 1e-9)


def test_fsb_picks_an_unstable_neuron_and_k1_is_babsr():
    from certprune.verifiers.bab_relu import choose_relus, choose_relus_fsb

    m, g, lo, hi, spec, lo_t, hi_t, db = _fsb_setup(0)
    live = torch.ones(3, spec.C.shape[0], dtype=torch.bool)

    def key_of(lower, owner):
        return spec.disjunct_max(lower).min(1).values
    flat_l = torch.cat([l for l, _ in db.pre], 1)
    flat_u = torch.cat([u for _, u in db.pre], 1)
    idx = choose_relus_fsb(g, lo_t, hi_t, db.pre, db.relu_scores, live, spec.C, spec.c, key_of, 4)
    assert all(bool(flat_l[i, k] < 0 < flat_u[i, k]) for i, k in enumerate(idx.tolist()))
    one = choose_relus_fsb(g, lo_t, hi_t, db.pre, db.relu_scores, live, spec.C, spec.c, key_of, 1)
    assert torch.equal(one, choose_relus(db.relu_scores, live, db.pre))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("side", ["certified", "falsified"])
def test_relu_branching_with_fsb_agrees_with_exact_milp(seed, side):
    m, lo, hi, a, best = _mlp_with_exact_min([6, 10, 10, 1], seed, (0.5, 1.5))
    b = best - 0.05 if side == "certified" else best + 0.05
    prop = box_property(lo, hi, a[None], np.array([b]))
    res = verify(m.float(), prop, timeout=60, config={"strategy": "relu", "branch_candidates": 4,
                                                      "milp_max_unstable": 0, "attack_restarts": 0})
    want = Verdict.CERTIFIED if side == "certified" else Verdict.FALSIFIED
    assert res.verdict == want, res.stats
    if side == "certified":
        assert res.stats.get("relu_splits", 0) > 0  # the search (and so FSB) did branch
