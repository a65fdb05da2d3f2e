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
from torch import nn

from certprune.bounds import crown
from certprune.graph import windows
from certprune.bounds.engine import domain_bounds
from certprune.bounds.float32 import output_error
from certprune.bounds.forward import forward_pass
from certprune.bounds.ibp import ibp
from certprune.graph import build_graph
from certprune.io import onnx_ops as ops
from certprune.network import as_network
from certprune.results import Verdict
from certprune.specs import box_property
from certprune.verifiers.lp_leaf import solve_leaf
from certprune.verifiers.milp_leaf import solve_milp
from certprune.verifiers.verify import verify
from tests.graph_nets import graph
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


def _crossing(g, st) -> int:
    return sum(int((st.bounds[g.nodes[i].inputs[0]][0] > st.bounds[g.nodes[i].inputs[0]][1]).sum())
               for i in g.relu_nodes)


@pytest.mark.parametrize("margin", [False, True])
def test_constant_values_crossing_by_rounding_do_not_empty_the_root_domain(monkeypatch, margin):
    """Seed 1: relu(x * c) after a padded stride-2 conv has border values constant over the box,
    whose unwidened CROWN/interval bounds cross by ~1e-15 (with the float64 rounding margin of
    ``crown`` they no longer do); all-zero splits must leave the domain feasible either way."""
    _, _, g, lo, hi, _, _, _ = _setup(1)
    monkeypatch.setattr(crown, "ROUNDING_MARGIN", margin)
    st = crown.intermediate(g, lo, hi, intersect=True, sparse=True)
    if margin:
        assert _crossing(g, st) == 0
    else:
        assert _crossing(g, st) > 0  # the situation the test is about (rounding makes l > u)
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


