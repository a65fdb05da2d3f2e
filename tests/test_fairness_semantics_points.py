"""Issue 10 consistency fixes: one semantics per audit for bounds and enumerated points (exact:
real-arithmetic decisions, rational arithmetic near ties; float32: each input run alone), listed
pairs flip under the audit's semantics and in float32, the ordered reverse view, the runners'
share of the undecided tolerance, and the one box-size count."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from certprune.fairness_spec import FairnessSpec
from certprune.semantics import Semantics
from certprune.verifiers import parallel
from certprune.verifiers.fairness import EngineFactory, audit_fairness
from certprune.verifiers.fairness_bab import BabConfig, ExactLogit, TwinBab
from certprune.verifiers.partition import box_points, grid_partition
from test_fairness_exact import biased_mlp, small_spec
from test_fairness_traps import _net


def _engine(model, spec, semantics="exact") -> TwinBab:
    from certprune.network import as_network
    from certprune.verifiers.bounds import affine_net
    return EngineFactory(affine_net(as_network(model)), model, spec, BabConfig(), Semantics(semantics))()


def _fraction_sign(model: torch.nn.Sequential, x) -> int:
    """Reference: the decision logit in Fraction arithmetic, layer by layer (y, or y1 - y0)."""
    h = [Fraction(int(v)) for v in x]
    lins = [m for m in model if isinstance(m, torch.nn.Linear)]
    for k, lin in enumerate(lins):
        W, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
        h = [sum((Fraction(float(w)) * v for w, v in zip(row, h)), Fraction(float(c))) for row, c in zip(W, b)]
        if k < len(lins) - 1:
            h = [max(v, Fraction(0)) for v in h]
    y = h[0] if len(h) == 1 else h[1] - h[0]
    return (y > 0) - (y < 0)


@pytest.mark.parametrize("sizes", [(4, 8, 8, 1), (4, 6, 2)])
def test_exact_logit_equals_fraction_arithmetic(sizes):
    model = biased_mlp(3, sizes)
    from certprune.network import as_network
    from certprune.verifiers.bounds import affine_net
    ex = ExactLogit(affine_net(as_network(model)))
    X = np.random.default_rng(0).integers(-20, 21, size=(40, 4))
    assert [ex(x) for x in X] == [_fraction_sign(model, x) for x in X]


def test_exact_points_decide_a_tie_that_float32_breaks_in_real_arithmetic():
    """y = c - relu(a x) - p, a = fl32(0.1), c = fl32(0.3): at x = 3, p = 0 the exact logit is
    +7.45e-9 (yes) while float32 gives 0 (no). Inside the 1e-7 margin the exact decision comes from
    rational arithmetic; float32_points keeps float32's."""
    a, c = float(np.float32(0.1)), float(np.float32(0.3))
    model = _net([([[a, 0.0], [0.0, 1.0]], [0.0, 0.0]), ([[-1.0, -1.0]], [c])])
    spec = FairnessSpec(("x", "p"), [3, 0], [10, 1], ("p",))
    X = np.array([[3.0, 0.0], [3.0, 1.0], [4.0, 0.0]])
    eng = _engine(model, spec)
    assert eng.exact_points(X).tolist() == [True, False, False]
    assert eng.float32_points(X).tolist() == [False, False, False]
    assert eng.decide_points(X).tolist() == [True, False, False]
    assert _engine(model, spec, "float32").decide_points(X).tolist() == [False, False, False]


def _float32_only_flip():
    """h = relu(a x1 + b x2), y = h - k - 10 p with k the float32 just below float32's h at
    (46, 38): exact a 46 + b 38 - k = -1.8e-7 (no), float32 h - k = one ulp (yes) at p = 0."""
    a, b = float(np.float32(0.36208072304725647)), float(np.float32(0.9159674048423767))
    with torch.no_grad():
        h = torch.nn.functional.linear(torch.tensor([[46.0, 38.0, 0.0]]), torch.tensor([[a, b, 0.0]]))[0, 0].item()
    k = float(np.nextafter(np.float32(h), np.float32(0)))
    model = _net([([[a, b, 0.0], [0.0, 0.0, 1.0]], [0.0, 0.0]), ([[1.0, -10.0]], [-k])])
    spec = FairnessSpec(("x1", "x2", "p"), [46, 38, 0], [46, 38, 1], ("p",))
    return model, spec, Fraction(a) * 46 + Fraction(b) * 38 - Fraction(k)


def test_float32_only_flip_is_counted_and_listed_by_the_semantics():
    model, spec, exact_logit = _float32_only_flip()
    with torch.no_grad():
        y32 = [model(torch.tensor([[46.0, 38.0, p]]))[0, 0].item() for p in (0.0, 1.0)]
    assert exact_logit < 0 and y32[0] > 0 > y32[1]  # the trap: float32 flips, real arithmetic does not
    ex = audit_fairness(model, spec, timeout=30, progress=False, samples=0)
    assert ex.summary["individuals"] == {"total": 2, "fair": 2, "unfair": 0, "undecided": 0}
    assert ex.summary["counts"]["certified"] == 1 and len(ex.counterexamples) == 0
    f32 = audit_fairness(model, spec, timeout=30, progress=False, samples=0, semantics="float32")
    assert f32.summary["individuals"] == {"total": 2, "fair": 0, "unfair": 2, "undecided": 0}
    assert f32.summary["counts"]["falsified"] == 1 and len(f32.counterexamples) >= 1
    assert "float32" in f32.summary["decisions"] and f32.summary["decisions"] != ex.summary["decisions"]


