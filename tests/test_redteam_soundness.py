"""Red-team soundness guards: every verdict is checked against an independent exact method.

- verify(): big-M MILP (scipy HiGHS, written here, sharing no code with certprune) on tiny random
  nets with boundary-hugging thresholds, several disjuncts, zero-width and integer inputs, a ReLU
  as the last layer, exact argmax ties; FALSIFIED counterexamples are re-run here in float32.
- smt.solve_property(): the same MILP.
- compute_bounds / neuron_stability: float64 forward passes on samples and box corners, including
  weights of magnitude 1e4 and 1e-6 and a conv net.
- audit_fairness(): brute-force float32 enumeration of every valid pair on tiny integer domains
  (protected attributes with 3 values, two protected attributes, relaxed attributes at the domain
  edge, one- and two-logit models), with the default engine and with z3 forced at the root.
- bad inputs raise CertpruneError subclasses, not tracebacks or verdicts.

Tests marked ``xfail`` reproduce soundness bugs found by the red team (see each reason); they are
non-strict so that a fix turns them into XPASS without breaking the suite: drop the marker then.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import certprune
from certprune.errors import CertpruneError
from certprune.specs import InputRegion, LinearConstraints, Property
from tests.conftest import race_is_two_model

QUICK = dict(attack_restarts=4, attack_steps=10, attack_samples=128, attack_corners=16)


# ----------------------------------------------------------------------------- independent references
def _layers(m: nn.Sequential):
    out = []
    for mod in m:
        if isinstance(mod, nn.Linear):
            out.append(("lin", mod.weight.detach().double().numpy(), mod.bias.detach().double().numpy()))
        elif isinstance(mod, nn.ReLU):
            out.append(("relu",))
        else:
            raise AssertionError(type(mod))
    return out


def milp_min_max_rows(m: nn.Sequential, lo, hi, A, b, int_mask=None) -> tuple[float, np.ndarray]:
    """Exact min over x in [lo, hi] (integral where int_mask) of max_r (A y(x) - b)_r (big-M MILP)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    nv = [0]

    def new(k):
        s = nv[0]
        nv[0] += k
        return np.arange(s, s + k)

    xs = new(len(lo))
    lbs, ubs = list(lo), list(hi)
    integ = list(np.zeros(len(lo), int) if int_mask is None else np.asarray(int_mask, int))
    rows = []
    cur, clo, chi = xs, lo, hi
    for layer in _layers(m):
        if layer[0] == "lin":
            W, bb = layer[1], layer[2]
            z = new(W.shape[0])
            c, r = (clo + chi) / 2, (chi - clo) / 2
            zl, zu = W @ c + bb - np.abs(W) @ r, W @ c + bb + np.abs(W) @ r
            pad = 1e-6 * (1 + np.abs(zl) + np.abs(zu))
            zl, zu = zl - pad, zu + pad
            lbs += list(zl)
            ubs += list(zu)
            integ += [0] * len(z)
            for i in range(W.shape[0]):
                d = {int(z[i]): 1.0}
                for j in range(W.shape[1]):
                    if W[i, j] != 0:
                        d[int(cur[j])] = d.get(int(cur[j]), 0.0) - W[i, j]
                rows.append((d, bb[i], bb[i]))
            cur, clo, chi = z, zl, zu
        else:
            a, dl = new(len(cur)), new(len(cur))
            lbs += [0.0] * len(cur) + [0.0] * len(cur)
            ubs += list(np.maximum(chi, 0)) + [1.0] * len(cur)
            integ += [0] * len(cur) + [1] * len(cur)
            for i in range(len(cur)):
                zi, ai, di, l, u = int(cur[i]), int(a[i]), int(dl[i]), clo[i], chi[i]
                rows.append(({ai: 1.0, zi: -1.0}, 0.0, np.inf))
                rows.append(({ai: 1.0, zi: -1.0, di: -l}, -np.inf, -l))
                rows.append(({ai: 1.0, di: -max(u, 0.0)}, -np.inf, 0.0))
            cur, clo, chi = a, np.maximum(clo, 0), np.maximum(chi, 0)
    t = new(1)[0]
    lbs.append(-np.inf)
    ubs.append(np.inf)
    integ.append(0)
    A = np.atleast_2d(A)
    for k in range(A.shape[0]):
        d = {int(t): -1.0}
        for j in range(A.shape[1]):
            if A[k, j] != 0:
                d[int(cur[j])] = d.get(int(cur[j]), 0.0) + A[k, j]
        rows.append((d, -np.inf, b[k]))
    M = np.zeros((len(rows), nv[0]))
    rl, ru = np.zeros(len(rows)), np.zeros(len(rows))
    for i, (d, l, u) in enumerate(rows):
        for j, v in d.items():
            M[i, j] = v
        rl[i], ru[i] = l, u
    c = np.zeros(nv[0])
    c[t] = 1.0
    res = milp(c, constraints=LinearConstraint(M, rl, ru), bounds=Bounds(np.array(lbs), np.array(ubs)),
               integrality=np.array(integ), options={"time_limit": 20.0, "mip_rel_gap": 0})
    assert res.status == 0, res.message
    return float(res.fun), res.x[:len(lo)]


