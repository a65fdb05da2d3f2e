"""Red team of the graph engine (beta-CROWN splits, forward mode, patches, float32 bound, IR
leaves) on random operator DAGs (``tests.test_redteam_today.random_graph``: conv with stride /
padding / dilation / groups, BatchNorm, Pad, AvgPool, constant Mul / Div / Sub, Permute,
residual Add / Sub, Gather with repeats, Concat).

Finding fixed here (certprune/bounds/crown.py ``intermediate``): with split vectors present
(branch and bound always passes them, all zero at the root), a domain was called infeasible
wherever a ReLU input's lower bound exceeded its upper bound -- which happens *by rounding* on
values that are constant over the box (a padded border of a conv, scaled: CROWN and the interval
image intersected cross by an ulp). The root domain was then dropped, and ``verify`` answered
CERTIFIED on a property that a sampled point violates by 1e-3. Now a domain is empty only where
a split contradicts the bounds beyond a 1e-9 relative tolerance, and crossing bounds are widened.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certprune.bounds import crown
from certprune.bounds.engine import domain_bounds
from certprune.bounds.forward import forward_pass
from certprune.graph import build_graph
from certprune.network import as_network
from certprune.results import Verdict
from certprune.specs import box_property
from certprune.verifiers.verify import verify
from tests.test_redteam_today import random_graph

NO_ATTACK = dict(attack_restarts=0, attack_samples=0, attack_corners=0, strategy="relu", milp_max_unstable=0)


def _setup(seed: int, n: int = 3000, width: float = 0.3):
    m, shape = random_graph(seed)
    g = build_graph(m, shape)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, g.input_dim, generator=gen, dtype=torch.float64)
    lo, hi = x0 - width, x0 + width
    u = torch.rand(n, g.input_dim, generator=gen, dtype=torch.float64)
    u[:100] = (u[:100] > 0.5).double()  # corners
    x = lo + u * (hi - lo)
    vals = g.forward(x, keep=True)
    tol = 1e-7 * (1 + max(float(v.abs().max()) for v in vals))
    return m, shape, g, lo, hi, x, vals, tol


def _inside(v, l, u, tol) -> bool:
    v = v.reshape(v.shape[0], -1)
    return bool(((v >= l.reshape(1, -1) - tol) & (v <= u.reshape(1, -1) + tol)).all())


def test_constant_values_crossing_by_rounding_do_not_empty_the_root_domain():
    """Seed 1: relu(x * c) after a padded stride-2 conv has border values constant over the box,
    whose CROWN/interval bounds cross by ~1e-15; all-zero splits must leave the domain feasible."""
    _, _, g, lo, hi, _, _, _ = _setup(1)
    st = crown.intermediate(g, lo, hi, intersect=True, sparse=True)
    crossing = sum(int((st.bounds[g.nodes[i].inputs[0]][0] > st.bounds[g.nodes[i].inputs[0]][1]).sum())
                   for i in g.relu_nodes)
    assert crossing > 0  # the situation the test is about (rounding makes l > u)
    zero = {i: torch.zeros(1, n, dtype=torch.int8) for i, n in zip(g.relu_nodes, g.relu_sizes)}
    st = crown.intermediate(g, lo, hi, intersect=True, sparse=True, splits=zero)
    assert not bool(st.infeasible[0])
    for i in g.relu_nodes:
        assert (st.pre[i][0] <= st.pre[i][1]).all()


@pytest.mark.parametrize("seed", [1, 29])
def test_verify_without_attack_never_certifies_a_sampled_violation(seed):
    """Branch and bound alone (attacks off): a property violated at a sampled point by 1e-3 is
    falsified (it was CERTIFIED: the root domain was dropped as infeasible)."""
    m, shape, g, lo, hi, x, vals, _ = _setup(seed, n=5000)
    a = np.array([1.0, -1.0, 0.0])
    v = vals[g.output].reshape(len(x), -1).numpy() @ a
    prop = box_property(lo.numpy().ravel(), hi.numpy().ravel(), a[None], np.array([v.min() + 1e-3]))
    res = verify(as_network(m.float(), shape), prop, timeout=60, config=NO_ATTACK)
    assert res.verdict == Verdict.FALSIFIED, res.stats
    cex = torch.as_tensor(res.counterexample, dtype=torch.float32).reshape(1, *shape)
    with torch.no_grad():
        y = m.float()(cex).double().numpy().ravel()
    assert float(a @ y) <= v.min() + 1e-3




@pytest.mark.parametrize("seed", range(0, 12))
def test_split_domains_with_points_are_feasible_and_bounded_below(seed):
    """Random split phases (1-4 unstable neurons per domain) on random DAGs: every domain that
    holds sampled points respecting its phases is feasible, its clamped pre-activation bounds
    contain those points' values and its CROWN / beta-CROWN lower bound is below their outputs."""
    _, _, g, lo, hi, x, vals, tol = _setup(seed)
    n = len(x)
    rng = np.random.default_rng(seed)
    st = crown.intermediate(g, lo, hi, intersect=True, sparse=True)
    unst = torch.cat([((st.pre[i][0] < 0) & (st.pre[i][1] > 0)).reshape(-1) for i in g.relu_nodes])
    cand = torch.nonzero(unst).flatten().numpy()
    if len(cand) == 0:
        pytest.skip("no unstable neuron on this box")
    nd = 6
    splits = torch.zeros(nd, sum(g.relu_sizes), dtype=torch.int8)
    for k in range(nd):
        ns = min(len(cand), int(rng.integers(1, 5)))
        idx = rng.choice(cand, ns, replace=False)
        splits[k, idx] = torch.as_tensor(rng.choice([-1, 1], ns), dtype=torch.int8)
    per = list(torch.split(splits, g.relu_sizes, dim=1))
    C = torch.as_tensor(rng.normal(size=(2, g.output_dim)))
    c = torch.as_tensor(rng.normal(size=2))
    LO, HI = lo.expand(nd, -1).clone(), hi.expand(nd, -1).clone()
    checked = 0
    for iters in (0, 20):
        db = domain_bounds(g, LO, HI, per, C, c, iters=iters)
        for k in range(nd):
            ok = torch.ones(n, dtype=torch.bool)
            for i, s in zip(g.relu_nodes, per):
                ok &= ((s[k].double() * vals[g.nodes[i].inputs[0]].reshape(n, -1)) >= 0).all(1)
            if not ok.any():
                continue
            assert not bool(db.infeasible[k]), (seed, iters, k)
            y = vals[g.output].reshape(n, -1)[ok] @ C.T + c
            assert (y >= db.lower[k] - tol).all(), (seed, iters, k)
            for j, i in enumerate(g.relu_nodes):
                z = vals[g.nodes[i].inputs[0]].reshape(n, -1)[ok]
                assert ((z >= db.pre[j][0][k] - tol) & (z <= db.pre[j][1][k] + tol)).all(), (seed, iters, k, j)
            checked += int(ok.sum())
    assert checked > 0


@pytest.mark.parametrize("seed", range(0, 12))
@pytest.mark.parametrize("intersect", [False, True])
def test_forward_and_crown_bounds_contain_samples_at_every_node(seed, intersect):
    _, _, g, lo, hi, x, vals, tol = _setup(seed)
    res = forward_pass(g, lo, hi, intersect_ibp=intersect, every_node=True)
    st = crown.intermediate(g, lo, hi, intersect=intersect, sparse=intersect)
    for t in range(1, len(g.nodes)):
        assert _inside(vals[t], res.bounds[t][0][0], res.bounds[t][1][0], tol), ("forward", seed, t)
        if t in st.bounds:
            assert _inside(vals[t], st.bounds[t][0][0], st.bounds[t][1][0], tol), ("crown", seed, t)
