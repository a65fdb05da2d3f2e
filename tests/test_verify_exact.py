"""verify() against independent exact methods written here: a big-M MILP of the whole network
(scipy/HiGHS, independent of the bound engine; instances within 1e-5 of the decision boundary are
skipped) and, on the instances it decides within 10 s, a z3 encoding in exact rational
arithmetic (integer inputs as z3 Ints). Nets: small random and trained ReLU MLPs.

Also: both strategies (input and ReLU splitting) must give the same verdict; every CERTIFIED
must survive a strong attack; every FALSIFIED counterexample must violate on the float32 model.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from certprune.results import Verdict
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.verifiers.attack import falsify, float32_forward
from certprune.verifiers.verify import verify
from conftest import random_mlp

z3 = pytest.importorskip("z3")


def z3_decide(net: nn.Sequential, prop: Property, timeout_s: float = 30.0) -> str:
    """'sat' (violation exists), 'unsat' or 'unknown', in exact arithmetic on the float32 weights."""
    lin = [m for m in net if isinstance(m, nn.Linear)]
    r = prop.region
    lo, hi = r.lower.ravel(), r.upper.ravel()
    mask = np.zeros(lo.size, bool) if r.integer_mask is None else r.integer_mask.ravel()
    s = z3.Solver()
    s.set("timeout", int(timeout_s * 1000))
    xs = [z3.Int(f"x{i}") if mask[i] else z3.Real(f"x{i}") for i in range(lo.size)]
    q = lambda v: z3.RealVal(Fraction(float(v)))  # noqa: E731 - exact value of the float
    for i, x in enumerate(xs):
        xr = z3.ToReal(x) if mask[i] else x
        s.add(xr >= q(lo[i]), xr <= q(hi[i]))
    h = [z3.ToReal(x) if mask[i] else x for i, x in enumerate(xs)]
    for k, layer in enumerate(lin):
        W, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
        z = [z3.Sum([q(W[o, i]) * h[i] for i in range(len(h))]) + q(b[o]) for o in range(W.shape[0])]
        if k < len(lin) - 1:
            a = [z3.Real(f"a{k}_{o}") for o in range(len(z))]
            for ao, zo in zip(a, z):
                s.add(ao == z3.If(zo >= 0, zo, q(0)))
            h = a
        else:
            h = z
    ors = []
    for d in prop.disjuncts:
        ors.append(z3.And([z3.Sum([q(d.A[j, o]) * h[o] for o in range(len(h))]) <= q(d.b[j])
                           for j in range(d.A.shape[0])]))
    s.add(z3.Or(ors))
    return str(s.check())


def ibp_bounds(lin: list[nn.Linear], lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval pre-activation bounds of every hidden layer, widened by 1e-6 relative."""
    out = []
    for layer in lin[:-1]:
        W, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
        c, r = W @ ((lo + hi) / 2) + b, np.abs(W) @ ((hi - lo) / 2)
        pad = 1e-6 * (1 + np.abs(c) + r)
        out.append((c - r - pad, c + r + pad))
        lo, hi = np.maximum(out[-1][0], 0), np.maximum(out[-1][1], 0)
    return out