def exact_margin(m: nn.Sequential, prop: Property) -> float:
    """min over disjuncts of the MILP optimum: <= 0 iff some point of the region violates (exactly)."""
    lo, hi = prop.region.lower.ravel(), prop.region.upper.ravel()
    mask = prop.region.integer_mask
    if mask is not None:
        mask = mask.ravel()
        lo, hi = np.where(mask, np.ceil(lo), lo), np.where(mask, np.floor(hi), hi)
    return min(milp_min_max_rows(m, lo, hi, d.A, d.b, mask)[0] for d in prop.disjuncts)


def float32_violates(m: nn.Module, prop: Property, x) -> bool:
    """Independent re-check: x (float32) lies in the region (within the float32 rounding of a bound)
    and the float32 output satisfies some disjunct (row by row, one point at a time)."""
    x32 = np.asarray(x, dtype=np.float32).reshape(1, -1)
    lo, hi = prop.region.lower.ravel(), prop.region.upper.ravel()
    x64 = x32.astype(np.float64)[0]
    inside = np.all(((x64 >= lo) | (x32[0] == lo.astype(np.float32))) & ((x64 <= hi) | (x32[0] == hi.astype(np.float32))))
    if prop.region.integer_mask is not None:
        mk = prop.region.integer_mask.ravel()
        inside &= bool(np.all(x64[mk] == np.round(x64[mk])))
    with torch.no_grad():
        y = m.float()(torch.from_numpy(x32)).double().numpy()[0]
    hit = any(all(float(np.dot(a, y)) <= bb for a, bb in zip(d.A, d.b)) for d in prop.disjuncts)
    return bool(inside and hit)


def rand_net(rng, n_in, hidden, n_out, relu_last=False, scale=1.0) -> nn.Sequential:
    mods, d = [], n_in
    for h in hidden:
        lin = nn.Linear(d, h)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(rng.normal(size=(h, d)) * scale))
            lin.bias.copy_(torch.tensor(rng.normal(size=h) * 0.5 * scale))
        mods += [lin, nn.ReLU()]
        d = h
    lin = nn.Linear(d, n_out)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(rng.normal(size=(n_out, d))))
        lin.bias.copy_(torch.tensor(rng.normal(size=n_out) * 0.5))
    mods.append(lin)
    if relu_last:
        mods.append(nn.ReLU())
    return nn.Sequential(*mods).eval()