# ----------------------------------------------------------------------------- patches vs dense
def _conv_chain(cin: int, s: int, p: int, k: int, H: int, W: int, dil: int = 1, groups: int = 1):
    torch.manual_seed(cin * 1000 + s * 100 + p * 10 + k)
    mods = [nn.Conv2d(cin, 3 * groups, k, stride=s, padding=p, dilation=dil, groups=groups), nn.ReLU(),
            nn.Conv2d(3 * groups, 2, 3 if H > 6 else 1, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Flatten()]
    with torch.no_grad():
        d_out = nn.Sequential(*mods)(torch.zeros(1, cin, H, W)).shape[1]
    return nn.Sequential(*mods, nn.Linear(d_out, 2)).eval()


ODD_CONVS = [(cin, s, p, k, H, W) for cin in (1, 3) for s in (1, 2) for p in (0, 1, 2) for k in (1, 2, 3, 5)
             for H, W in [(7, 10)] if H + 2 * p >= k]


def _dense_crown(g, t, st):
    return crown.node_crown(g, t, st, use_windows=False)


@pytest.mark.parametrize("case", ODD_CONVS + [(3, 1, 1, 3, 6, 9, 2, 1), (3, 2, 2, 3, 9, 6, 1, 3), (3, 1, 0, 2, 5, 8, 2, 3)])
def test_patches_equal_dense_crown_on_odd_conv_shapes(case):
    """Stride 1/2, padding 0/1/2, kernels 1/2/3/5, non-square inputs, 1 or 3 channels (and
    dilation / groups): the windowed pass equals the dense one on every node it plans, with
    one location per chunk too."""
    g = build_graph(_conv_chain(*case), (case[0], case[4], case[5]))
    gen = torch.Generator().manual_seed(1)
    lo = torch.rand(2, g.input_dim, generator=gen, dtype=torch.float64) * 2 - 1
    hi = lo + 0.5 * torch.rand(2, g.input_dim, generator=gen, dtype=torch.float64)
    st = crown.intermediate(g, lo, hi)
    planned = 0
    for t in range(1, len(g.nodes)):
        if windows.plan(g, t) is None:
            continue
        r = crown.node_crown(g, t, st, use_windows=True, budget=1 << 25)
        r1 = crown.node_crown(g, t, st, use_windows=True, budget=40)
        dl, du = _dense_crown(g, t, st)
        for a, b in ((r[0], dl), (r[1], du), (r1[0], dl), (r1[1], du)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
        planned += 1
    assert planned > 0 or case[6:] != ()  # dilated / grouped convs: dense fallback by design


# ----------------------------------------------------------------------------- float32 bound
def _f32_graph(seed: int, wscale: float):
    """A random float32 DAG of the operators the float32 bound models: conv (stride / padding /
    dilation / groups), zero Pad, Permute, residual Add/Sub, Concat, Gather, Linear."""
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    in_shape = (int(rng.integers(1, 4)), int(rng.integers(3, 7)), int(rng.integers(3, 7)))
    nodes, cur, k, shape = [], "__input__", 0, in_shape

    def add(mod, ins):
        nonlocal k, cur
        k += 1
        nodes.append((mod, ins, f"v{k}"))
        cur = f"v{k}"
        return cur

    def scaled(mod):
        with torch.no_grad():
            for p in mod.parameters():
                p.normal_(generator=gen).mul_(wscale)
        return mod

    for _ in range(int(rng.integers(2, 5))):
        C, H, W = shape
        op = rng.choice(["conv", "pad", "perm", "res", "cat"])
        if op == "conv":
            kk, s, p, d = (int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 3)), int(rng.integers(1, 3)))
            if H + 2 * p - d * (kk - 1) - 1 < 0 or W + 2 * p - d * (kk - 1) - 1 < 0:
                kk, d = 1, 1
            grp = int(rng.choice([1, C]))
            add(scaled(nn.Conv2d(C, grp * int(rng.integers(1, 3)), kk, stride=s, padding=p, dilation=d, groups=grp)), (cur,))
        elif op == "pad":
            add(ops.ConstantPad(tuple(int(v) for v in rng.integers(0, 3, size=4))), (cur,))
        elif op == "perm":
            add(ops.Permute((0,) + tuple(int(v) + 1 for v in rng.permutation(3))), (cur,))
        elif op == "res":
            x0 = cur
            r = add(nn.ReLU(), (x0,))
            rc = add(scaled(nn.Conv2d(C, C, 3, padding=1)), (r,))
            add(ops.TensorBinary(str(rng.choice(["Add", "Sub"]))), (x0, rc))
        else:
            x0 = cur
            r = add(nn.ReLU(), (x0,))
            add(ops.Concat(1), (x0, r))
        with torch.no_grad():
            shape = tuple(graph(nodes, cur)(torch.zeros(1, *in_shape)).shape[1:])
        add(nn.ReLU(), (cur,))
    d = int(np.prod(shape))
    flat = add(ops.Reshape((d,)), (cur,))
    idx = rng.choice(d, size=max(1, d // 2), replace=True)
    sel = add(ops.Select(idx, (len(idx),)), (flat,))
    add(ops.Concat(-1), (sel, flat))
    add(scaled(nn.Linear(len(idx) + d, 3)), (cur,))
    return graph(nodes, cur).float(), in_shape


def _check_f32(m, shape, n: int = 2000, seed: int = 0):
    g = build_graph(m, shape)
    x32 = (torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1).float()
    with torch.no_grad():
        y32 = m(x32).double().reshape(n, -1)
        y1 = torch.cat([m(x32[i:i + 1]) for i in range(50)]).double().reshape(50, -1)  # batch of one
    exact = g.forward(x32.double()).reshape(n, -1)
    one = torch.ones(1, g.input_dim, dtype=torch.float64)
    err = output_error(g, ibp(g, -one, one))[0]
    assert ((y32 - exact).abs() <= err).all() and ((y1 - exact[:50]).abs() <= err).all()
    vals = g.forward(x32[:100].double(), keep=True)
    e_pt = output_error(g, [(v, v) for v in vals])
    assert ((y32[:100] - exact[:100]).abs() <= e_pt).all()
    return (y32 - exact).abs().max(), err


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("wscale", [1.0, 1e4])
def test_float32_bound_encloses_execution_on_random_dags(seed, wscale):
    _check_f32(*_f32_graph(seed, wscale), seed=seed)


def test_float32_bound_under_cancellation():
    """y = 1e4 relu(x0) + x1 - 1e4 relu(x0 + 0): the big terms cancel, the result is tiny and its
    float32 error is all rounding of the big terms (relative error ~1e4 times float32's eps)."""
    l1 = nn.Linear(2, 3)
    l2 = nn.Linear(3, 1)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1e-4]]))
        l1.bias.zero_()
        l2.weight.copy_(torch.tensor([[1e4, 1.0, -1e4]]))
        l2.bias.copy_(torch.tensor([1e-3]))
    m = nn.Sequential(l1, nn.ReLU(), l2).float().eval()
    obs, err = _check_f32(m, (2,), n=4000)
    assert float(obs) > 0


