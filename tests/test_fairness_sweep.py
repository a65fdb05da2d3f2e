"""The final sweep of the individual-counting search: binned counts under linear bounds
(``linear_count.tail_counts``), the proven-fair / proven-unfair counts of one twin box from both
copies' linear bounds (``sandwich_count.box_counts``), and the cells and partitions counted
at the deadline (``TwinBab._sweep_cells`` / ``_sweep_partitions``): every count is a lower bound
of brute force, the cells' tallies hold every decision made inside them, and the sweep adds
proven individuals on models the search leaves open."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from certprune.fairness_spec import FairnessSpec
from certprune.semantics import Semantics
from certprune.verifiers import fairness_bab, linear_count
from certprune.verifiers.fairness import EngineFactory, _prepare_model, audit_fairness
from certprune.verifiers.fairness_bab import BabConfig
from certprune.verifiers.linear_count import tail_counts
from certprune.verifiers.sandwich_count import box_counts
from certprune.verifiers.twin_bounds import copy_fns, decision_graph, twin_bounds
from test_fairness_exact import biased_mlp


@pytest.mark.parametrize("dp", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_tail_counts_are_lower_bounds_and_nearly_exact(seed, dp, monkeypatch):
    """Both ways of building a group's histogram (enumerated sums; the DP over features): every
    count is at most the enumerated one, and with fine bins it misses few points."""
    if dp:
        monkeypatch.setattr(linear_count, "ENUMERATE_MIN", 0)
        monkeypatch.setattr(linear_count, "ENUMERATE_RATIO", 0.0)
    rng = np.random.default_rng(seed)
    F = int(rng.integers(1, 7))
    widths = rng.integers(1, 9, size=F)
    a = rng.normal(size=(3, F)) * 10.0 ** rng.integers(-3, 4)
    a[:, rng.random(F) < 0.2] *= 1e-6  # features of tiny span (held as an interval)
    base = rng.normal(size=3)
    grid = np.array(list(itertools.product(*[range(w) for w in widths])))
    v = base[:, None] + a @ grid.T
    bins = int(rng.choice([8, 4096]))
    tc = tail_counts(a, base, widths, np.full(3, 1e-12), bins=bins)
    assert tc.total == len(grid)
    for r in range(3):
        ts = np.quantile(v[r], [0.0, 0.2, 0.5, 0.8, 1.0]) + rng.normal(size=5) * 1e-3
        ab, am = tc.above(r, ts), tc.at_most(r, ts)
        for t, x, y in zip(ts, ab, am):
            ex, ey = int((v[r] > t).sum()), int((v[r] <= t).sum())
            assert 0 <= x <= ex and 0 <= y <= ey
            if bins == 4096 and len(grid) >= 200:
                assert (ex - x) + (ey - y) <= 0.05 * len(grid)  # the band near t only
        t0, t1 = sorted(rng.choice(ts, 2, replace=False))
        assert 0 <= tc.between(r, t0, t1) <= int(((v[r] > t0) & (v[r] <= t1)).sum())
        assert tc.between(r, t1, t0) == 0


def _engine(model, spec, semantics=Semantics.EXACT, config=None):
    exact, module, _ = _prepare_model(model)
    return EngineFactory(exact, module, spec, config or BabConfig(), semantics)()


def _brute(eng, lo, hi):
    """Fair and unfair individuals of the box (both protected values) by exact decisions."""
    free = [range(int(a), int(b) + 1) for a, b in zip(lo, hi)]
    X = np.array(list(itertools.product(*free)), dtype=np.float64)
    X0, X1 = X.copy(), X.copy()
    X0[:, 2], X1[:, 2] = 0, 1
    d0, d1 = eng.decide_points(X0), eng.decide_points(X1)
    unfair = int((d0 != d1).sum())
    return 2 * (len(X) - unfair), 2 * unfair


@pytest.mark.parametrize("semantics", [Semantics.EXACT, Semantics.FLOAT32])
@pytest.mark.parametrize("seed", range(6))
def test_twin_box_counts_are_lower_bounds_of_brute_force(seed, semantics):
    """Random boxes of random biased nets (unstable ReLUs on most boxes): the proven-fair and
    proven-unfair counts never exceed brute force, and they are not vacuous over the run."""
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [15, 11, 1, 19], ("p",))
    eng = _engine(biased_mlp(seed, (4, 12, 8, 1)), spec, semantics)
    rng = np.random.default_rng(seed)
    got = np.zeros(2)
    for _ in range(12):
        lo = np.array([rng.integers(0, 10), rng.integers(0, 8), 0, rng.integers(0, 14)], dtype=np.float64)
        hi = np.minimum(lo + rng.integers(0, 8, size=4), spec.upper)
        hi[2] = 1
        u = eng.initial_units(lo[None], hi[None], np.array([0]))
        zlo, zhi, own, _, _ = eng._twin_boxes(u)
        tb = twin_bounds(eng.net, eng.layout, torch.from_numpy(zlo), torch.from_numpy(zhi), eng.last_abs,
                         crown_pass=False, keep_fns=True)
        fl, fu, err, mag = tb.fns
        margin = semantics.slack(mag.numpy(), np.stack([t.numpy() for t in tb.tau], 1))
        A, b, Au, bu = fl.A[0].numpy(), fl.b[0].numpy(), fu.A[0].numpy(), fu.b[0].numpy()
        fair, unfair = box_counts([(A[:, v], b[v]) for v in (0, 1)], [(Au[:, v], bu[v]) for v in (0, 1)],
                                  np.stack([zlo[0]] * 2), np.stack([zhi[0]] * 2), err.numpy()[0], mag.numpy()[0],
                                  margin[0])
        bf, bu = _brute(eng, lo, hi)
        assert 2 * fair <= bf and 2 * unfair <= bu
        got += (fair, unfair)
    assert got[0] > 0


WIDE = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [199, 149, 1, 199], ("p",))


def wide_model(seed: int) -> torch.nn.Sequential:
    """A 4-16-8-1 ReLU net scaled to WIDE's domain (features ~1/50, the protected input ~0.5),
    its decision boundary through the domain's centre: ~10 % of the individuals are unfair."""
    g = torch.Generator().manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                            torch.nn.Linear(8, 1)).eval()
    with torch.no_grad():
        for lin in (m[0], m[2], m[4]):
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g))
        m[0].weight.mul_(torch.tensor([1 / 50, 1 / 50, 0.5, 1 / 50]))
        m[4].bias.sub_(m(torch.tensor([[100.0, 75.0, 0.5, 100.0]]))[0])
    return m