def random_case(seed: int):
    """(model, property) with thresholds at / just below sampled output quantiles."""
    rng = np.random.default_rng(seed)
    n_in, n_out = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    m = rand_net(rng, n_in, [int(rng.integers(2, 7)) for _ in range(int(rng.integers(1, 3)))], n_out,
                 relu_last=rng.random() < 0.25)
    lo = rng.uniform(-1, 0, n_in)
    hi = lo + rng.uniform(0, 2, n_in)
    if rng.random() < 0.2:
        hi[0] = lo[0]
    mask = None
    if rng.random() < 0.25:
        mask = rng.random(n_in) < 0.6
        lo = np.where(mask, np.floor(lo * 3), lo)
        hi = np.where(mask, lo + rng.integers(0, 4, n_in), hi)
    with torch.no_grad():
        ys = m(torch.tensor(rng.uniform(lo, hi, (2000, n_in)), dtype=torch.float32)).double().numpy()
    ds = []
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(1, 3))
        A = rng.normal(size=(k, n_out))
        A[rng.random((k, n_out)) < 0.3] = 0
        if rng.random() < 0.3:
            A = np.zeros((1, n_out))
            i, j = rng.integers(0, n_out, 2)
            A[0, i] += 1
            A[0, j] -= 1
        v = ys @ A.T
        b = np.quantile(v, rng.choice([0.0, 0.001, 0.02]), axis=0) - rng.choice([0.0, 1e-4, 1e-2, 0.1]) * (1 + np.abs(v).max(0))
        ds.append(LinearConstraints(A, b))
    return m, Property(InputRegion(lo, hi, mask), tuple(ds))


def check_verdict(m, prop, res, exact: float) -> None:
    if res.verdict.name == "CERTIFIED":
        assert exact > -1e-7, f"CERTIFIED but the exact MILP finds a violation (margin {exact})"
    elif res.verdict.name == "FALSIFIED":
        assert float32_violates(m, prop, res.counterexample), "counterexample does not violate in float32"
    if exact < -1e-3:
        assert res.verdict.name != "CERTIFIED"


# ----------------------------------------------------------------------------- verify
@pytest.mark.parametrize("seed", [0, 3, 13, 16, 18, 19, 20, 27, 29, 31, 38, 7001, 7007])
def test_verify_agrees_with_milp_on_random_nets(seed):
    m, prop = random_case(seed)
    res = certprune.verify(m, prop, timeout=5, config=QUICK)
    check_verdict(m, prop, res, exact_margin(m, prop))


def test_verify_boundary_threshold_just_below_and_above_exact_minimum():
    m = rand_net(np.random.default_rng(5), 2, [6, 5], 1)
    lo, hi = np.array([-1.0, -0.5]), np.array([1.0, 0.5])
    best, _ = milp_min_max_rows(m, lo, hi, np.array([[1.0]]), np.array([0.0]))   # best = min y
    for off, expect in ((-1e-3, "CERTIFIED"), (1e-3, "FALSIFIED")):
        prop = Property(InputRegion(lo, hi), (LinearConstraints([[1.0]], [best + off]),))   # violation: y <= min+off
        res = certprune.verify(m, prop, timeout=10, config=QUICK)
        check_verdict(m, prop, res, exact_margin(m, prop))
        assert res.verdict.name == expect


def test_verify_relu_as_last_layer():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1), nn.ReLU())
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        m[0].bias.zero_()
        m[2].weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        m[2].bias.fill_(-0.1)
    region = InputRegion(np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
    never = Property(region, (LinearConstraints([[1.0]], [-1e-3]),))    # y <= -0.001: impossible after ReLU
    zero = Property(region, (LinearConstraints([[1.0]], [0.0]),))       # y <= 0: happens (e.g. x = 0)
    assert certprune.verify(m, never, timeout=10).verdict.name == "CERTIFIED"
    r = certprune.verify(m, zero, timeout=10)
    assert r.verdict.name == "FALSIFIED" and float32_violates(m, zero, r.counterexample)


def test_verify_exact_argmax_tie_is_a_violation():
    """Two identical logits: 'label 0 wins strictly' is false everywhere (tie = violation)."""
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        m[0].weight.copy_(torch.randn(3, 2, generator=torch.Generator().manual_seed(1)))
        m[2].weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [1.0, 2.0, -1.0]]))
        m[2].bias.copy_(torch.tensor([0.25, 0.25]))
    spec = certprune.RobustnessSpec(np.array([0.3, 0.6]), 0.1, label=0)
    prop = spec.to_property(2)
    r = certprune.verify(m, prop, timeout=10)
    assert r.verdict.name == "FALSIFIED" and float32_violates(m, prop, r.counterexample)