def milp_min_margin(net: nn.Sequential, prop: Property) -> float:
    """min over the region of the violation margin (<= 0 iff violated), by one MILP per disjunct."""
    from scipy.optimize import LinearConstraint, milp

    lin = [m for m in net if isinstance(m, nn.Linear)]
    r = prop.region
    lo, hi = r.lower.ravel(), r.upper.ravel()
    mask = np.zeros(lo.size, bool) if r.integer_mask is None else r.integer_mask.ravel()
    pre = ibp_bounds(lin, lo, hi)
    # variable layout: x | per hidden layer (z, a, d) | t
    sizes = [lo.size] + [3 * len(l) for l, _ in pre] + [1]
    n = sum(sizes)
    vlo, vhi, integ = np.full(n, -np.inf), np.full(n, np.inf), np.zeros(n)
    vlo[:lo.size], vhi[:lo.size], integ[:lo.size] = lo, hi, mask
    rows, rlo, rhi = [], [], []

    def row(entries, a, b):
        v = np.zeros(n)
        for i, c in entries:
            v[i] += c
        rows.append(v), rlo.append(a), rhi.append(b)
    h, off = list(range(lo.size)), lo.size
    for layer, (l, u) in zip(lin[:-1], pre):
        W, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
        k = len(l)
        z, a, d = off + np.arange(k), off + k + np.arange(k), off + 2 * k + np.arange(k)
        vlo[z], vhi[z], vlo[a], vhi[a] = l, u, 0, np.maximum(u, 0)
        vlo[d], vhi[d], integ[d] = 0, 1, 1
        for o in range(k):
            row([(z[o], 1.0)] + [(h[i], -W[o, i]) for i in range(len(h))], b[o], b[o])
            row([(a[o], 1.0), (z[o], -1.0)], 0, np.inf)                     # a >= z
            row([(a[o], 1.0), (z[o], -1.0), (d[o], -l[o])], -np.inf, -l[o])  # a <= z - l (1 - d)
            row([(a[o], 1.0), (d[o], -u[o])], -np.inf, 0)                    # a <= u d
        h, off = list(a), off + 3 * k
    W, b = lin[-1].weight.detach().double().numpy(), lin[-1].bias.detach().double().numpy()
    best = np.inf
    for dj in prop.disjuncts:
        G, g = dj.A @ W, dj.A @ b - dj.b
        extra = [np.r_[np.zeros(off), 0.0] for _ in range(len(G))]
        for j in range(len(G)):
            extra[j][h] = G[j]
            extra[j][-1] = -1.0
        A = np.vstack(rows + extra)
        cons = LinearConstraint(A, np.r_[rlo, np.full(len(G), -np.inf)], np.r_[rhi, -g])
        cost = np.zeros(n)
        cost[-1] = 1.0
        res = milp(cost, constraints=cons, integrality=integ, bounds=(vlo, vhi), options={"time_limit": 60})
        assert res.status == 0, res.message
        best = min(best, float(res.fun))
    return best


def trained_mlp(sizes: list[int], seed: int) -> nn.Sequential:
    """A small MLP trained for a few hundred steps on a random nonlinear labelling of the box."""
    torch.manual_seed(seed)
    net = random_mlp(sizes, seed)
    x = torch.rand(512, sizes[0]) * 2 - 1
    y = ((x ** 2).sum(1) * 3 + x[:, 0] * 2).long() % sizes[-1]
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def instance(kind: str, seed: int, radius: float, offset: float) -> tuple[nn.Sequential, Property]:
    """A net and a property: violation ``y0 - y_j <= thr_j`` (disjunct per j) near a sampled minimum.

    ``offset > 0`` puts the threshold above the sampled minimum (a sampled point violates);
    ``offset < 0`` below it (true or hard, depending on the net)."""
    rng = np.random.default_rng(seed)
    n_in = [2, 3, 4][seed % 3]
    hidden = [[4, 8], [8, 8], [12, 12], [16, 8], [8, 8, 8]][seed % 5]
    n_out = 2 + seed % 2
    sizes = [n_in, *hidden, n_out]
    net = trained_mlp(sizes, seed) if kind == "trained" else random_mlp(sizes, seed)
    center = rng.uniform(-0.5, 0.5, n_in)
    lo, hi = center - radius, center + radius
    xs = lo + rng.random((4000, n_in)) * (hi - lo)
    with torch.no_grad():
        y = net(torch.as_tensor(xs, dtype=torch.float32)).double().numpy()
    disjuncts = []
    for j in range(1, n_out):
        gap = y[:, 0] - y[:, j]
        row = np.zeros(n_out)
        row[0], row[j] = 1.0, -1.0
        scale = gap.max() - gap.min() + 1e-3
        disjuncts.append(LinearConstraints(row[None], [gap.min() + offset * scale]))
    return net, Property(InputRegion(lo, hi), tuple(disjuncts), name=f"{kind}-{seed}-{radius}-{offset}")