def _true_counts(model, spec):
    """Exact-semantics fair / unfair individuals of the whole domain by float64 decisions, with
    the points whose logit is within 1e-6 of 0 for some value (either way possible) counted
    separately; any number of protected values (feature 2)."""
    g = np.meshgrid(*[np.arange(int(spec.lower[i]), int(spec.upper[i]) + 1) for i in (0, 1, 3)], indexing="ij")
    X = np.stack([c.ravel() for c in g], 1).astype(np.float64)
    vals = range(int(spec.lower[2]), int(spec.upper[2]) + 1)
    mod = model.double()
    with torch.no_grad():
        y = np.stack([mod(torch.from_numpy(np.insert(X, 2, v, axis=1)))[:, 0].numpy() for v in vals])
    model.float()
    V = len(y)
    near = (np.abs(y) < 1e-6).any(0)
    flip = (y > 0).any(0) & (y <= 0).any(0)
    return V * int((~flip & ~near).sum()), V * int((flip & ~near).sum()), V * int(near.sum())


@pytest.mark.parametrize("values", [2, 3])
@pytest.mark.parametrize("count_points", [0, 2 ** 42])
def test_swept_audits_stay_below_brute_force_and_every_cell_tallies(count_points, values, monkeypatch):
    """Audits of a 12-million-individual domain stopped at 0.6 s with ~4-8 % undecided: the
    individuals proven fair / unfair stay within brute force, every cell with open individuals
    passes the sweep's tally check (each decision path tallies its cell: bounds, enumeration,
    exact linear counts), and the sweep adds proven individuals."""
    checked, added = [], []
    orig = fairness_bab.TwinBab._sweep_cells

    def spy(self, st, limit=None, apply=True, opened=None):
        C = len(self.cells)
        opened = self._open_per_cell()
        pts = np.asarray(fairness_bab.box_points(self.cells.lo[:C], self.cells.hi[:C], self.free)) * len(self.values)
        checked.append(int(((opened > 0) & (self.cells.fair[:C] + self.cells.unfair[:C] + opened != pts)).sum()))
        before = sum(st.fair) + sum(st.unfair)
        got = orig(self, st, limit, apply, opened)
        if apply:  # the final sweep (the probe credits nothing)
            added.append(sum(st.fair) + sum(st.unfair) - before)
        return got
    monkeypatch.setattr(fairness_bab.TwinBab, "_sweep_cells", spy)
    spec = FairnessSpec(WIDE.feature_names, WIDE.lower, [199, 149, values - 1, 199], ("p",))
    for seed in range(3):
        model = wide_model(seed)
        fair, unfair, near = _true_counts(model, spec)
        cfg = BabConfig(cell_depth=4, sweep_share=0.5, count_points=count_points)
        res = audit_fairness(model, spec, None, timeout=0.6, progress=False, config=cfg, samples=0, report=False)
        ind = res.summary["individuals"]
        assert ind["total"] == fair + unfair + near
        assert ind["fair"] <= fair + near and ind["unfair"] <= unfair + near
    assert checked and all(c == 0 for c in checked)
    assert sum(added) > 0