def test_verify_zero_width_and_integer_dimensions():
    m = rand_net(np.random.default_rng(11), 3, [5, 4], 2)
    lo, hi = np.array([0.25, -2.0, -0.5]), np.array([0.25, 2.0, 0.5])
    mask = np.array([False, True, False])
    with torch.no_grad():
        ys = m(torch.tensor(np.c_[np.full(500, 0.25), np.random.default_rng(0).integers(-2, 3, 500),
                                  np.linspace(-0.5, 0.5, 500)], dtype=torch.float32)).double().numpy()
    for q in (ys[:, 0].min() - 0.05, ys[:, 0].min() + 0.05):
        prop = Property(InputRegion(lo, hi, mask), (LinearConstraints([[1.0, 0.0]], [q]),
                                                   LinearConstraints([[0.0, 1.0], [-1.0, 0.0]], [ys[:, 1].min() - 1, -q - 10])))
        res = certprune.verify(m, prop, timeout=10, config=QUICK)
        check_verdict(m, prop, res, exact_margin(m, prop))
        assert res.verdict.name in ("CERTIFIED", "FALSIFIED")


def test_verify_huge_and_tiny_weights_on_exact_scale():
    """Weights 1e4 / 1e-6 with thresholds far from float32 noise: verdicts match the MILP."""
    rng = np.random.default_rng(2)
    for scale in (1e4, 1e-6):
        m = rand_net(rng, 2, [4], 1, scale=scale)
        lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
        best, _ = milp_min_max_rows(m, lo, hi, np.array([[1.0]]), np.array([0.0]))
        gap = 1e-2 * (1 + abs(best))
        for off in (-gap, gap):
            prop = Property(InputRegion(lo, hi), (LinearConstraints([[1.0]], [best + off]),))
            res = certprune.verify(m, prop, timeout=10, config=QUICK)
            check_verdict(m, prop, res, exact_margin(m, prop))
            assert res.verdict.name == ("CERTIFIED" if off < 0 else "FALSIFIED")


# ----------------------------------------------------------------------------- smt
@pytest.mark.parametrize("seed", [1, 2, 4])
def test_smt_solve_property_agrees_with_milp(seed):
    from certprune.verifiers.bounds import affine_net
    from certprune.verifiers.smt import solve_property
    m, prop = random_case(seed)
    net = affine_net(m, prop.region.shape)
    out = solve_property(net, prop, timeout=10)
    exact = exact_margin(m, prop)
    if out.status == "unsat":
        assert exact > -1e-9
    elif out.status == "sat":
        assert exact < 1e-9
        assert prop.region.contains(out.x.reshape(prop.region.shape), tol=1e-12).all()
        assert out.stats["float64_margin"] <= 1e-9


# ----------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("scale", [1.0, 1e4, 1e-6])
@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_compute_bounds_enclose_exact_outputs_and_preactivations(scale, method):
    rng = np.random.default_rng(17)
    m = rand_net(rng, 3, [6, 5], 2, scale=scale).double()
    lo, hi = np.array([-1.0, 0.0, 0.5]), np.array([1.0, 0.0, 2.0])      # one zero-width input
    b = certprune.compute_bounds(m, lo, hi, method=method, engine="native", return_intermediate=True)
    pts = np.vstack([rng.uniform(lo, hi, (3000, 3)), np.array(list(itertools.product(*zip(lo, hi))))])
    h = torch.from_numpy(pts)
    pre = []
    with torch.no_grad():
        for mod in m:
            h = mod(h)
            if isinstance(mod, nn.Linear):
                pre.append(h.clone())
    y = h.numpy()
    tol = 1e-9 * (1 + np.abs(y).max())
    assert np.all(b.lower.numpy()[0] <= y.min(0) + tol) and np.all(b.upper.numpy()[0] >= y.max(0) - tol)
    for (l, u), z in zip(b.intermediate or (), pre[:-1]):
        z = z.numpy()
        t = 1e-9 * (1 + np.abs(z).max())
        assert np.all(l.numpy()[0] <= z.min(0) + t) and np.all(u.numpy()[0] >= z.max(0) - t)
    for j in range(2):   # exact per-output min / max from the MILP
        for s in (1.0, -1.0):
            e = np.zeros((1, 2))
            e[0, j] = s
            v, _ = milp_min_max_rows(m, lo, hi, e, np.zeros(1))
            if s > 0:
                assert b.lower.numpy()[0, j] <= v + 1e-6 * (1 + abs(v))
            else:
                assert b.upper.numpy()[0, j] >= -v - 1e-6 * (1 + abs(v))