CASES = [(k, s, r, o) for k, s in [("random", 0), ("random", 1), ("random", 2), ("random", 3), ("random", 4),
                                   ("trained", 5), ("trained", 6), ("trained", 7)]
         for r, o in [(0.1, -0.1), (0.5, -0.3), (1.0, -0.02)]]
CASES += [("random", 8, 0.3, 0.05), ("trained", 9, 0.5, 0.02)]

_VERDICT = {"sat": Verdict.FALSIFIED, "unsat": Verdict.CERTIFIED}
BOUNDARY = 1e-5  # skip instances whose exact minimum margin is this close to 0
NO_ATTACK = {"attack_restarts": 0, "attack_samples": 0, "attack_corners": 0}


def reference(net, prop) -> str:
    """'sat' / 'unsat' from the MILP, or 'boundary' when too close to call."""
    m = milp_min_margin(net, prop)
    return "boundary" if abs(m) < BOUNDARY else ("sat" if m < 0 else "unsat")


def check_counterexample(net: nn.Module, prop: Property, res) -> None:
    """The counterexample lies in the region and violates on the float32 model."""
    x = np.asarray(res.counterexample, dtype=np.float32)
    assert prop.region.contains(x.astype(np.float64))[0]
    with torch.no_grad():
        y = net.float()(torch.from_numpy(x.reshape(1, -1))).double().numpy()
    assert prop.is_violated(y)[0]
    np.testing.assert_array_equal(y[0].astype(np.float32), res.counterexample_output)


def check_survives_attack(net: nn.Module, prop: Property) -> None:
    """Strong attack: 200 PGD restarts and 10^5 samples find no violation."""
    run = float32_forward(net, prop.region.shape)
    att = falsify(run, prop, prop.region.lower, prop.region.upper, restarts=200, steps=100, samples=100_000,
                  corners=1024, seed=123, int_mask=prop.region.integer_mask)
    assert att.margin > 0


@pytest.fixture(scope="module")
def outcomes():
    """Every case decided by the MILP and by both branching strategies (computed once)."""
    rows = []
    for i, case in enumerate(CASES):
        net, prop = instance(*case)
        ref = reference(net, prop)
        got = {"input": verify(net, prop, timeout=20, config={"strategy": "input"}),
               "relu": verify(net, prop, timeout=10, config={"strategy": "relu"})}
        if i % 2 == 0:  # pure ReLU splitting (LP leaves only) on every other case, to bound test time
            got["relu-no-milp"] = verify(net, prop, timeout=3, config={"strategy": "relu", "milp_max_unstable": 0})
        rows.append((case, net, prop, ref, got))
    return rows


def test_verdicts_match_exact_milp(outcomes):
    decided = [(c, ref, got) for c, _, _, ref, got in outcomes if ref in _VERDICT]
    assert len(decided) >= len(outcomes) - 2
    for case, ref, got in decided:
        assert got["input"].verdict is _VERDICT[ref], (case, ref, got["input"].stats)
        if got["relu"].decided:
            assert got["relu"].verdict is _VERDICT[ref], (case, ref, got["relu"].stats)
    assert all(got["relu"].decided for *_, got in outcomes)
    assert {ref for _, ref, _ in decided} == {"sat", "unsat"}, "both verdicts must occur in the set"


def test_some_cases_need_branch_and_bound(outcomes):
    phases = [got[st].stats.get("phase") for *_, got in outcomes for st in ("input", "relu")]
    assert phases.count("bab") >= 10 and "falsify" in phases and "bound" in phases


def test_strategies_agree(outcomes):
    """Input splitting, ReLU splitting with MILP leaves, and pure ReLU splitting (LP leaves only)."""
    for case, _, _, _, got in outcomes:
        for st in ("relu", "relu-no-milp"):
            if st in got and got[st].decided:
                assert got["input"].verdict is got[st].verdict, (case, st)
    pure = [got["relu-no-milp"].decided for *_, got in outcomes if "relu-no-milp" in got]
    assert sum(pure) >= len(pure) - 3