# ----------------------------------------------------------------------------- IR leaves
def _box_pre(g, lo, hi, splits=None):
    st = crown.intermediate(g, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None], intersect=True, sparse=True,
                            splits=splits)
    return st, [tuple(t.reshape(-1).numpy() for t in st.pre[i]) for i in g.relu_nodes]


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("width", [0.1, 0.3])
def test_ir_leaves_never_refute_a_sampled_point_of_their_domain(seed, width):
    """MILP leaf on the box: a threshold 1e-3 above the best of 3000 samples is never refuted and
    its candidate is a real violation; LP leaf on the fully split domain of the best sample (its
    phases on every unstable neuron): the sample's value + 1e-6 is never refuted."""
    m, shape = random_graph(seed)
    g = build_graph(m, shape)
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=g.input_dim)
    lo, hi = x0 - width, x0 + width
    _, pre = _box_pre(g, lo, hi)
    a = rng.normal(size=g.output_dim)
    x = lo + rng.random((3000, g.input_dim)) * (hi - lo)
    vals = g.forward(torch.as_tensor(x), keep=True)
    v = vals[g.output].reshape(3000, -1).numpy() @ a
    if sum(int(((l < 0) & (u > 0)).sum()) for l, u in pre) <= 64:
        out = solve_milp(g, lo, hi, pre, a[None], np.array([v.min() + 1e-3]), 1e-9, 20.0)
        assert out.status != "refuted"
        if out.status == "candidate":
            y = g.forward(torch.as_tensor(out.x)[None]).reshape(-1).numpy()
            assert float(a @ y) <= v.min() + 1e-3 + 1e-5
    k = int(np.argmin(v))
    splits = []
    for (l, u), i in zip(pre, g.relu_nodes):
        z = vals[g.nodes[i].inputs[0]].reshape(3000, -1)[k].numpy()
        splits.append(np.where((l < 0) & (u > 0), np.where(z >= 0, 1, -1), 0).astype(np.int8))
    st2, pre2 = _box_pre(g, lo, hi, {i: torch.as_tensor(s)[None] for i, s in zip(g.relu_nodes, splits)})
    assert not bool(st2.infeasible[0])
    assert not any(((l < 0) & (u > 0)).any() for l, u in pre2)
    out = solve_leaf(g, lo, hi, pre2, splits, a[None], np.array([v[k] + 1e-6]), 1e-9, 20.0)
    assert out.status != "refuted", out


# ----------------------------------------------------------------------------- verify vs MILP
def _disjunct_min(g, lo, hi, A):
    """min over the box of max_r (A y)_r (the MILP leaf with every neuron free; attained)."""
    _, pre = _box_pre(g, lo, hi)
    out = solve_milp(g, lo, hi, pre, A, np.zeros(len(A)), 1e6, 60.0)  # margin 1e6: always a candidate
    assert out.status == "candidate"
    y = g.forward(torch.as_tensor(out.x)[None]).reshape(-1).numpy()
    t = float((A @ y).max())
    assert t == pytest.approx(out.bound, abs=1e-5)
    return t


@pytest.mark.parametrize("seed", [0, 2, 3, 5])
@pytest.mark.parametrize("side", ["certified", "falsified"])
@pytest.mark.parametrize("attack", [True, False])
def test_verify_disjunctive_strict_specs_on_random_dags_agree_with_milp(seed, side, attack):
    """Two disjuncts (2 rows and 1 row, the 1-row one strict) at 0.05 from their exact minima:
    CERTIFIED iff both are out of reach; a counterexample violates in float32 on the model."""
    from certprune.specs import InputRegion, LinearConstraints, Property
    m, shape = random_graph(seed)
    m = m.float()
    g = build_graph(m, shape)
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=g.input_dim)
    lo, hi = x0 - 0.1, x0 + 0.1
    A1, A2 = rng.normal(size=(2, g.output_dim)), rng.normal(size=(1, g.output_dim))
    t1, t2 = _disjunct_min(g, lo, hi, A1), _disjunct_min(g, lo, hi, A2)
    d2 = -0.05 if side == "certified" else 0.05
    prop = Property(InputRegion(lo.reshape(shape), hi.reshape(shape)),
                    (LinearConstraints(A1, np.full(2, t1 - 0.05)), LinearConstraints(A2, np.array([t2 + d2]), np.array([True]))))
    res = verify(as_network(m, shape), prop, timeout=60, config=None if attack else NO_ATTACK)
    want = Verdict.CERTIFIED if side == "certified" else Verdict.FALSIFIED
    assert res.verdict == want, res.stats
    if res.verdict == Verdict.FALSIFIED:
        cex = np.asarray(res.counterexample, dtype=np.float32).reshape(1, *shape)
        assert prop.region.contains(cex)
        with torch.no_grad():
            y = m(torch.as_tensor(cex)).double().numpy().ravel()
        assert float((A2 @ y)[0]) < t2 + d2