def test_compute_bounds_conv_net_enclose_samples():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, stride=2), nn.ReLU(),
                      nn.Flatten(), nn.Linear(2 * 2 * 2, 3)).double().eval()
    lo = np.random.default_rng(0).uniform(0, 0.5, (1, 5, 5))
    hi = lo + 0.2
    for method in ("ibp", "crown", "alpha-crown"):
        b = certprune.compute_bounds(m, lo, hi, method=method, engine="native", input_shape=(1, 5, 5))
        x = torch.from_numpy(np.random.default_rng(1).uniform(lo, hi, (2000, 1, 5, 5)))
        with torch.no_grad():
            y = m(x).numpy()
        assert np.all(b.lower.numpy()[0] <= y.min(0) + 1e-9) and np.all(b.upper.numpy()[0] >= y.max(0) - 1e-9)


def test_neuron_stability_only_counts_truly_stable_neurons():
    rng = np.random.default_rng(8)
    m = rand_net(rng, 2, [8, 8], 1).double()
    lo, hi = np.array([-0.3, 0.1]), np.array([0.2, 0.4])
    st = certprune.neuron_stability(m, lo, hi)
    b = certprune.compute_bounds(m, lo, hi, return_intermediate=True)
    pts = torch.from_numpy(np.vstack([rng.uniform(lo, hi, (4000, 2)), np.array(list(itertools.product(*zip(lo, hi))))]))
    pre, h = [], pts
    with torch.no_grad():
        for mod in m:
            h = mod(h)
            if isinstance(mod, nn.Linear):
                pre.append(h.numpy())
    for j, ((l, u), z) in enumerate(zip(b.intermediate, pre)):
        dead, live = u.numpy()[0] <= 0, l.numpy()[0] >= 0
        assert np.all(z[:, dead] <= 1e-12) and np.all(z[:, live] >= -1e-12)
        row = st.iloc[j]
        assert int(row.inactive) == int(dead.sum()) and int(row.active) == int((live & ~dead).sum())


# ----------------------------------------------------------------------------- fairness
def _brute_unfair(m, spec, plo, phi) -> bool:
    from certprune.verifiers.twin import valid_pairs
    pts = np.array(list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(plo, phi)])), dtype=np.float64)
    with torch.no_grad():
        y = m.float()(torch.tensor(pts, dtype=torch.float32)).numpy()
    d = y[:, 0] > 0 if y.shape[1] == 1 else np.argmax(y, axis=1) == 1
    I, J = (g.ravel() for g in np.meshgrid(np.arange(len(pts)), np.arange(len(pts)), indexing="ij"))
    # validity re-implemented here (not certprune's valid_pairs) for the common fields
    prot = list(spec.protected_indices)
    rel = dict(zip(spec.relaxed_indices, spec.relaxed_deltas))
    diff = np.abs(pts[I] - pts[J])
    ok = np.any(diff[:, prot] > 0, axis=1)
    for i in range(pts.shape[1]):
        if i in prot:
            continue
        ok &= diff[:, i] <= rel.get(i, 0)
    assert np.array_equal(ok, valid_pairs(spec, pts[I], pts[J], plo, phi))
    return bool(np.any(ok & (d[I] != d[J])))