@pytest.mark.parametrize("sizes", [(4, 12, 1), (4, 12, 8, 1), (4, 10, 10, 6, 1)])
@pytest.mark.parametrize("seed", range(3))
def test_kept_functions_bound_both_copies_at_sampled_points(seed, sizes):
    """``twin_bounds(keep_fns=True)``: the forward pass's functions (one ReLU layer) or backward
    CROWN's (deeper nets) bound y and y' at 2,000 sampled points of each box (within ``err``)."""
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [15, 11, 1, 19], ("p",))
    eng = _engine(biased_mlp(seed, sizes), spec)
    rng = np.random.default_rng(seed)
    lo = np.array([[rng.integers(0, 8), rng.integers(0, 6), 0, rng.integers(0, 10)] for _ in range(8)],
                  dtype=np.float64)
    hi = np.minimum(lo + rng.integers(1, 8, size=(8, 4)), spec.upper)
    hi[:, 2] = 1
    u = eng.initial_units(lo, hi, np.zeros(8, dtype=np.int64))
    zlo, zhi, own, _, _ = eng._twin_boxes(u)
    tb = twin_bounds(eng.net, eng.layout, torch.from_numpy(zlo), torch.from_numpy(zhi), eng.last_abs,
                     crown_pass=False, keep_fns=True)
    fl, fu, err, _ = tb.fns
    net = decision_graph(eng.net, eng.last_abs)
    for m in range(len(zlo)):
        z = rng.integers(zlo[m], zhi[m] + 1, size=(2000, len(zlo[m]))).astype(np.float64)
        x, xp = z[:, :4].copy(), z[:, :4].copy()
        xp[:, 2] = z[:, 4]
        ys = [net.forward(torch.from_numpy(v))[:, 0].numpy() for v in (x, xp)]
        k = m if fl.A.shape[0] > 1 else 0
        for c in range(2):
            low = z @ fl.A[k, :, c].numpy() + fl.b[k, c].item() - err[m, c].item()
            up = z @ fu.A[k, :, c].numpy() + fu.b[k, c].item() + err[m, c].item()
            assert np.all(low <= ys[c] + 1e-9) and np.all(ys[c] <= up + 1e-9)


