"""Specs and results: validation, violation semantics, robustness compilation."""
import numpy as np
import pytest

from certprune.errors import InputRegionError, ShapeMismatchError, SpecError
from certprune.results import Result, Verdict
from certprune.specs import InputRegion, LinearConstraints, Property, RobustnessSpec


def test_region_rejects_infeasible_nan_and_shape():
    with pytest.raises(InputRegionError, match="lower > upper"):
        InputRegion(np.array([0.0, 1.0]), np.array([1.0, 0.5]))
    with pytest.raises(InputRegionError, match="NaN"):
        InputRegion(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(InputRegionError, match="shape"):
        InputRegion(np.zeros(2), np.zeros(3))
    with pytest.raises(InputRegionError, match="no integer point"):
        InputRegion(np.array([0.2]), np.array([0.8]), integer_mask=np.array([True]))


def test_region_is_immutable_and_clips_integers():
    r = InputRegion(np.array([0.0, -1.0]), np.array([3.0, 1.0]), integer_mask=np.array([True, False]))
    with pytest.raises(ValueError):
        r.lower[0] = 5
    x = r.clip(np.array([[2.6, 4.0], [-1.0, 0.25]]))
    assert np.array_equal(x, [[3.0, 1.0], [0.0, 0.25]])
    assert list(r.contains(np.array([[1.0, 0.0], [1.5, 0.0], [4.0, 0.0]]))) == [True, False, False]


def test_property_margin_is_or_of_ands():
    # violation: (y0 <= 0 and y1 <= 0) or (y2 >= 1)
    d1 = LinearConstraints(np.array([[1.0, 0, 0], [0, 1.0, 0]]), np.zeros(2))
    d2 = LinearConstraints(np.array([[0, 0, -1.0]]), np.array([-1.0]))
    p = Property(InputRegion(np.zeros(1), np.ones(1)), (d1, d2))
    y = np.array([[-1.0, -2.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 2.0], [1.0, 1.0, 0.5]])
    assert list(p.is_violated(y)) == [True, False, True, False]
    assert np.allclose(p.violation_margin(y), [-1.0, 1.0, -1.0, 0.5])
    with pytest.raises(ShapeMismatchError):
        p.check_outputs(5)


def test_property_rejects_mismatched_disjuncts():
    with pytest.raises(SpecError):
        Property(InputRegion(np.zeros(1), np.ones(1)), (LinearConstraints(np.ones((1, 2)), np.zeros(1)),
                                                         LinearConstraints(np.ones((1, 3)), np.zeros(1))))
    with pytest.raises(SpecError):
        LinearConstraints(np.ones((2, 2)), np.zeros(3))


def test_robustness_spec_compiles_to_pairwise_margins():
    spec = RobustnessSpec(np.array([0.05, 0.5]), 0.1, label=1)
    p = spec.to_property(3)
    assert np.allclose(p.region.lower, [0.0, 0.4]) and np.allclose(p.region.upper, [0.15, 0.6])
    assert len(p.disjuncts) == 2
    assert list(p.is_violated(np.array([[0.0, 1.0, 0.5], [0.0, 1.0, 1.0]]))) == [False, True]
    with pytest.raises(SpecError):
        spec.to_property(1)
    with pytest.raises(SpecError):
        RobustnessSpec(np.zeros(2), -0.1, 0)


def test_verdict_words_and_result_invariants():
    assert Verdict.CERTIFIED.vnncomp_word() == "unsat"
    assert Verdict.FALSIFIED.vnncomp_word() == "sat"
    assert Verdict.UNKNOWN.vnncomp_word(timed_out=True) == "timeout"
    assert Verdict.UNKNOWN.vnncomp_word() == "unknown"
    with pytest.raises(ValueError):
        Result(Verdict.FALSIFIED)
    with pytest.raises(ValueError):
        Result(Verdict.CERTIFIED, counterexample=np.zeros(2))
    assert Result(Verdict.CERTIFIED).decided and not Result(Verdict.UNKNOWN).decided