FAIR_CASES = [  # (seed, n_features, protected, relaxed, n_out)
    (0, 3, ("f0",), {}, 1),
    (1, 3, ("f0",), {"f2": 1}, 1),
    (2, 3, ("f0",), {"f2": 2}, 2),
    (3, 4, ("f0", "f1"), {}, 1),
    (4, 3, ("f0",), {"f2": 3}, 2),
    (5, 2, ("f0",), {}, 2),
]


@pytest.mark.parametrize("seed,nf,prot,rel,n_out", FAIR_CASES)
def test_audit_fairness_agrees_with_brute_force(seed, nf, prot, rel, n_out):
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    from certprune.verifiers.fairness_bab import BabConfig
    rng = np.random.default_rng(seed)
    lo = rng.integers(-2, 2, nf)
    hi = lo + rng.integers(1, 4, nf)
    hi[0] = lo[0] + 2                      # protected attribute with three values
    names = tuple(f"f{i}" for i in range(nf))
    m = rand_net(rng, nf, [5, 5], n_out)
    spec = FairnessSpec(names, lo, hi, prot, rel)
    truth = _brute_unfair(m, spec, lo, hi)
    for cfg in (None, BabConfig(enum_points=0, z3_unstable=1000, z3_depth=1, z3_every=1)):
        res = audit_fairness(m, spec, partition_size=100, timeout=20, progress=False, config=cfg)
        v = res.partitions.iloc[0]["verdict"]
        assert not (v == "certified" and truth), "CERTIFIED but brute force finds a flipping pair"
        assert not (v == "falsified" and not truth)
        cex = res.counterexamples
        for _, row in cex.iterrows():     # every reported pair is valid and flips in float32
            x = np.array([[row[f"x.{n}"] for n in names]], dtype=np.float64)
            xp = np.array([[row[f"x_prime.{n}"] for n in names]], dtype=np.float64)
            assert np.all((x >= lo) & (x <= hi) & (xp >= lo) & (xp <= hi)) and np.all(x == np.round(x))
            with torch.no_grad():
                y = m.float()(torch.tensor(np.vstack([x, xp]), dtype=torch.float32)).numpy()
            d = y[:, 0] > 0 if y.shape[1] == 1 else np.argmax(y, axis=1) == 1
            assert d[0] != d[1]


def test_fairness_relaxed_attribute_at_domain_edge_stays_in_domain():
    """Decisions flip only if x' leaves the domain (relaxed age pushed past its upper bound 3)."""
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    m = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        m[0].bias.fill_(-3.0)
        m[2].weight.fill_(1.0)
        m[2].bias.fill_(-0.75)
    spec = FairnessSpec(("sex", "age"), np.array([0, 0]), np.array([1, 3]), ("sex",), {"age": 2})
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[0.5, 1.0]]))   # y = relu(0.5 sex + age - 3) - 0.75
    assert not _brute_unfair(m, spec, spec.lower, spec.upper)
    res = audit_fairness(m, spec, partition_size=100, timeout=20, progress=False)
    assert res.summary["counts"]["certified"] == 1


# ----------------------------------------------------------------------------- bad inputs
def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))


def _prop(n_in=2, n_out=1):
    return Property(InputRegion(np.zeros(n_in), np.ones(n_in)), (LinearConstraints(np.ones((1, n_out)), [0.0]),))


def _nan_weight():
    m = _net()
    with torch.no_grad():
        m[0].weight[0, 0] = float("nan")
    return certprune.verify(m, _prop(), timeout=3)


def _nan_buffer():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1)).eval()
    m[1].running_var.fill_(float("nan"))
    return certprune.verify(m, _prop(), timeout=3)