def test_branch_and_bound_alone_finds_counterexamples(outcomes):
    sat = [(net, prop) for _, net, prop, ref, _ in outcomes if ref == "sat"]
    assert sat
    for net, prop in sat:
        res = verify(net, prop, timeout=20, config={"strategy": "input", **NO_ATTACK})
        assert res.verdict is Verdict.FALSIFIED and res.stats["phase"] == "bab", res.stats
        check_counterexample(net, prop, res)


def test_counterexamples_violate_in_float32(outcomes):
    n = 0
    for _, net, prop, _, got in outcomes:
        for res in got.values():
            if res.verdict is Verdict.FALSIFIED:
                check_counterexample(net, prop, res)
                n += 1
    assert n > 0


def test_certified_survives_strong_attack(outcomes):
    certified = [(net, prop) for _, net, prop, _, got in outcomes if got["input"].verdict is Verdict.CERTIFIED]
    assert len(certified) >= 4
    for net, prop in certified[:4]:
        check_survives_attack(net, prop)


def test_z3_agrees_on_the_smallest_nets(outcomes):
    small = [(c, net, prop, got) for c, net, prop, ref, got in outcomes if c[1] % 5 == 0 and ref in _VERDICT]
    decided = 0
    for case, net, prop, got in small:
        ref = z3_decide(net, prop, timeout_s=5)
        if ref in _VERDICT:
            decided += 1
            assert got["input"].verdict is _VERDICT[ref], case
    assert decided >= 2


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_integer_inputs_match_exact_and_are_integral(seed):
    net = random_mlp([4, 8, 8, 2], 100 + seed)
    mask = np.array([True, True, False, False])
    region = InputRegion([0, 0, -0.5, -0.5], [5, 3, 0.5, 0.5], integer_mask=mask)
    rng = np.random.default_rng(seed)
    xs = region.clip(region.lower + rng.random((3000, 4)) * region.width)
    with torch.no_grad():
        gap = (lambda y: y[:, 0] - y[:, 1])(net(torch.as_tensor(xs, dtype=torch.float32)).double().numpy())
    thr = gap.min() + (0.02 if seed % 2 else -0.15) * (gap.max() - gap.min())
    prop = Property(region, (LinearConstraints([[1.0, -1.0]], [thr]),))
    ref = reference(net, prop)
    assert ref in _VERDICT
    for st in ("input", "relu"):
        res = verify(net, prop, timeout=20, config={"strategy": st, **NO_ATTACK})
        assert res.verdict is _VERDICT[ref], (st, ref, res.stats)
        if res.verdict is Verdict.FALSIFIED:
            x = res.counterexample
            assert np.all(x[:2] == np.round(x[:2]))
            check_counterexample(net, prop, res)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 40))
def test_slow_many_more_instances_match_milp(seed):
    """Slow tier: 30 more nets (incl. 3 hidden layers), random radius and threshold offset, with
    no time limit for input splitting (the verifier must be complete) and 60 s for ReLU splitting."""
    rng = np.random.default_rng(seed)
    case = ("trained" if seed % 3 == 0 else "random", seed, float(rng.choice([0.05, 0.3, 1.0])),
            float(rng.choice([-0.2, -0.05, -0.01, 0.01])))
    net, prop = instance(*case)
    ref = reference(net, prop)
    if ref not in _VERDICT:
        pytest.skip("exact minimum within 1e-5 of the decision boundary")
    res = verify(net, prop, config={"strategy": "input"})
    assert res.verdict is _VERDICT[ref], (case, res.stats)
    relu = verify(net, prop, timeout=60, config={"strategy": "relu"})
    assert relu.verdict is _VERDICT[ref], (case, relu.stats)
    if res.verdict is Verdict.FALSIFIED:
        check_counterexample(net, prop, res)
    else:
        check_survives_attack(net, prop)