def test_check_points_lists_only_pairs_that_flip_under_the_semantics():
    model, spec, _ = _float32_only_flip()
    from certprune.verifiers.fairness_bab import _State
    z = np.array([[46.0, 38.0, 0.0, 1.0]])  # x = (46, 38, 0), x' = (46, 38, 1)
    for sem, listed in (("exact", 0), ("float32", 1)):
        eng = _engine(model, spec, sem)
        lo, hi = spec.lower[None].astype(float), spec.upper[None].astype(float)
        st = _State(lo, hi, np.array([0]), [2], [0], [0], np.zeros(1, np.int64), np.zeros(1, bool),
                    np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.int64), [[]])
        eng._check_points(z, np.array([0]), st)
        assert len(st.pairs[0]) == listed, sem


def test_ordered_reverse_view_proves_unfair_but_not_fair():
    """Two values, ordered boxes (0 -> 1) open and (1 -> 0) closed: value 1 is fair (its own box
    is closed; the box of value 0 says nothing about value 1's partners). A box fixing y = yes and
    y' = no proves value 0 and, by the reverse view, value 1 unfair in both modes."""
    own, vi, vj = np.array([0, 0]), np.array([0, 1]), np.array([1, 0])
    closed = np.array([False, True])
    zero = np.zeros(2, np.int64)
    fair, unfair, _ = TwinBab._decide_values(1, 2, own, vi, vj, closed, zero, zero, unordered=False)
    assert fair.tolist() == [[False, True]] and not unfair.any()
    fair, _, _ = TwinBab._decide_values(1, 2, own[:1], vi[:1], vj[:1], closed[:1], zero[:1], zero[:1], unordered=True)
    assert fair.tolist() == [[False, False]]  # unordered: one box serves both values
    sy, sp = np.array([1, 0]), np.array([-1, 0])
    for unordered in (False, True):
        _, unfair, proof = TwinBab._decide_values(1, 2, own, vi, vj, np.array([False, False]), sy, sp, unordered)
        assert unfair.tolist() == [[True, True]] and proof.tolist() == [[0, 0]]


@pytest.mark.parametrize("seed", [0, 1])
def test_ordered_counts_equal_brute_force_with_bounds_only(seed):
    """The ordered reverse-view change keeps exact counts (relaxed attribute, bounds and single
    points only, no enumeration)."""
    from test_fairness_individuals import BOUNDS_ONLY, _check
    model = biased_mlp(seed)
    spec = small_spec(relaxed={"a": 1})
    res = audit_fairness(model, spec, timeout=120, progress=False, config=BOUNDS_ONLY, samples=0)
    _check(res, model, spec)


class _Recorder:
    """Engine factory stand-in: records the tolerance each shard was given."""

    seen: list = []

    def __call__(self):
        return self

    def run(self, pids, lo, hi, deadline, on_done, tolerance_points=0.0):
        _Recorder.seen.append((len(pids), tolerance_points))


def test_runners_split_the_job_tolerance_across_their_shards():
    part = grid_partition(np.zeros(2), np.array([9.0, 9.0]), 5)
    job = parallel.Job(_Recorder(), part, float("inf"), tolerance_points=12.0)
    _Recorder.seen = []
    parallel.run_serial(job, np.arange(4), lambda outs: None)
    assert _Recorder.seen == [(4, 12.0)]
    _Recorder.seen = []
    parallel._run_shard(job, np.arange(2), lambda outs: None, shards=3)
    assert _Recorder.seen == [(2, 4.0)]


def test_box_points_is_exact_beyond_int64():
    lo = np.zeros((2, 5))
    hi = np.array([[2.0 ** 20 - 1] * 5, [0, 1, 2, 3, 4]])
    n = box_points(lo, hi)
    assert n == [2 ** 100, 120] and all(type(v) is int for v in n)
    assert box_points(lo, hi, [1, 3]) == [2 ** 40, 8]
    part = grid_partition(np.zeros(3), np.array([9.0, 4.0, 1.0]), 4, whole=[2])
    assert part.points(range(part.count)) == box_points(*part.bounds(range(part.count)))
    assert sum(part.points(range(part.count))) == 10 * 5 * 2


def test_serial_audit_records_coverage_over_time():
    """summary.json's ``progress``: seconds rise, shares never fall and end at the summary's."""
    model = biased_mlp(1)
    spec = small_spec()
    res = audit_fairness(model, spec, timeout=60, progress=False, samples=0)
    pr, sh = res.summary["progress"], res.summary["individual_share"]
    assert pr["seconds"][0] == 0.0 and pr["fair_share"][0] == 0.0 and len(pr["seconds"]) >= 2
    assert all(a <= b for a, b in zip(pr["seconds"], pr["seconds"][1:]))
    assert all(a <= b for a, b in zip(pr["fair_share"], pr["fair_share"][1:]))
    assert pr["fair_share"][-1] == sh["fair"] and pr["unfair_share"][-1] == sh["unfair"]
    from certprune.verifiers.fairness import Progress
    p = Progress(cap=8)
    for k in range(1, 40):
        p(k, 0)
    assert len(p.rows) <= 9 and p.rows[0][1] == 0 and p.rows[-1][1] == 39