BAD = {
    "nan weight": _nan_weight,
    "nan batchnorm buffer": _nan_buffer,
    "lower > upper": lambda: InputRegion(np.array([1.0]), np.array([0.0])),
    "nan bound": lambda: InputRegion(np.array([np.nan]), np.array([0.0])),
    "input shape mismatch": lambda: certprune.verify(_net(), _prop(3), timeout=3),
    "output shape mismatch": lambda: certprune.verify(_net(), _prop(2, 2), timeout=3),
    "A/b mismatch": lambda: LinearConstraints(np.ones((2, 1)), [0.0]),
    "nan in A": lambda: LinearConstraints(np.array([[np.nan]]), [0.0]),
    "no disjunct": lambda: Property(InputRegion(np.zeros(1), np.ones(1)), ()),
    "no integer point": lambda: InputRegion(np.array([0.2]), np.array([0.8]), np.array([True])),
    "zero timeout": lambda: certprune.verify(_net(), _prop(), timeout=0),
    "non-relu activation": lambda: certprune.verify(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)),
                                                    _prop(), timeout=3),
    "bounds lower > upper": lambda: certprune.compute_bounds(_net(), np.ones(2), np.zeros(2)),
    "bounds wrong dim": lambda: certprune.compute_bounds(_net(), np.zeros(3), np.ones(3)),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_raise_certprune_errors(name):
    with pytest.raises(CertpruneError):
        BAD[name]()


# ----------------------------------------------------------------------------- known bugs (xfail)
def test_verify_after_inplace_data_edit_is_not_certified():
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        m[0].weight.zero_()
        m[0].bias.zero_()
        m[2].weight.zero_()
        m[2].bias.fill_(1.0)
    prop = Property(InputRegion(np.zeros(2), np.ones(2)), (LinearConstraints([[1.0]], [0.5]),))
    assert certprune.verify(m, prop, timeout=5).verdict.name == "CERTIFIED"
    k, c = 1e6, 0.3
    m[0].weight.data[:3, 0] = k
    m[0].bias.data[:3] = torch.tensor([-k * c, -k * (c + 1e-6), -k * (c + 2e-6)])
    m[2].weight.data[0, :3] = torch.tensor([-1.0, 2.0, -1.0])     # y = 1 - hat(x0), y = 0 at x0 = c + 1e-6
    with torch.no_grad():
        assert m(torch.tensor([[c + 1e-6, 0.0]])).item() <= 0.5
    assert certprune.verify(m, prop, timeout=10).verdict.name != "CERTIFIED"


def test_fairness_z3_leaf_does_not_drop_barely_active_neurons():
    """Default BabConfig: unfair pairs only at x3 = x4 = 1024, x6 = 1, x7 = 12345; neuron
    A = x3 - x4 + 2^-60 x5 has exact max 2^-60 but a float64 upper bound of 0.0."""
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    big, k, top = 2.0 ** 10, 12345.0, 2.0 ** 20
    m = nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[0.0, 1.0, -1.0, 2.0 ** -60, 0.0, 0.0], [0.0, -1.0, 1.0, 0.0, 0.0, 0.0],
                                        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, -1.0, 0.0],
                                        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0, -1.0],
                                        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]))
        m[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0, 1.0, -k, k, 0.0]))
        m[2].weight.copy_(torch.tensor([[0.0, -1.0, -1.0, -1.0, -1.0, -1.0, 1.0]]))
        m[2].bias.fill_(-0.5)
    lo, hi = np.array([0, 0, big, 1, 0, 0]), np.array([1, big, big, 1, 2, top])
    with torch.no_grad():
        y = m(torch.tensor([[0, big, big, 1, 1, k], [1, big, big, 1, 1, k]], dtype=torch.float32))[:, 0]
    assert (y[0] > 0) != (y[1] > 0)        # a valid unfair pair exists
    spec = FairnessSpec(("p", "a", "b", "c", "d", "e"), lo, hi, ("p",))
    res = audit_fairness(m, spec, partition_size=10 ** 9, timeout=30, progress=False)
    assert res.summary["counts"]["certified"] == 0