@pytest.mark.parametrize("semantics", [Semantics.EXACT, Semantics.FLOAT32])
@pytest.mark.parametrize("sizes", [(4, 12, 1), (4, 12, 8, 1)])
@pytest.mark.parametrize("seed", range(4))
def test_copies_box_counts_are_lower_bounds_of_brute_force(seed, sizes, semantics):
    """Three protected values: the points proven to take one decision under every value, and
    proven not to, never exceed brute force; not vacuous over the boxes."""
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [15, 11, 2, 19], ("p",))
    eng = _engine(biased_mlp(seed, sizes), spec, semantics)
    rng = np.random.default_rng(seed)
    got = np.zeros(2)
    for _ in range(10):
        lo = np.array([rng.integers(0, 10), rng.integers(0, 8), 0, rng.integers(0, 14)], dtype=np.float64)
        hi = np.minimum(lo + rng.integers(0, 8, size=4), spec.upper)
        hi[2] = 0  # the free box; the copies set p
        los, his = np.repeat(lo[None], 3, 0), np.repeat(hi[None], 3, 0)
        los[:, 2] = his[:, 2] = [0, 1, 2]
        fl, fu, err, mag, tau = copy_fns(eng.net, torch.from_numpy(los), torch.from_numpy(his), eng.last_abs)
        k = (lambda r: r) if fl.A.shape[0] > 1 else (lambda r: 0)
        same, differ = box_counts([(fl.A[k(r), :, 0].numpy(), float(fl.b[k(r), 0])) for r in range(3)],
                                         [(fu.A[k(r), :, 0].numpy(), float(fu.b[k(r), 0])) for r in range(3)],
                                         los, his, err.numpy()[:, 0], mag.numpy()[:, 0],
                                         semantics.slack(mag.numpy()[:, 0], tau.numpy()))
        grid = np.array(list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(lo, hi)])), dtype=float)
        dec = np.stack([eng.decide_points(np.where(np.arange(4) == 2, v, grid)) for v in range(3)])
        agree = int((dec.all(0) | (~dec).all(0)).sum())
        assert same <= agree and differ <= len(grid) - agree
        got += (same, differ)
    assert got[0] > 0


@pytest.mark.parametrize("proves", [True, False])
def test_the_probe_turns_the_sweep_off_where_it_proves_nothing(proves, monkeypatch):
    """Halfway through the budget the probe counts the largest open cells without crediting them:
    where the counts prove nothing (here forced to 0) the sweep is off for the rest of the run
    (no final sweep); where they do, it stays on and the final sweep credits."""
    import certprune.verifiers.sandwich_count as sc
    if not proves:
        monkeypatch.setattr(sc, "box_counts", lambda *a, **k: (0, 0))
    calls = []
    orig = fairness_bab.TwinBab._sweep_cells

    def spy(self, st, limit=None, apply=True, opened=None):
        before = sum(st.fair) + sum(st.unfair)
        got = orig(self, st, limit, apply, opened)
        calls.append((apply, got, sum(st.fair) + sum(st.unfair) - before))
        return got
    monkeypatch.setattr(fairness_bab.TwinBab, "_sweep_cells", spy)
    model = wide_model(0)
    cfg = BabConfig(cell_depth=4, sweep_share=0.5, sweep_probe=0.3)
    res = audit_fairness(model, WIDE, None, timeout=0.8, progress=False, config=cfg, samples=0, report=False)
    assert res.summary["individuals"]["undecided"] > 0
    probe = [c for c in calls if not c[0]]
    assert len(probe) == 1 and probe[0][2] == 0  # the probe credits nothing
    final = [c for c in calls if c[0]]
    if proves:
        assert probe[0][1] > 0 and len(final) == 1 and final[0][2] > 0
    else:
        assert probe[0][1] == 0 and not final  # off: no final sweep
