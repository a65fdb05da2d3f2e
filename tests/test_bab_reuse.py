"""Children of a ReLU split start from their parent's ReLU input bounds (``BabSettings.interm_reuse``).

- ``domains.outward32``: the float32 copies kept in the frontier contain the float64 bounds.
- ``engine.domain_bounds(parent=, reuse_upto=)``: the bounds of a child (and of a grandchild
  built from the child's bounds), with the layers up to the split one taken as they are, contain
  10^4 sampled points of the child domain (box and every split constraint), pre-activations and
  spec rows, with and without alpha/beta steps; a fresh pass with the parent's bounds only
  intersected gives the same bounds for the reused layers.
- Children bounded from a parent's kept alpha/beta iterate, or from arbitrary starting values,
  still contain their sampled points (``warm``/``keep_params``).
- The search with reuse on and off agrees with the exact MILP minimum for both verdicts; the
  capped MILP leaf refutes below and finds a candidate above the exact minimum.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from certprune.bounds.engine import domain_bounds
from certprune.graph import build_graph
from certprune.results import Verdict
from certprune.specs import box_property
from certprune.verifiers.domains import outward32
from certprune.verifiers.problem import build_spec
from certprune.verifiers.verify import verify
from tests.conftest import random_mlp
from tests.graph_milp import milp_min


def test_outward32_contains_the_float64_bounds():
    rng = np.random.default_rng(0)
    lo = torch.as_tensor(np.concatenate([rng.normal(0, 1, 5000) * 10.0 ** rng.integers(-30, 30, 5000),
                                         [0.0, -0.0, 1e300, -1e300, -np.inf, 1e-320]]))
    hi = lo + torch.as_tensor(np.abs(rng.normal(0, 1, len(lo))))
    l32, h32 = outward32(lo, hi)
    assert l32.dtype == torch.float32 and h32.dtype == torch.float32
    assert torch.all(l32.double() <= lo) and torch.all(h32.double() >= hi)
    normal = (lo.abs() > 1e-30) & (lo.abs() < 1e30)  # float32's normal range: outward by an ulp, not more
    assert torch.all((l32.double() - lo)[normal].abs() <= 1e-6 * lo[normal].abs())


SIZES = [5, 14, 14, 14, 3]


def _net(seed: int):
    m = random_mlp(SIZES, seed=seed)
    g = build_graph(m, (SIZES[0],))
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0, SIZES[0])
    hi = lo + rng.uniform(0.5, 1.5, SIZES[0])
    prop = box_property(lo, hi, np.array([[1.0, -1.0, 0.0], [1.0, 0.0, -1.0]]), np.zeros(2))
    return m, g, lo, hi, build_spec(prop, 1e-7)


def _samples(m, lo, hi, n: int, seed: int):
    """Points of the box, their ReLU inputs (layers concatenated) and outputs, in float64."""
    x = torch.as_tensor(lo + np.random.default_rng(seed).random((n, len(lo))) * (hi - lo))
    md = copy.deepcopy(m).double()
    pre, h = [], x
    with torch.no_grad():
        for layer in md:
            h = layer(h)
            if isinstance(layer, torch.nn.Linear):
                pre.append(h)
            else:
                pass
    return torch.cat(pre[:-1], 1), h


def _split_vec(g, flat: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(flat[None], g.relu_sizes, dim=1))


def _layer_of(g, k: int) -> int:
    return int(np.searchsorted(np.cumsum(g.relu_sizes), k, side="right"))


def _check_contains(db, spec, pre, y, mask, tol=1e-9):
    flat_l = torch.cat([l for l, _ in db.pre], 1)[0]
    flat_u = torch.cat([u for _, u in db.pre], 1)[0]
    assert mask.sum() > 100  # the sampled child domain is not empty
    p = pre[mask]
    assert torch.all(p >= flat_l - tol) and torch.all(p <= flat_u + tol)
    rows = y[mask] @ spec.C.T + spec.c
    assert torch.all(db.lower[0] <= rows.min(0).values + tol)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("iters", [0, 6])
def test_child_and_grandchild_bounds_with_reused_parent_bounds_contain_sampled_points(seed, iters):
    m, g, lo, hi, spec = _net(seed)
    lo_t, hi_t = torch.as_tensor(lo)[None], torch.as_tensor(hi)[None]
    n = sum(g.relu_sizes)
    root = domain_bounds(g, lo_t, hi_t, _split_vec(g, torch.zeros(n, dtype=torch.int8)), spec.C, spec.c)
    pre, y = _samples(m, lo, hi, 10_000, seed)
    flat_l = torch.cat([l for l, _ in root.pre], 1)[0]
    flat_u = torch.cat([u for _, u in root.pre], 1)[0]
    unstable = torch.nonzero((flat_l < 0) & (flat_u > 0)).flatten().tolist()
    assert len(unstable) >= 3
    rng = np.random.default_rng(seed)
    checked = 0
    for k in rng.choice(unstable, 3, replace=False).tolist():
        for sign in (1, -1):
            sp = torch.zeros(n, dtype=torch.int8)
            sp[k] = sign
            mask = (pre[:, k] * sign >= 0)
            parent = root.pre
            child = domain_bounds(g, lo_t, hi_t, _split_vec(g, sp), spec.C, spec.c, iters,
                                  parent=parent, reuse_upto=_layer_of(g, k))
            if bool(child.infeasible[0]) or mask.sum() <= 100:
                continue
            _check_contains(child, spec, pre, y, mask)
            # the reused layers equal a fresh pass's (parent bounds only intersected)
            fresh = domain_bounds(g, lo_t, hi_t, _split_vec(g, sp), spec.C, spec.c, parent=parent)
            for j in range(_layer_of(g, k) + 1):
                assert torch.equal(child.pre[j][0], fresh.pre[j][0]) and torch.equal(child.pre[j][1], fresh.pre[j][1])
            # a grandchild: a second split on a neuron still unstable in the child, from the child's bounds
            cl = torch.cat([l for l, _ in child.pre], 1)[0]
            cu = torch.cat([u for _, u in child.pre], 1)[0]
            more = torch.nonzero((cl < 0) & (cu > 0)).flatten().tolist()
            if not more:
                continue
            k2 = more[len(more) // 2]
            for sign2 in (1, -1):
                sp2 = sp.clone()
                sp2[k2] = sign2
                mask2 = mask & (pre[:, k2] * sign2 >= 0)
                gc = domain_bounds(g, lo_t, hi_t, _split_vec(g, sp2), spec.C, spec.c, iters,
                                   parent=[(l.clone(), u.clone()) for l, u in child.pre], reuse_upto=_layer_of(g, k2))
                if not bool(gc.infeasible[0]) and mask2.sum() > 100:
                    _check_contains(gc, spec, pre, y, mask2)
                    checked += 1
    assert checked > 0


def test_reused_bounds_are_at_least_as_tight_as_a_fresh_pass_without_them():
    m, g, lo, hi, spec = _net(1)
    lo_t, hi_t = torch.as_tensor(lo)[None], torch.as_tensor(hi)[None]
    n = sum(g.relu_sizes)
    root = domain_bounds(g, lo_t, hi_t, _split_vec(g, torch.zeros(n, dtype=torch.int8)), spec.C, spec.c)
    flat_l = torch.cat([l for l, _ in root.pre], 1)[0]
    flat_u = torch.cat([u for _, u in root.pre], 1)[0]
    k = int(torch.nonzero((flat_l < 0) & (flat_u > 0)).flatten()[0])
    sp = torch.zeros(n, dtype=torch.int8)
    sp[k] = 1
    plain = domain_bounds(g, lo_t, hi_t, _split_vec(g, sp), spec.C, spec.c)
    reused = domain_bounds(g, lo_t, hi_t, _split_vec(g, sp), spec.C, spec.c, parent=root.pre, reuse_upto=_layer_of(g, k))
    for (pl, pu), (rl, ru) in zip(plain.pre, reused.pre):
        assert torch.all(rl >= pl - 1e-12) and torch.all(ru <= pu + 1e-12)


def _mlp_with_exact_min(seed: int):
    sizes = [6, 10, 10, 8, 1]
    m = random_mlp(sizes, seed=seed)
    g = build_graph(m, (sizes[0],))
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0, sizes[0])
    hi = lo + rng.uniform(0.5, 1.5, sizes[0])
    return m, lo, hi, milp_min(g, lo, hi, np.array([1.0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("side", ["certified", "falsified"])
@pytest.mark.parametrize("reuse", [True, False])
def test_relu_branching_with_reused_bounds_agrees_with_exact_milp(seed, side, reuse):
    m, lo, hi, best = _mlp_with_exact_min(seed)
    b = best - 0.05 if side == "certified" else best + 0.05
    prop = box_property(lo, hi, np.array([[1.0]]), np.array([b]))
    res = verify(m.float(), prop, timeout=60, config={"strategy": "relu", "interm_reuse": reuse, "refine_layers": 0,
                                                      "milp_max_unstable": 0, "attack_restarts": 0,
                                                      "attack_odi_restarts": 0})
    want = Verdict.CERTIFIED if side == "certified" else Verdict.FALSIFIED
    assert res.verdict == want, res.stats
    if side == "certified":
        assert res.stats.get("relu_splits", 0) > 0  # the search did branch (children from reused bounds)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_dive_of_splits_from_reused_bounds_keeps_every_sampled_point(seed):
    """Six levels down one random path (each child from its parent's bounds, the split layer's
    and the earlier ones reused): every level's bounds contain the sampled points of its domain."""
    m, g, lo, hi, spec = _net(seed)
    lo_t, hi_t = torch.as_tensor(lo)[None], torch.as_tensor(hi)[None]
    n = sum(g.relu_sizes)
    sp = torch.zeros(n, dtype=torch.int8)
    db = domain_bounds(g, lo_t, hi_t, _split_vec(g, sp), spec.C, spec.c)
    pre, y = _samples(m, lo, hi, 20_000, seed)
    mask = torch.ones(len(pre), dtype=torch.bool)
    rng = np.random.default_rng(seed)
    levels = 0
    for _ in range(6):
        fl, fu = torch.cat([l for l, _ in db.pre], 1)[0], torch.cat([u for _, u in db.pre], 1)[0]
        open_ = torch.nonzero((fl < 0) & (fu > 0)).flatten().tolist()
        if not open_:
            break
        k = int(rng.choice(open_))
        sign = 1 if (pre[mask, k] >= 0).sum() >= (pre[mask, k] <= 0).sum() else -1  # the side with more points
        sp[k] = sign
        mask &= pre[:, k] * sign >= 0
        db = domain_bounds(g, lo_t, hi_t, _split_vec(g, sp), spec.C, spec.c, 4, parent=db.pre,
                           reuse_upto=_layer_of(g, k))
        if mask.sum() <= 100:
            break
        assert not bool(db.infeasible[0])
        _check_contains(db, spec, pre, y, mask)
        levels += 1
    assert levels >= 3


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_capped_milp_leaf_refutes_exactly_the_disjuncts_above_the_exact_minimum(seed):
    """The MILP leaf caps ``t`` at its refutation threshold: with ``b`` below the exact minimum
    of ``y`` it refutes, above it it returns a candidate whose output violates (float64 check)."""
    from certprune.verifiers.milp_leaf import solve_milp

    m, lo, hi, best = _mlp_with_exact_min(seed)
    g = build_graph(m, (len(lo),))
    n = sum(g.relu_sizes)
    db = domain_bounds(g, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None],
                       list(torch.split(torch.zeros(1, n, dtype=torch.int8), g.relu_sizes, dim=1)),
                       torch.eye(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    pre = [(l[0].numpy(), u[0].numpy()) for l, u in db.pre]
    sp = [np.zeros(k, dtype=np.int8) for k in g.relu_sizes]
    for gap in (0.05, 1e-3):
        refuted = solve_milp(g, lo, hi, pre, np.array([[1.0]]), np.array([best - gap]), 1e-7, 30.0, None, sp)
        assert refuted.status == "refuted"
        found = solve_milp(g, lo, hi, pre, np.array([[1.0]]), np.array([best + gap]), 1e-7, 30.0, None, sp)
        assert found.status == "candidate"
        with torch.no_grad():
            y = copy.deepcopy(m).double()(torch.as_tensor(found.x)[None])
        assert float(y[0, 0]) <= best + gap + 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warm_started_alpha_beta_bounds_contain_sampled_points_for_any_start(seed):
    """A child bounded from arbitrary starting slopes / multipliers (out of range too: projected)
    and from its parent's kept iterate: the spec bounds contain the child's sampled points."""
    m, g, lo, hi, spec = _net(seed)
    lo_t, hi_t = torch.as_tensor(lo)[None], torch.as_tensor(hi)[None]
    n = sum(g.relu_sizes)
    root = domain_bounds(g, lo_t, hi_t, _split_vec(g, torch.zeros(n, dtype=torch.int8)), spec.C, spec.c,
                         keep_params=True)
    assert root.params is not None and root.params[0].shape == (1, spec.C.shape[0], n)
    pre, y = _samples(m, lo, hi, 10_000, seed)
    fl, fu = torch.cat([l for l, _ in root.pre], 1)[0], torch.cat([u for _, u in root.pre], 1)[0]
    k = int(torch.nonzero((fl < 0) & (fu > 0)).flatten()[0])
    rng = torch.Generator().manual_seed(seed)
    starts = [root.params, (torch.rand(root.params[0].shape, generator=rng) * 3 - 1,
                            torch.randn(root.params[1].shape, generator=rng) * 5)]
    for sign in (1, -1):
        sp = torch.zeros(n, dtype=torch.int8)
        sp[k] = sign
        mask = pre[:, k] * sign >= 0
        if mask.sum() <= 100:
            continue
        for warm in starts:
            child = domain_bounds(g, lo_t, hi_t, _split_vec(g, sp), spec.C, spec.c, 8, parent=root.pre,
                                  reuse_upto=_layer_of(g, k), warm=warm, keep_params=True)
            _check_contains(child, spec, pre, y, mask)
            a, b = child.params
            assert torch.all((a >= 0) & (a <= 1)) and torch.all(b >= 0)  # kept iterate is projected