def test_verify_after_structural_change_is_not_certified():
    m = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        m[0].weight.fill_(1.0)
        m[0].bias.zero_()
        m[2].weight.fill_(1.0)
        m[2].bias.zero_()
    lo, hi = np.array([-1.0]), np.array([1.0])
    assert certprune.compute_bounds(m, lo, hi).lower.item() == pytest.approx(0.0)
    m[1] = nn.Identity()                      # y = x now: min -1
    assert certprune.compute_bounds(m, lo, hi).lower.item() <= -1.0 + 1e-9


def test_robustness_spec_point_outside_clip_range_is_rejected():
    from certprune.errors import SpecError
    with pytest.raises(SpecError):
        certprune.RobustnessSpec(np.array([2.0, 0.5]), 0.1, label=0).to_property(2)


@pytest.mark.xfail(reason="documented semantics: verify() certifies the exact-arithmetic network with a "
                          "1e-7*(1+|b|) margin, not a rigorous float32 bound; with cancelling weights 1e4 "
                          "float32 rounds to a violation (see verify.py module doc)", strict=False)
def test_verify_certificate_survives_float32_rounding_with_large_weights():
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():                      # exact y = 2^-10 x1 + 8 |x2 - 0.5| > 0
        m[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        m[0].bias.copy_(torch.tensor([0.0, 0.0, -0.5, 0.5]))
        m[2].weight.copy_(torch.tensor([[10000.0, -(10000.0 - 2.0 ** -10), 8.0, 8.0]]))
        m[2].bias.zero_()
    x1 = torch.linspace(1.7, 1.9, 20001)
    with torch.no_grad():
        assert (m(torch.stack([x1, torch.full_like(x1, 0.5)], 1)) <= 0).any()   # float32 violates
    prop = Property(InputRegion(np.array([1.7, 0.3]), np.array([1.9, 0.61])), (LinearConstraints([[1.0]], [0.0]),))
    assert certprune.verify(m, prop, timeout=20).verdict.name != "CERTIFIED"


def test_verify_boundary_output_returns_a_result():
    Y = [9.314530372619629, 32.14974594116211]
    A = np.array([[0.27041121737629265, 0.0], [0.23145575486826325, 0.2623177261020906]])
    b = np.array([2.5187534973485266, 10.589349908683602])
    m = nn.Sequential(nn.Linear(1, 2))
    with torch.no_grad():
        m[0].weight.zero_()
        m[0].bias.copy_(torch.tensor(Y))
    prop = Property(InputRegion(np.zeros(1), np.zeros(1)), (LinearConstraints(A, b),))
    r = certprune.verify(m, prop, timeout=5)
    assert r.verdict.name in ("FALSIFIED", "UNKNOWN", "CERTIFIED")


def test_fairness_partition_size_does_not_hide_protected_pairs():
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    m = race_is_two_model()  # decision = (race == 2)
    spec = FairnessSpec(("race", "age"), np.array([0, 0]), np.array([2, 3]), ("race",))
    res = audit_fairness(m, spec, partition_size=2, timeout=10, progress=False)
    assert res.summary["fair_on_domain"] is False


def test_fairness_partition_size_one_does_not_crash():
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    spec = FairnessSpec(("sex", "age"), np.array([0, 0]), np.array([1, 3]), ("sex",))
    audit_fairness(m, spec, partition_size=1, timeout=10, progress=False)


def test_cli_point_box_without_float32_value_is_sat(tmp_path):
    from certprune.verifiers.instance import decide_instance
    m = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        m[0].bias.zero_()
        m[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
        m[2].bias.zero_()
    torch.onnx.export(m, torch.zeros(1, 1), str(tmp_path / "abs.onnx"), input_names=["x"], output_names=["y"],
                      dynamo=False)
    (tmp_path / "p.vnnlib").write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                                       "(assert (>= X_0 0.1))\n(assert (<= X_0 0.1))\n(assert (>= Y_0 0.05))\n")
    assert decide_instance(str(tmp_path / "abs.onnx"), str(tmp_path / "p.vnnlib"), 20.0).word == "sat"
