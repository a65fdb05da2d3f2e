"""The exact z3 back end against brute force: exhaustive enumeration on integer boxes, and an LP
per activation pattern on real boxes; plus sound pre-bounds, error handling and exactness."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import random_mlp

from certprune.errors import ConfigError, ShapeMismatchError, SpecError
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.bounds import compute_bounds
from certprune.graph import build_graph
from certprune.graph.encode_z3 import encode_z3, interval_pre
from certprune.verifiers.smt import SmtOptions, input_variables, rational, solve_property, widen_bounds


def _net(sizes, seed, bits: int | None = 6) -> AffineReluNet:
    """Random net; weights rounded to multiples of 2**-bits (short exact rationals keep z3 fast;
    ``bits=None`` keeps the raw float32 weights, whose 24-bit rationals make z3 much slower)."""
    net = AffineReluNet.from_module(random_mlp(sizes, seed=seed), (sizes[0],))
    if bits is None:
        return net
    r = lambda t: torch.round(t * 2.0 ** bits) / 2.0 ** bits  # noqa: E731
    return AffineReluNet(tuple(r(w) for w in net.weights), tuple(r(b) for b in net.biases), net.input_shape)


def _at_least(region: InputRegion, t: float, n_out: int = 1, k: int = 0) -> Property:
    """Violation: y_k >= t."""
    row = np.zeros(n_out)
    row[k] = -1.0
    return Property(region, (LinearConstraints(row[None], np.array([-t])),))


def _lp_max(net: AffineReluNet, lo: np.ndarray, hi: np.ndarray) -> float:
    """Exact-in-float maximum of a one-output net over a box: one LP per activation pattern."""
    from scipy.optimize import linprog
    ws = [w.numpy() for w in net.weights]
    bs = [b.numpy() for b in net.biases]
    best = -np.inf
    for pattern in itertools.product(*[itertools.product((0, 1), repeat=n) for n in net.relu_sizes]):
        M, c = np.eye(len(lo)), np.zeros(len(lo))
        A_ub, b_ub = [], []
        for k, s in enumerate(pattern):
            Mz, cz = ws[k] @ M, ws[k] @ c + bs[k]
            for j, on in enumerate(s):   # on: z_j >= 0  <=>  -Mz_j x <= cz_j ; off: Mz_j x <= -cz_j
                A_ub.append(-Mz[j] if on else Mz[j])
                b_ub.append(cz[j] if on else -cz[j])
            d = np.array(s, dtype=float)
            M, c = d[:, None] * Mz, d * cz
        My, cy = ws[-1] @ M, ws[-1] @ c + bs[-1]
        r = linprog(-My[0], A_ub=np.array(A_ub), b_ub=np.array(b_ub), bounds=list(zip(lo, hi)), method="highs")
        if r.status == 0:
            best = max(best, -r.fun + cy[0])
    return best


@pytest.mark.parametrize("seed,bits", [(0, 6), (1, 6), (2, None)])
def test_real_box_matches_lp_per_activation_pattern(seed, bits):
    net = _net([2, 4, 3, 1], seed, bits)
    lo, hi = -np.ones(2), np.ones(2)
    ymax = _lp_max(net, lo, hi)
    region = InputRegion(lo, hi)
    sat = solve_property(net, _at_least(region, ymax - 1e-3), timeout=20)
    assert sat.status == "sat"
    assert region.contains(sat.x)
    y = net.forward(torch.as_tensor(sat.x[None])).item()
    assert y >= ymax - 1e-3 - 1e-9
    assert solve_property(net, _at_least(region, ymax + 1e-3), timeout=20).status == "unsat"


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_integer_box_matches_exhaustive_enumeration(seed):
    net = _net([3, 6, 5, 2], seed)
    lo, hi = np.array([-3.0, 0.0, -2.0]), np.array([3.0, 4.0, 2.0])
    grid = np.array(list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(lo, hi)])), float)
    y = net.forward(torch.as_tensor(grid)).numpy()
    diff = y[:, 0] - y[:, 1]   # violation: y0 - y1 >= t
    region = InputRegion(lo, hi, np.ones(3, bool))
    for t in (diff.max() - 1e-6, diff.max() + 1e-6, np.median(diff), diff.min() - 1.0):
        prop = Property(region, (LinearConstraints(np.array([[-1.0, 1.0]]), np.array([-t])),))
        out = solve_property(net, prop, timeout=20)
        assert out.status == ("sat" if (diff >= t).any() else "unsat")
        if out.status == "sat":
            assert region.contains(out.x) and np.all(out.x == np.round(out.x))
            yx = net.forward(torch.as_tensor(out.x[None])).numpy()[0]
            assert yx[0] - yx[1] >= t - 1e-12
            assert out.stats["float64_margin"] <= 1e-12


def test_disjunctions_and_mixed_integer_inputs():
    net = _net([3, 5, 4, 2], 7)
    lo, hi = np.array([0.0, -1.0, 0.0]), np.array([3.0, 1.0, 2.0])
    mask = np.array([True, False, True])
    region = InputRegion(lo, hi, mask)
    ys = net.forward(torch.as_tensor(np.random.default_rng(0).uniform(lo, hi, (4000, 3)))).numpy()
    t0, t1 = ys[:, 0].max() + 5.0, ys[:, 1].max() + 5.0   # both disjuncts out of reach
    unreachable = Property(region, (LinearConstraints(np.array([[-1.0, 0.0]]), np.array([-t0])),
                                    LinearConstraints(np.array([[0.0, -1.0]]), np.array([-t1]))))
    assert solve_property(net, unreachable, timeout=20).status == "unsat"
    reach = Property(region, (LinearConstraints(np.array([[-1.0, 0.0]]), np.array([-t0])),
                              LinearConstraints(np.array([[0.0, -1.0]]), np.array([-(t1 - 5.0 - 1.0)]))))
    out = solve_property(net, reach, timeout=20)
    assert out.status == "sat"
    assert np.all(out.x[mask] == np.round(out.x[mask])) and region.contains(out.x)
    assert reach.is_violated(net.forward(torch.as_tensor(out.x[None])).numpy())[0]


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_sound_pre_bounds_do_not_change_verdicts(method):
    net = _net([3, 8, 6, 1], 11)
    lo, hi = np.array([-2.0, -2.0, 0.0]), np.array([2.0, 1.0, 3.0])
    region = InputRegion(lo, hi, np.ones(3, bool))
    grid = np.array(list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(lo, hi)])), float)
    y = net.forward(torch.as_tensor(grid)).numpy()[:, 0]
    b = compute_bounds(net, lo, hi, method=method, return_intermediate=True)
    pre = [(l[0].numpy(), u[0].numpy()) for l, u in b.intermediate]
    for t in (y.max() - 1e-6, y.max() + 1e-6):
        prop = _at_least(region, t)
        plain = solve_property(net, prop, timeout=20, options=SmtOptions(auto_bounds=False))
        pruned = solve_property(net, prop, timeout=20, pre_bounds=pre)
        assert plain.status == pruned.status == ("sat" if t <= y.max() else "unsat")
        assert plain.stats["unstable"] == sum(net.relu_sizes)
        assert pruned.stats["inactive"] + pruned.stats["active"] + pruned.stats["unstable"] == sum(net.relu_sizes)


def test_widened_bounds_enclose_exact_values():
    net = _net([4, 10, 10, 1], 5)
    lo, hi = -np.ones(4), np.ones(4)
    b = compute_bounds(net, lo, hi, method="crown", return_intermediate=True)
    pre = widen_bounds(net, lo, hi, [(l[0].numpy(), u[0].numpy()) for l, u in b.intermediate])
    _, pre_acts = net.forward(torch.as_tensor(np.random.default_rng(1).uniform(lo, hi, (5000, 4))), True)
    for (wl, wu), z, (l, u) in zip(pre, pre_acts, b.intermediate):
        assert np.all(wl <= l[0].numpy()) and np.all(wu >= u[0].numpy())
        assert np.all(z.numpy() >= wl) and np.all(z.numpy() <= wu)


def test_dead_neuron_is_dropped_and_active_one_linearised():
    w1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    b1 = torch.tensor([3.0, -5.0, 0.0], dtype=torch.float64)    # on [-1,1]^2: active, dead, unstable
    w2 = torch.tensor([[1.0, 100.0, 1.0]], dtype=torch.float64)
    net = AffineReluNet((w1, w2), (b1, torch.zeros(1, dtype=torch.float64)), (2,))
    region = InputRegion(-np.ones(2), np.ones(2))
    out = solve_property(net, _at_least(region, 5.0), timeout=10)   # max = (1+3) + 0 + 1 = 5
    assert out.status == "sat" and (out.stats["inactive"], out.stats["active"], out.stats["unstable"]) == (1, 1, 1)
    np.testing.assert_allclose(out.x, [1.0, 1.0])
    assert solve_property(net, _at_least(region, 5.0 + 2.0 ** -40), timeout=10).status == "unsat"


def test_weights_are_converted_exactly():
    import z3
    for v in (0.1, -1 / 3, 1e-30, 12345.678, float(np.float32(0.7))):
        assert rational(v).as_fraction() == Fraction(v)
    # 0.1 + 0.2 == 0.3 is false in exact rationals of the floats, as it is in float64
    s = z3.Solver()
    s.add(rational(0.1) + rational(0.2) == rational(0.3))
    assert s.check() == z3.unsat


def test_encode_z3_serves_two_copies_in_one_solver():
    import z3
    net = _net([2, 4, 1], 3)
    region = InputRegion(np.zeros(2), np.full(2, 3.0), np.ones(2, bool))
    xa, ta, ca = input_variables(region, "a")
    xb, tb, cb = input_variables(region, "b")
    g = build_graph(net)
    ea, eb = encode_z3(g, ta, prefix="A"), encode_z3(g, tb, prefix="B")
    s = z3.Solver()
    s.add(ca + cb + ea.constraints + eb.constraints + [xa[0] == xb[0], xa[1] != xb[1]])
    grid = np.array(list(itertools.product(range(4), range(4))), float)
    y = net.forward(torch.as_tensor(grid)).numpy()[:, 0].reshape(4, 4)
    gap = (y.max(axis=1) - y.min(axis=1)).max()   # largest change when only x1 moves
    s.add(ea.outputs[0] - eb.outputs[0] >= rational(gap + 1e-6))
    assert s.check() == z3.unsat
    s2 = z3.Solver()
    s2.add(ca + cb + ea.constraints + eb.constraints + [xa[0] == xb[0], xa[1] != xb[1]])
    s2.add(ea.outputs[0] - eb.outputs[0] >= rational(gap - 1e-6))
    assert s2.check() == z3.sat


def test_extra_constraints_callable_and_list():
    net = _net([2, 3, 1], 8)
    region = InputRegion(np.zeros(2), np.full(2, 5.0), np.ones(2, bool))
    t = net.forward(torch.as_tensor(np.array([[2.0, 2.0]]))).item()
    prop = _at_least(region, t - 1e-9)
    pinned = solve_property(net, prop, timeout=10, extra_constraints=lambda xs, ys: [xs[0] == 2, xs[1] == 2])
    assert pinned.status == "sat" and pinned.x.tolist() == [2.0, 2.0]
    import z3
    out = solve_property(net, prop, timeout=10, extra_constraints=[z3.Int("x0") == 2, z3.Int("x1") == 2])
    assert out.status == "sat" and out.x.tolist() == [2.0, 2.0]


def test_bad_inputs_raise_specific_errors():
    net = _net([3, 4, 1], 0)
    region = InputRegion(np.zeros(3), np.ones(3))
    with pytest.raises(ConfigError, match="timeout"):
        solve_property(net, _at_least(region, 0.0), timeout=0)
    with pytest.raises(ShapeMismatchError, match="2 inputs"):
        solve_property(net, _at_least(InputRegion(np.zeros(2), np.ones(2)), 0.0), timeout=1)
    with pytest.raises(ShapeMismatchError, match="outputs"):
        solve_property(net, _at_least(region, 0.0, n_out=2), timeout=1)
    with pytest.raises(ShapeMismatchError, match="pre_bounds"):
        solve_property(net, _at_least(region, 0.0), timeout=1, pre_bounds=[(np.zeros(3), np.ones(3))])
    with pytest.raises(SpecError, match="extra_constraints"):
        solve_property(net, _at_least(region, 0.0), timeout=1, extra_constraints=["x0 > 1"])
    with pytest.raises(ConfigError, match="ReLU encoding"):
        SmtOptions(relu="bigm")
    with pytest.raises(ConfigError, match="strategy"):
        SmtOptions(strategy="magic")


def test_timeout_gives_unknown_not_a_verdict():
    net = _net([6, 40, 40, 40, 1], 2, bits=None)
    region = InputRegion(-np.ones(6), np.ones(6))
    ys = net.forward(torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (20000, 6)))).numpy()
    out = solve_property(net, _at_least(region, float(ys.max()) + 1e-3), timeout=0.05,
                         options=SmtOptions(auto_bounds=False))
    assert out.status == "unknown"   # 120 unstable ReLUs with 24-bit rationals: far beyond 50 ms
    assert out.x is None and out.stats["reason_unknown"] == "timeout"


@pytest.mark.parametrize("options", [SmtOptions(relu="disjunction"), SmtOptions(strategy="default"),
                                     SmtOptions(strategy="solve-eqs", triangle=False),
                                     SmtOptions(relu="disjunction", auto_bounds=False)])
def test_every_encoding_and_strategy_agrees_with_enumeration(options):
    net = _net([3, 6, 4, 1], 21)
    lo, hi = np.array([-3.0, -3.0, 0.0]), np.array([3.0, 2.0, 4.0])
    grid = np.array(list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(lo, hi)])), float)
    y = net.forward(torch.as_tensor(grid)).numpy()[:, 0]
    region = InputRegion(lo, hi, np.ones(3, bool))
    for t in (y.max() - 1e-6, y.max() + 1e-6):
        out = solve_property(net, _at_least(region, t), timeout=20, options=options)
        assert out.status == ("sat" if t <= y.max() else "unsat")
        if out.status == "sat":
            assert net.forward(torch.as_tensor(out.x[None])).item() >= t - 1e-12


def test_widened_interval_bounds_enclose_exact_rational_values_on_point_boxes(monkeypatch):
    """Point boxes, large magnitudes: float64 interval bounds collapse to l == u, which float64
    rounding can place on the wrong side of the exact value; the widening must cover that (the
    raw bounds without the bound engine's own rounding margin, ``crown.ROUNDING_MARGIN``)."""
    from certprune.bounds import crown
    monkeypatch.setattr(crown, "ROUNDING_MARGIN", False)
    rng = np.random.default_rng(3)
    ws = [torch.as_tensor(rng.normal(0, 300, (12, 6))), torch.as_tensor(rng.normal(0, 1, (8, 12))),
          torch.as_tensor(rng.normal(0, 1, (1, 8)))]
    bs = [torch.as_tensor(rng.normal(0, 1000, n)) for n in (12, 8, 1)]
    net = AffineReluNet(tuple(ws), tuple(bs), (6,))
    missed_unwidened = 0
    for _ in range(20):
        x = rng.integers(-20000, 20000, 6).astype(float)
        raw = interval_pre(build_graph(net), x, x)
        pre = widen_bounds(net, x, x, raw)
        act = [Fraction(v) for v in x]
        for k, ((wl, wu), (l, u)) in enumerate(zip(pre, raw)):
            w, b = ws[k].numpy(), bs[k].numpy()
            z = [sum(Fraction(w[r, j]) * act[j] for j in range(len(act))) + Fraction(b[r]) for r in range(len(b))]
            assert all(Fraction(lo) <= zr <= Fraction(hi) for lo, zr, hi in zip(wl, z, wu))
            missed_unwidened += sum(not Fraction(lo) <= zr <= Fraction(hi) for lo, zr, hi in zip(l, z, u))
            act = [max(zr, Fraction(0)) for zr in z]
    assert missed_unwidened > 0   # the raw float64 bounds do miss exact values: the widening matters
