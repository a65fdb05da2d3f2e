"""Exact counting on linear boxes (``linear_count`` and ``TwinBab._count_linear``): the
meet-in-the-middle count equals enumeration, its error band is reported, and audits that count
linear units give the brute-force individual counts under both semantics."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from certprune.fairness_spec import FairnessSpec
from certprune.verifiers import fairness_bab
from certprune.verifiers.fairness import audit_fairness
from certprune.verifiers.fairness_bab import BabConfig
from certprune.verifiers.linear_count import collapse, count_between
from test_fairness_exact import biased_mlp, small_spec
from test_fairness_individuals import _check

COUNTING = BabConfig(enum_points=0, count_points=2 ** 32, count_after=0.0)
BAND = BabConfig(enum_points=0, count_points=2 ** 32, count_band=10 ** 6, count_after=0.0)  # every band resolved point by point


@pytest.mark.parametrize("seed", range(6))
def test_count_between_equals_enumeration(seed):
    rng = np.random.default_rng(seed)
    widths = rng.integers(1, 7, size=5)
    a, base = rng.normal(size=5), float(rng.normal())
    s = base + np.array([a @ np.array(k) for k in itertools.product(*[range(w) for w in widths])])
    t0, t1 = sorted(rng.normal(size=2))
    cnt = count_between(a, base, widths, t0, t1, 1e-12, 100)
    assert cnt.inside == int(((s > t0) & (s <= t1)).sum()) and len(cnt.band) == 0
    cnt = count_between(a, base, widths, float(s[3]), t1, 1e-9, 100)  # a point on a threshold
    assert len(cnt.band) >= 1 and cnt.inside == int(((s > s[3]) & (s <= t1)).sum())
    grid = np.array(list(itertools.product(*[range(w) for w in widths])))
    near = grid[(np.abs(s - s[3]) <= 1e-9) | (np.abs(s - t1) <= 1e-9)]
    assert {tuple(r) for r in cnt.band} == {tuple(r) for r in near}  # the band, listed exactly
    assert count_between(a, base, widths, t0, t1, 10.0, 5) is None  # too wide a band


def test_collapse_is_the_network_on_its_activation_pattern():
    model = biased_mlp(4)
    W = [m.weight.detach().double().numpy() for m in model if isinstance(m, torch.nn.Linear)]
    B = [m.bias.detach().double().numpy() for m in model if isinstance(m, torch.nn.Linear)]
    x = np.array([3.0, 1.0, 0.0, 4.0])
    h, act = x, []
    for w, b in zip(W[:-1], B[:-1]):
        pre = w @ h + b
        act.append(pre > 0)
        h = np.maximum(pre, 0)
    a, c, aa, ca = collapse(W, B, act)
    assert a @ x + c == pytest.approx(float((W[-1] @ h + B[-1])[0]), abs=1e-12)
    assert np.all(aa >= np.abs(a) - 1e-12) and ca >= abs(c) - 1e-12


def _linear_model(seed: int):
    """A biased MLP whose ReLUs are all active on the small domain (large positive biases): the
    network is affine there, so the whole domain is one linear unit."""
    model = biased_mlp(seed)
    with torch.no_grad():
        for m in list(model)[:-1]:
            if isinstance(m, torch.nn.Linear):
                m.weight.abs_()
                m.bias.fill_(3.0)
        model[-1].bias.zero_()
        centre = torch.tensor([[5.5, 3.5, 0.5, 6.5]])
        model[-1].bias.fill_(-float(model(centre)))  # the decision boundary through the centre
    return model


@pytest.mark.parametrize("semantics", ["exact", "float32"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_counted_audits_equal_brute_force(seed, semantics, monkeypatch):
    """Linear models (counted at the root) and mixed random ones (counted where linear), with
    enumeration off, with the default band and with every band resolved point by point:
    individual counts equal brute force; the counting path is taken on the linear models."""
    counted = []
    orig = fairness_bab.TwinBab._count_job

    def spy(self, job, st):
        back = orig(self, job, st)
        counted.append(back is None)
        return back
    monkeypatch.setattr(fairness_bab.TwinBab, "_count_job", spy)
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [11, 7, 1, 13], ("p",))
    for cfg in (COUNTING, BAND):
        for model, linear in ((_linear_model(seed), True), (biased_mlp(seed), False)):
            counted.clear()
            res = audit_fairness(model, spec, None, timeout=60, progress=False, config=cfg,
                                 semantics=semantics, samples=0)
            _check(res, model, spec)
            assert any(counted) or not linear
    assert res.summary["semantics"] == semantics


def test_band_points_are_decided_one_by_one(monkeypatch):
    """A linear model with a tie on the decision boundary at integer points (integer weights):
    the band holds points, each is decided exactly, and the counts equal brute force."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0, 2.0, 0.0], [0.0, 1.0, 0.0, 1.0]]))
        model[0].bias.fill_(1.0)
        model[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
        model[2].bias.fill_(0.0)  # s = a + 2 p - c: zero at many integer points
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [11, 7, 1, 13], ("p",))
    bands = []
    orig = fairness_bab.TwinBab.decide_points

    def spy(self, X):
        bands.append(len(X))
        return orig(self, X)
    monkeypatch.setattr(fairness_bab.TwinBab, "decide_points", spy)
    for sem in ("exact", "float32"):
        bands.clear()
        res = audit_fairness(model, spec, None, timeout=60, progress=False, config=BAND, semantics=sem, samples=0)
        _check(res, model, spec)
        assert sum(bands) > 0


def test_counting_is_off_with_relaxed_attributes_and_still_exact():
    model, spec = biased_mlp(1), small_spec(relaxed={"a": 1})
    res = audit_fairness(model, spec, None, timeout=60, progress=False, config=COUNTING, samples=0)
    _check(res, model, spec)
