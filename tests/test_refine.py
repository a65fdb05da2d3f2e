"""Root intermediate-bound refinement (certprune.verifiers.refine): the refined bounds are sound
(they contain every sampled point's pre-activations), never looser than CROWN's, tighter than
CROWN's somewhere on a deep random MLP; the weak-duality bound is below the true LP optimum for
any multipliers; verify with refinement agrees with the exact MILP minimum both ways; the
target-limited encoding equals the forward pass on the linear piece of a point."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certprune.bounds import crown
from certprune.graph import build_graph
from certprune.results import Verdict
from certprune.specs import box_property
from certprune.verifiers.refine import applies, dual_bound, refine_bounds
from certprune.verifiers.verify import verify
from tests.conftest import random_mlp
from tests.graph_milp import milp_min


def _setup(seed: int, sizes=(8, 24, 24, 24, 3), width=(0.5, 1.5)):
    m = random_mlp(list(sizes), seed=seed)
    g = build_graph(m, (sizes[0],))
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0, sizes[0])
    hi = lo + rng.uniform(*width, sizes[0])
    return m, g, lo, hi


def _pre_values(g, x: np.ndarray) -> dict[int, np.ndarray]:
    with torch.no_grad():
        vals = g.forward(torch.as_tensor(x), keep=True)
    return {g.nodes[r].inputs[0]: vals[g.nodes[r].inputs[0]].reshape(len(x), -1).numpy() for r in g.relu_nodes}


@pytest.mark.parametrize("seed,milp_limit", [(0, 0.0), (1, 0.0), (2, 0.0), (0, 0.2)])
def test_refined_bounds_contain_sampled_points_and_are_no_looser_than_crown(seed, milp_limit):
    m, g, lo, hi = _setup(seed)
    rng = np.random.default_rng(seed + 10)
    x = np.concatenate([lo + rng.random((5000, len(lo))) * (hi - lo),
                        np.where(rng.random((5000, len(lo))) < 0.5, lo, hi)])  # 10^4 points of the box
    steer = lo + rng.random((64, len(lo))) * (hi - lo)
    prior, stats = refine_bounds(g, lo, hi, 3, None, milp_limit, steer, both=True)
    st = crown.intermediate(g, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None], intersect=True, sparse=True)
    vals = _pre_values(g, x)
    tighter = 0.0
    for r in g.relu_nodes[:3]:
        p = g.nodes[r].inputs[0]
        l, u = (t.reshape(-1).numpy() for t in prior[p])
        assert np.all(vals[p] >= l - 1e-9) and np.all(vals[p] <= u + 1e-9), p
        cl, cu = (t.reshape(-1).numpy() for t in st.pre[r])
        if r == g.relu_nodes[0]:
            assert np.allclose(l, cl) and np.allclose(u, cu)
        tighter += float(np.maximum(l - cl, 0).sum() + np.maximum(cu - u, 0).sum())
    assert stats["refine_solves"] > 0
    assert tighter > 1e-6  # the LP over the layers below is tighter than CROWN's relaxation somewhere


def test_milp_refinement_stabilises_more_than_the_lp_relaxation():
    m, g, lo, hi = _setup(4, sizes=(8, 16, 16, 3), width=(1.0, 2.0))
    lp, s_lp = refine_bounds(g, lo, hi, 2, None, 0.0, None, both=True)
    mi, s_mi = refine_bounds(g, lo, hi, 2, None, 2.0, None, both=True)
    p = g.nodes[g.relu_nodes[1]].inputs[0]
    assert torch.all(mi[p][0] >= lp[p][0] - 1e-6) and torch.all(mi[p][1] <= lp[p][1] + 1e-6)
    assert s_mi["refine_unstable_after"][1] <= s_lp["refine_unstable_after"][1]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dual_bound_is_below_the_lp_optimum_for_any_multipliers(seed):
    import scipy.sparse as sp
    from scipy.optimize import linprog

    rng = np.random.default_rng(seed)
    n, k, e = 6, 5, 2
    R = sp.csr_matrix(rng.normal(size=(k + e, n)))
    x0 = rng.uniform(-0.5, 0.5, n)  # a feasible point
    rx = R @ x0
    rlo = np.r_[np.where(rng.random(k) < 0.5, -np.inf, rx[:k] - 1), rx[k:]]
    rhi = np.r_[rx[:k] + rng.uniform(0, 1, k), rx[k:]]  # k ranged / one-sided rows, e equalities
    vlo, vhi = -np.ones(n), np.ones(n)
    cost = rng.normal(size=n)
    fin = np.isfinite(rlo[:k])
    A_ub = sp.vstack([R[:k], -R[:k][fin]])
    res = linprog(cost, A_ub=A_ub, b_ub=np.r_[rhi[:k], -rlo[:k][fin]], A_eq=R[k:], b_eq=rx[k:],
                  bounds=np.c_[vlo, vhi], method="highs")
    assert res.status == 0
    for _ in range(50):
        y = rng.normal(size=k + e) * 2
        assert dual_bound(cost, R, rlo, rhi, vlo, vhi, y) <= res.fun + 1e-9
    # the HiGHS model of refine (warm-started, its own row duals) gives the LP optimum
    from certprune.verifiers.refine import _highs

    class Enc:
        n_vars, rows, integrality = n, (R, rlo, rhi), np.zeros(n)
    h, core = _highs(Enc, vlo, vhi, False)
    h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
    h.run()
    y = np.asarray(h.getSolution().row_dual)
    assert res.fun - 1e-6 <= dual_bound(cost, R, rlo, rhi, vlo, vhi, y) <= res.fun + 1e-9


def test_target_encoding_is_the_forward_pass_on_a_points_linear_piece():
    from certprune.graph.encode import encode

    m, g, lo, hi = _setup(5, sizes=(6, 10, 10, 10, 2))
    x = lo + np.random.default_rng(5).random(6) * (hi - lo)
    vals = _pre_values(g, x[None])
    r1 = g.relu_nodes[1]
    p = g.nodes[r1].inputs[0]
    z0 = vals[g.nodes[g.relu_nodes[0]].inputs[0]][0]
    pre = [(np.where(z0 >= 0, 0.0, -10.0) + np.where(z0 >= 0, 0, 0), np.where(z0 >= 0, 10.0, 0.0))]
    enc = encode(g, pre, None, target=p)  # every ReLU below stable: the affine map of x's piece
    assert enc.n_vars == enc.n_in
    assert np.allclose(np.asarray(enc.out.M) @ x + enc.out.c, vals[p][0], atol=1e-9)
    with pytest.raises(ValueError):
        encode(g, pre + pre, None, target=p)


def test_applies_to_mlps_only():
    m, g, lo, hi = _setup(0)
    assert applies(g, 3) and not applies(g, 1)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    assert not applies(build_graph(conv, (1, 4, 4)), 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("side", ["certified", "falsified"])
def test_verify_with_refinement_agrees_with_exact_milp(seed, side):
    m = random_mlp([30, 16, 16, 16, 1], seed=seed)  # 30 inputs: ReLU branching, refinement on
    g = build_graph(m, (30,))
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0, 30)
    hi = lo + rng.uniform(0.05, 0.3, 30)
    best = milp_min(g, lo, hi, np.array([1.0]))
    b = best - 0.02 if side == "certified" else best + 0.02
    prop = box_property(lo, hi, np.array([[1.0]]), np.array([b]))
    res = verify(m.float(), prop, timeout=60, config={"milp_max_unstable": 0, "attack_restarts": 0,
                                                      "attack_odi_restarts": 0, "refine_milp_limit": 1.0,
                                                      "refine_min_inputs": 30})
    want = Verdict.CERTIFIED if side == "certified" else Verdict.FALSIFIED
    assert res.verdict == want, res.stats
    assert res.stats["strategy"] == "relu"
    if side == "certified" and res.stats.get("phase") != "bound":
        assert "time_refine" in res.stats


@pytest.mark.parametrize("name", ["residual_mlp", "residual_relu_add", "concat_branches", "twin_mlp"])
def test_refined_bounds_on_graphs_contain_sampled_points(name):
    """Residual adds, parallel branches and twin copies: each layer's LPs encode only the ReLU
    nodes its input depends on; the bounds still contain every sampled point."""
    from tests.graph_nets import GRAPHS

    make, shape = GRAPHS[name]
    g = build_graph(make(2), shape)
    rng = np.random.default_rng(2)
    lo = rng.uniform(-1, 0.5, g.input_dim)
    hi = lo + rng.uniform(0.2, 0.8, g.input_dim)
    prior, _ = refine_bounds(g, lo, hi, 4, None, 0.0, None, both=True)
    x = np.concatenate([lo + rng.random((5000, len(lo))) * (hi - lo),
                        np.where(rng.random((5000, len(lo))) < 0.5, lo, hi)])
    vals = _pre_values(g, x)
    for p, (l, u) in prior.items():
        assert np.all(vals[p] >= l.reshape(-1).numpy() - 1e-9) and np.all(vals[p] <= u.reshape(-1).numpy() + 1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_refined_bounds_hold_where_large_terms_cancel(seed):
    """Layer 1 duplicated (stable, weights ~1e4), layer 2 ``[W2, -W2]``: every layer-2
    pre-activation is identically 0 on the box. The weak-duality bound's slack must cover the
    rounding of the cancelling terms of ``cost - R'y`` (a slack relative to ``|g|`` claimed lower
    bounds of +1e-7 here): refined bounds must contain 0."""
    from torch import nn
    from certprune.bounds.engine import _flat
    from certprune.verifiers.refine import neuron_bounds
    rng = np.random.default_rng(seed)
    n, h, sc = 3, 10, 1e4
    m = nn.Sequential(nn.Linear(n, 2 * h), nn.ReLU(), nn.Linear(2 * h, 6), nn.ReLU(), nn.Linear(6, 1)).double()
    with torch.no_grad():
        W1 = rng.uniform(0.1, 1, (h, n)) * sc
        m[0].weight.copy_(torch.tensor(np.r_[W1, W1]))
        m[0].bias.zero_()
        W2 = rng.normal(size=(6, h)) * sc
        m[2].weight.copy_(torch.tensor(np.c_[W2, -W2]))
        m[2].bias.zero_()
    g = build_graph(m, (n,))
    lo, hi = np.full(n, 1.0), np.full(n, 2.0)
    st = crown.intermediate(g, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None], intersect=True, sparse=True)
    r1, r2 = g.relu_nodes[:2]
    pre = [tuple(t[0].numpy() for t in _flat(st.pre[r1]))]
    nl, nu = neuron_bounds(g, lo, hi, pre, g.nodes[r2].inputs[0], np.arange(6), np.zeros(6, np.int64))
    assert np.all(nl <= 0) and np.all(nu >= 0)
