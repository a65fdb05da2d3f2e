"""Issue 8, item 8 (library side): numbers and names in VNN-LIB, and float overflow.

- ``1e400`` is a number beyond float64, not an "undeclared variable";
- ``X_５`` (fullwidth digit) is not ``X_5``; ``inf`` / ``nan`` / ``1_0`` are not numerals;
- overflowing coefficients are one clear error, and float overflow on huge boxes neither prints
  RuntimeWarnings nor yields a wrong verdict (a ±1e308 box used to be CERTIFIED).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from certprune.cli import main
from certprune.errors import InputRegionError, VNNLibError
from certprune.network import as_network
from certprune.results import Verdict
from certprune.specs import InputRegion
from certprune.verifiers.verify import verify
from certprune.vnnlib import read_vnnlib

from conftest import random_mlp

DECL = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"
BOX = "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))\n"


def parse(extra: str, decl: str = DECL, box: str = BOX):
    return read_vnnlib(decl + box + extra)


def test_number_beyond_float64_is_named_as_such():
    with pytest.raises(VNNLibError, match=r"line 3: number 1e400 is outside the float64 range"):
        parse("(assert (<= Y_0 1e400))")
    with pytest.raises(VNNLibError, match=r"number -1E\+400"):
        parse("(assert (<= Y_0 -1E+400))")


def test_scientific_and_decimal_numerals_still_parse():
    (p,) = parse("(assert (<= (* 2.5e-1 Y_0) -.5))(assert (>= Y_1 +3.))")
    d = p.disjuncts[0]
    np.testing.assert_array_equal(d.A, [[0.25, 0.0], [0.0, -1.0]])
    np.testing.assert_array_equal(d.b, [-0.5, -3.0])


@pytest.mark.parametrize("word", ["inf", "nan", "1_0", "\uff11", "Infinity"])
def test_non_numerals_are_not_numbers(word):
    with pytest.raises(VNNLibError, match="undeclared variable"):
        parse(f"(assert (<= Y_0 {word}))")


def test_fullwidth_digits_are_not_ascii_indices():
    with pytest.raises(VNNLibError, match="undeclared variable 'X_\uff15'"):
        parse("(assert (<= Y_0 X_\uff15))")
    with pytest.raises(VNNLibError, match="neither an input"):
        parse("", decl=DECL + "(declare-const X_\uff12 Real)")
    with pytest.raises(VNNLibError, match="neither an input"):
        parse("", decl=DECL + "(declare-const Y_\u0661 Real)")  # Arabic-Indic one


@pytest.mark.parametrize("term", ["(* 1e300 1e300 Y_0)", "(/ Y_0 1e-320)", "(+ (* 1e308 Y_0) (* 1e308 Y_0))"])
def test_overflowing_coefficients_are_one_clear_error_without_warnings(term):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(VNNLibError, match="overflows the float64 range"):
            parse(f"(assert (<= {term} 1))")


def test_box_beyond_float32_range_is_refused():
    with pytest.raises(InputRegionError, match="float32 range"):
        InputRegion(np.array([-1e308]), np.array([1e308]))
    InputRegion(np.array([-3.0e38]), np.array([3.0e38]))  # still representable: accepted


def test_huge_box_gives_no_warnings_and_no_false_certificate(tmp_path, capsys):
    """On a ±1e308 box the LP leaf used to certify from infinite bounds; now the box is refused
    (exit 2). A ±1e38 box (float32 outputs overflow) runs without RuntimeWarnings and is not
    CERTIFIED: Y_0 <= Y_1 or its opposite holds somewhere in any box."""
    from certprune.io.onnx_export import save_onnx
    model = save_onnx(random_mlp([2, 8, 2], seed=3), tmp_path / "m.onnx", (2,))
    huge = tmp_path / "huge.vnnlib"
    huge.write_text(DECL + "(assert (>= X_0 -1e308))(assert (<= X_0 1e308))(assert (>= X_1 -1e308))"
                    "(assert (<= X_1 1e308))(assert (<= Y_0 Y_1))")
    assert main(["verify", str(model), str(huge), "--timeout", "2"]) == 2
    err = capsys.readouterr().err
    assert "float32 range" in err and "Warning" not in err
    net = as_network(random_mlp([2, 8, 2], seed=3), (2,))
    for rows in ("(<= Y_0 Y_1)", "(>= Y_0 Y_1)"):
        (p,) = read_vnnlib(DECL + "(assert (>= X_0 -1e38))(assert (<= X_0 1e38))(assert (>= X_1 -1e38))"
                           f"(assert (<= X_1 1e38))(assert {rows})")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            res = verify(net, p, timeout=1.0)
        assert res.verdict is not Verdict.CERTIFIED
        if res.verdict is Verdict.FALSIFIED:
            assert np.all(np.isfinite(res.counterexample_output))
            assert p.is_violated(net.run_float32(res.counterexample)).all()


def test_non_finite_output_is_never_a_violation():
    (p,) = parse("(assert (<= Y_0 Y_1))")
    y = np.array([[-np.inf, 1.0], [np.nan, 1.0], [0.0, 1.0]])
    assert p.is_violated(y).tolist() == [False, False, True]
    assert p.violation_margin(y)[1] == np.inf  # NaN reported as +inf for the search
