"""VNN-LIB reading/writing: the ACAS Xu properties, linear terms, round trips and clear errors."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from certprune.errors import ShapeMismatchError, VNNLibError
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.vnnlib import format_vnnlib, property_for_model, read_vnnlib, region_for_model, write_vnnlib

HEADER = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + \
    "".join(f"(declare-const Y_{j} Real)\n" for j in range(3))
BOX = "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 0.5))\n"


@pytest.fixture
def acas_props(shared_data):
    d = shared_data / "vnncomp" / "acasxu" / "vnnlib"
    return {int(p.stem.split("_")[1]): p for p in d.glob("prop_*.vnnlib")}


def test_all_ten_acas_properties_parse(acas_props):
    assert sorted(acas_props) == list(range(1, 11))
    shapes = {}
    for k, path in acas_props.items():
        props = read_vnnlib(path, num_inputs=5, num_outputs=5)
        shapes[k] = [len(p.disjuncts) for p in props]
        for p in props:
            assert p.region.shape == (5,) and p.num_outputs == 5
            assert np.all(p.region.lower <= p.region.upper)
    # prop 6 has a disjunctive input box; 2-4 conjunctions of 4 rows; 5, 9, 10 disjunctions
    assert shapes == {1: [1], 2: [1], 3: [1], 4: [1], 5: [4], 6: [4, 4], 7: [2], 8: [3], 9: [4], 10: [4]}


def test_acas_property_values(acas_props):
    (p1,) = read_vnnlib(acas_props[1])
    np.testing.assert_array_equal(p1.region.lower, [0.6, -0.5, -0.5, 0.45, -0.5])
    np.testing.assert_array_equal(p1.region.upper, [0.679857769, 0.5, 0.5, 0.5, -0.45])
    (d,) = p1.disjuncts  # Y_0 >= 3.991125645861615  ->  -Y_0 <= -3.99...
    np.testing.assert_array_equal(d.A, [[-1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(d.b, [-3.991125645861615])
    (p2,) = read_vnnlib(acas_props[2])  # violation: Y_0 is the largest score
    assert p2.is_violated(np.array([[5.0, 1, 2, 3, 4]]))[0]
    assert not p2.is_violated(np.array([[3.0, 1, 2, 4, 0]]))[0]
    a, b = read_vnnlib(acas_props[6])
    assert a.region.lower[1] > 0 > b.region.upper[1]  # the two input boxes of property 6


def test_linear_terms_constants_on_either_side_and_chains():
    text = HEADER + BOX + """
    (assert (or (and (<= (+ (* 2 Y_0) (- Y_1) 1.5) Y_2))
                (and (>= 3 (- Y_0 (* Y_1 0.5))) (= Y_2 (/ Y_1 4)))
                (and (<= -1 Y_0 Y_1))))"""
    (p,) = read_vnnlib(text)
    d1, d2, d3 = p.disjuncts
    np.testing.assert_allclose(d1.A, [[2, -1, -1]]), np.testing.assert_allclose(d1.b, [-1.5])
    np.testing.assert_allclose(d2.A, [[1, -0.5, 0], [0, -0.25, 1], [0, 0.25, -1]])
    np.testing.assert_allclose(d2.b, [3, 0, 0])
    np.testing.assert_allclose(d3.A, [[-1, 0, 0], [1, -1, 0]]), np.testing.assert_allclose(d3.b, [1, 0])


def test_input_disjunction_inside_and_strict_comparisons():
    text = HEADER + """(assert (or (and (> X_0 0) (< X_0 1) (>= X_1 0) (<= X_1 1))
                                   (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (<= X_0 1))))
                       (assert (<= Y_0 Y_1))"""
    (p,) = read_vnnlib(text)  # the second box is empty (X_0 in [2, 1]) and dropped
    np.testing.assert_array_equal(p.region.lower, [0, 0])
    np.testing.assert_array_equal(p.region.upper, [1, 1])


@pytest.mark.parametrize("suffix", [".vnnlib", ".vnnlib.gz"])
def test_round_trip_acas(acas_props, tmp_path, suffix):
    for k, path in acas_props.items():
        for p in read_vnnlib(path):
            out = write_vnnlib(p, tmp_path / f"p{k}{suffix}")
            (q,) = read_vnnlib(out)
            _assert_same(p, q)


def test_round_trip_general_rows(tmp_path):
    rng = np.random.default_rng(0)
    lo = rng.normal(size=7)
    region = InputRegion(lo, lo + rng.uniform(0, 1, size=7))
    ds = (LinearConstraints(rng.normal(size=(3, 4)), rng.normal(size=3)),
          LinearConstraints(np.array([[0.0, 0, 1, -1]]), np.zeros(1)))
    p = Property(region, ds, name="random")
    (q,) = read_vnnlib(format_vnnlib(p))
    _assert_same(p, q)


def test_several_input_boxes_round_trip(acas_props, tmp_path):
    props = read_vnnlib(acas_props[6])
    back = read_vnnlib(write_vnnlib(props, tmp_path / "p6.vnnlib"))
    assert len(back) == 2
    for p, q in zip(props, back):
        _assert_same(p, q)


def test_gz_file_is_read(tmp_path):
    path = tmp_path / "p.vnnlib.gz"
    path.write_bytes(gzip.compress((HEADER + BOX + "(assert (<= Y_0 Y_2))").encode()))
    (p,) = read_vnnlib(path)
    np.testing.assert_array_equal(p.disjuncts[0].A, [[1, 0, -1]])


def _assert_same(p: Property, q: Property) -> None:
    np.testing.assert_array_equal(p.region.lower, q.region.lower)
    np.testing.assert_array_equal(p.region.upper, q.region.upper)
    assert len(p.disjuncts) == len(q.disjuncts)
    for a, b in zip(p.disjuncts, q.disjuncts):
        np.testing.assert_array_equal(a.A, b.A)
        np.testing.assert_array_equal(a.b, b.b)


@pytest.mark.parametrize("body, match", [
    ("(assert (<= Y_7 0))", r"line 10: undeclared variable 'Y_7'"),
    ("(assert (not (<= Y_0 0)))", r"line 10: unsupported construct 'not'"),
    ("(assert (<= (* Y_0 Y_1) 0))", r"line 10: nonlinear product"),
    ("(assert (<= (+ X_0 Y_0) 0))", "mixing inputs and outputs"),
    ("(assert (<= (+ X_0 X_1) 0))", "one variable each"),
    ("(assert (<= Y_0 0)", r"line 10: '\(' is never closed"),
    ("(assert (<= Y_0 0)))", r"line 10: unmatched '\)'"),
    ("(push 1)", r"line 10: unsupported command 'push'"),
    ("(declare-const Z Real)", r"line 10: variable 'Z' is neither"),
])
def test_errors_name_line_and_construct(body, match):
    with pytest.raises(VNNLibError, match=match):
        read_vnnlib(HEADER + BOX + body)


def test_missing_bound_and_bad_sizes(tmp_path):
    with pytest.raises(VNNLibError, match="X_1 lack a lower or an upper bound"):
        read_vnnlib(HEADER + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= Y_0 0))")
    with pytest.raises(ShapeMismatchError, match="output Y_2 but the model has 2 outputs"):
        read_vnnlib(HEADER + BOX + "(assert (<= Y_0 0))", num_outputs=2)
    with pytest.raises(VNNLibError, match="X_2 lack"):  # the model has a third input nobody bounds
        read_vnnlib(HEADER + BOX + "(assert (<= Y_0 0))", num_inputs=3)
    with pytest.raises(VNNLibError, match="not found"):
        read_vnnlib(tmp_path / "nope.vnnlib")


def test_region_for_model_reshapes_row_major():
    text = "".join(f"(declare-const X_{i} Real)(assert (>= X_{i} {i}))(assert (<= X_{i} {i + 0.5}))"
                   for i in range(6)) + "(declare-const Y_0 Real)(assert (<= Y_0 0))"
    (p,) = read_vnnlib(text)
    r = region_for_model(p, (1, 2, 3))
    np.testing.assert_array_equal(r.lower, np.arange(6).reshape(1, 2, 3))
    assert property_for_model(p, (2, 3), num_outputs=1).region.shape == (2, 3)
    with pytest.raises(ShapeMismatchError, match="6 inputs"):
        region_for_model(p, (5,))
    with pytest.raises(ShapeMismatchError):
        property_for_model(p, (6,), num_outputs=3)


def test_mutated_files_raise_only_certprune_errors(acas_props):
    """Random token edits of a real file either parse or raise a certprune error (no crash)."""
    import re

    from certprune.errors import CertpruneError
    toks = re.findall(r"\(|\)|[^\s()]+|\s+", acas_props[6].read_text())
    rng = np.random.default_rng(0)
    outcomes = {"parsed": 0, "error": 0}
    for _ in range(300):
        t = list(toks)
        for _ in range(rng.integers(1, 4)):
            i = int(rng.integers(len(t)))
            kind = rng.integers(3)
            if kind == 0:
                del t[i]
            elif kind == 1:
                t.insert(i, t[int(rng.integers(len(t)))])
            else:
                t[i] = str(rng.choice(["(", ")", "X_9", "Y_0", "1e999", "nan", "-", "and", "or", "=", "*"]))
        try:
            read_vnnlib("".join(t))
            outcomes["parsed"] += 1
        except CertpruneError:
            outcomes["error"] += 1
    assert outcomes["error"] > 50 and outcomes["parsed"] > 0