# ----------------------------------------------------------------------------- verify --semantics float32 on graphs
def _scaled_float(m, k: float):
    m = m.float()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(k)
    return m


def test_float32_semantics_on_residual_and_conv_graphs_encloses_float32_execution():
    """problem.float32_output_error now covers non-chain graphs (residual adds, concat/select, conv):
    the margin encloses the float32 execution of the module on random points of the box."""
    from certprune.verifiers.problem import float32_output_error, model_forms
    from tests.graph_nets import GRAPHS
    from tests.test_float32_graph import _conv_net
    cases = [(_scaled_float(GRAPHS["residual_mlp"][0](0), 20.0), (6,)),
             (_scaled_float(GRAPHS["twin_mlp"][0](1), 20.0), (4,)),
             (_scaled_float(_conv_net(), 20.0), (1, 8, 8))]
    for m, shape in cases:
        net, _, _ = model_forms(as_network(m, shape), shape)
        d = int(np.prod(shape))
        lo, hi = -np.ones(d), np.ones(d)
        err = float32_output_error(as_network(m, shape), net, lo, hi)
        x32 = (torch.rand(3000, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1).float()
        with torch.no_grad():
            y32 = m(x32).double().reshape(3000, -1)
        exact = build_graph(m, shape).forward(x32.double()).reshape(3000, -1)
        obs = (y32 - exact).abs().max(0).values
        assert (obs <= err).all() and (obs > 0).any() and (err < 1e-2 * exact.abs().max()).all()


def test_verify_float32_semantics_on_a_residual_graph_keeps_the_rounding_margin():
    """Threshold at the exact minimum minus half the float32 margin: exact semantics certifies,
    float32 semantics must not; minus 2% of the minimum: float32 certifies too."""
    from certprune.verifiers.problem import float32_output_error, model_forms
    from tests.graph_milp import milp_min
    from tests.graph_nets import GRAPHS
    m = _scaled_float(GRAPHS["residual_mlp"][0](3), 4.0)
    g = build_graph(m, (6,))
    rng = np.random.default_rng(3)
    lo = rng.uniform(-1, 0.5, 6)
    hi = lo + rng.uniform(0.2, 0.5, 6)
    a = rng.normal(size=g.output_dim)
    best = milp_min(g, lo, hi, a)
    net, _, _ = model_forms(m, (6,))
    e = float(np.abs(a) @ float32_output_error(m, net, lo, hi).numpy())
    assert e > 1e-6
    cfg = {"semantics": "float32", "input_split_max_dim": 8}
    tight = box_property(lo, hi, a[None], np.array([best - e / 2]))
    assert verify(m, tight, timeout=30, config=cfg).verdict != Verdict.CERTIFIED
    assert verify(m, tight, timeout=30, config={**cfg, "semantics": "exact"}).verdict == Verdict.CERTIFIED
    loose = box_property(lo, hi, a[None], np.array([best - 0.02 * (1 + abs(best))]))
    assert verify(m, loose, timeout=30, config=cfg).verdict == Verdict.CERTIFIED


def test_float32_semantics_refuses_unmodelled_graph_operators_in_one_line():
    from certprune.errors import UnsupportedModelError
    from certprune.verifiers.problem import require_float32_chain
    from tests.graph_nets import GRAPHS
    bn = as_network(GRAPHS["conv_residual"][0](0).float(), (1, 8, 8))   # BatchNorm: a Scale
    with pytest.raises(UnsupportedModelError, match="not modelled: Scale"):
        require_float32_chain(bn)
    m64 = GRAPHS["residual_mlp"][0](0).double()
    with torch.no_grad():
        m64.nodes[0].bias.add_(1e-12)                                   # not float32 numbers
    prop = box_property(np.zeros(6), np.ones(6) * 0.1, np.ones((1, 3)), np.array([-1e6]))
    with pytest.raises(UnsupportedModelError, match="weights not exact in float32") as info:
        verify(m64, prop, timeout=5, config={"semantics": "float32"})
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- fairness twin graph
@pytest.mark.parametrize("seed", range(16))
def test_twin_bounds_contain_samples_with_relaxed_and_multivalued_protected(seed):
    """Random one-logit MLPs and specs (1-2 protected features with up to 6 values each, relaxed
    features with delta 1-3, offsets clipped to the domain as the audit does): real and integer
    z points of 4 boxes (distinct protected pairs) lie inside the y, y' and y - y' bounds, and
    the float32 margin tau encloses the float32 execution of both copies at integer points."""
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.affine import AffineReluNet
    from certprune.verifiers.twin import twin_graph, twin_layout
    from certprune.verifiers.twin_bounds import twin_bounds
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 6))
    names = tuple(f"f{i}" for i in range(n))
    lo = rng.integers(-3, 2, n)
    hi = lo + rng.integers(1, 6, n)
    prot = list(rng.choice(n, int(rng.integers(1, 3)), replace=False))
    rel = {names[i]: int(rng.integers(1, 4)) for i in range(n) if i not in prot and rng.random() < 0.6}
    L = twin_layout(FairnessSpec(names, lo, hi, tuple(names[i] for i in prot), rel))
    gen = torch.Generator().manual_seed(seed)
    dims = [n] + [int(rng.integers(3, 15))] * int(rng.integers(1, 4)) + [1]
    sc = float(rng.choice([0.3, 1, 5]))
    net = AffineReluNet(tuple((torch.randn(o, i, generator=gen) * sc / i ** 0.5).float().double() for i, o in zip(dims, dims[1:])),
                        tuple((torch.randn(o, generator=gen) * 0.3).float().double() for o in dims[1:]), (n,))
    tg = twin_graph(net, L)
    nb, off = 4, n + len(L.protected)
    zlo, zhi = np.zeros((nb, L.dz)), np.zeros((nb, L.dz))
    for k in range(nb):
        a = rng.integers(lo, hi + 1)
        zlo[k, :n], zhi[k, :n] = a, np.minimum(hi, a + rng.integers(0, 3, n))
        for j, i in enumerate(L.protected):
            v1, v2 = rng.choice(np.arange(lo[i], hi[i] + 1), 2, replace=False)
            zlo[k, i] = zhi[k, i] = v1
            zlo[k, n + j] = zhi[k, n + j] = v2
        for j, (i, d) in enumerate(zip(L.relaxed, L.deltas)):
            zlo[k, off + j], zhi[k, off + j] = max(-d, lo[i] - zhi[k, i]), min(d, hi[i] - zlo[k, i])
    zlo, zhi = torch.as_tensor(zlo), torch.as_tensor(zhi)
    tb = twin_bounds(net, L, zlo, zhi)
    for k in range(nb):
        u = torch.rand(4000, L.dz, generator=gen, dtype=torch.float64)
        u[:64] = (u[:64] > 0.5).double()
        z = zlo[k] + u * (zhi[k] - zlo[k])
        for zz in (z, torch.round(z)):
            vals = tg.graph.forward(zz, keep=True)
            y, yp = vals[tg.outs[0]][:, 0], vals[tg.outs[1]][:, 0]
            e = 1e-9 * (1 + float(y.abs().max()))
            for v, (l, h) in ((y, tb.y), (yp, tb.yp), (y - yp, tb.diff)):
                assert (v >= l[k] - e).all() and (v <= h[k] + e).all(), (seed, k)
        for v, tau in zip(L.split(torch.round(z).numpy()), tb.tau):
            h32, h = torch.from_numpy(v).float(), torch.from_numpy(v)
            for li, (w, b) in enumerate(zip(net.weights, net.biases)):
                h32, h = h32 @ w.float().T + b.float(), h @ w.T + b
                if li < net.num_layers - 1:
                    h32, h = h32.clamp(min=0), h.clamp(min=0)
            assert ((h32.double() - h).abs() <= tau[k]).all(), (seed, k)


@pytest.mark.parametrize("seed", range(12))
def test_patches_equal_dense_crown_on_random_dags(seed):
    """Random DAGs (BatchNorm / constant scaling, Pad, residual conv blocks, strided / dilated /
    grouped convs): wherever patches mode plans a node, its bounds equal the dense pass."""
    _, _, g, lo, hi, _, _, _ = _setup(seed, n=10)
    st = crown.intermediate(g, lo, hi)
    planned = 0
    for t in range(1, len(g.nodes)):
        if windows.plan(g, t) is None:
            continue
        r = crown.node_crown(g, t, st, use_windows=True, budget=1 << 25)
        dl, du = _dense_crown(g, t, st)
        torch.testing.assert_close(r[0], dl, rtol=0, atol=1e-9)
        torch.testing.assert_close(r[1], du, rtol=0, atol=1e-9)
        planned += 1
    assert planned > 0 or seed in (2, 10)  # those two DAGs have dilated / grouped convs only
