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

COUNTING = BabConfig(enum_points=0, count_points=2 ** 32)  # no enumeration: linear units are counted


@pytest.mark.parametrize("seed", range(6))
def test_count_between_equals_enumeration(seed):
    rng = np.random.default_rng(seed)
    widths = rng.integers(1, 7, size=5)
    a, base = rng.normal(size=5), float(rng.normal())
    s = base + np.array([a @ np.array(k) for k in itertools.product(*[range(w) for w in widths])])
    t0, t1 = sorted(rng.normal(size=2))
    n, band = count_between(a, base, widths, t0, t1, 1e-12)
    assert n == int(((s > t0) & (s <= t1)).sum()) and not band
    _, band = count_between(a, base, widths, float(s[3]), t1, 1e-12)  # a point on a threshold
    assert band


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
    enumeration off: individual counts equal brute force; the counting path is taken."""
    calls = []
    orig = fairness_bab.TwinBab._count_linear

    def spy(self, u, *a):
        before = u.open.sum()
        orig(self, u, *a)
        calls.append(int(before - u.open.sum()))
    monkeypatch.setattr(fairness_bab.TwinBab, "_count_linear", spy)
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [11, 7, 1, 13], ("p",))
    for model, linear in ((_linear_model(seed), True), (biased_mlp(seed), False)):
        calls.clear()
        res = audit_fairness(model, spec, None, timeout=60, progress=False, config=COUNTING,
                             semantics=semantics, samples=0)
        _check(res, model, spec)
        assert sum(calls) > 0 or not linear
    assert res.summary["semantics"] == semantics


def test_counting_is_off_with_relaxed_attributes_and_still_exact():
    model, spec = biased_mlp(1), small_spec(relaxed={"a": 1})
    res = audit_fairness(model, spec, None, timeout=60, progress=False, config=COUNTING, samples=0)
    _check(res, model, spec)
