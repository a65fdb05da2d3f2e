"""Issue 8, item 1: strict comparisons (``<``, ``>``) in VNN-LIB / Property.

Search and bounds read strict rows non-strictly (the closure), but a FALSIFIED result / ``sat``
must satisfy every strict row strictly on the float32 model. The four reproductions of the issue
are nets whose output sits exactly on the boundary of the strict row: the old code answered
``sat`` there with a point of margin 0.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from certprune.cli import main
from certprune.network import as_network
from certprune.results import Verdict
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.verifiers.verify import verify
from certprune.vnncomp import parse_result
from certprune.vnnlib import format_vnnlib, read_vnnlib

FAST = {"attack_samples": 256, "attack_corners": 16, "attack_restarts": 4, "attack_steps": 10}
HEADER2 = "".join(f"(declare-const X_{i} Real)" for i in range(2))
BOX2 = "(assert (>= X_0 -1)) (assert (<= X_0 1)) (assert (>= X_1 -1)) (assert (<= X_1 1))"


def relu_last_net() -> nn.Sequential:
    """Y = relu(W relu(V x + c) + d), 3 outputs; Y_0 = 0 on part of the box, > 0 elsewhere."""
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU())
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        m[0].bias.zero_()
        m[2].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]))
        m[2].bias.copy_(torch.tensor([-0.5, 0.0, 0.0]))
    return m.eval()


def constant_net() -> nn.Sequential:
    """Outputs (1, 1, 0) whatever the input."""
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3))
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.zero_()
        m[0].bias.zero_()
        m[2].bias.copy_(torch.tensor([1.0, 1.0, 0.0]))
    return m.eval()


def vnnlib_text(assertion: str, n_out: int = 3) -> str:
    outs = "".join(f"(declare-const Y_{j} Real)" for j in range(n_out))
    return f"{HEADER2}{outs}\n{BOX2}\n(assert {assertion})\n"


# the four reproductions: the strict violation is impossible, its closure is not
BOUNDARY = [
    (relu_last_net, "(< Y_0 0)"),        # Y_0 = relu(...) >= 0, = 0 on part of the box
    (constant_net, "(> Y_0 1)"),         # Y_0 == 1
    (constant_net, "(< Y_0 Y_1)"),       # Y_0 == Y_1
    (relu_last_net, "(> Y_2 0)"),        # Y_2 = relu(-relu(x0 + x1)) == 0
]


def test_parser_marks_strict_rows_and_roundtrips():
    text = vnnlib_text("(or (and (< Y_0 Y_1) (<= Y_2 3)) (> Y_2 0.5) (= Y_0 1))")
    (prop,) = read_vnnlib(text)
    strict = [tuple(bool(s) for s in d.strict) for d in prop.disjuncts]
    assert strict == [(True, False), (True,), (False, False)]
    again = read_vnnlib(format_vnnlib(prop))[0]
    assert [tuple(d.strict) for d in again.disjuncts] == [tuple(d.strict) for d in prop.disjuncts]
    for d, e in zip(prop.disjuncts, again.disjuncts):
        np.testing.assert_array_equal(d.A, e.A)
        np.testing.assert_array_equal(d.b, e.b)


def test_is_violated_is_exact_on_strict_rows():
    prop = read_vnnlib(vnnlib_text("(< Y_0 Y_1)"))[0]
    y = np.array([[1.0, 1.0, 0.0], [0.5, 1.0, 0.0], [1.0, 0.5, 0.0]])
    assert prop.is_violated(y).tolist() == [False, True, False]
    assert prop.violation_margin(y).tolist() == [0.0, -0.5, 0.5]  # the closure, for search
    closed = read_vnnlib(vnnlib_text("(<= Y_0 Y_1)"))[0]
    assert closed.is_violated(y).tolist() == [True, True, False]


def test_strict_mask_must_match_rows():
    from certprune.errors import SpecError
    with pytest.raises(SpecError, match="strict mask"):
        LinearConstraints(np.eye(2), np.zeros(2), np.array([True]))


@pytest.mark.parametrize("make, assertion", BOUNDARY)
def test_boundary_point_is_not_a_counterexample(make, assertion):
    net = as_network(make(), (2,))
    (prop,) = read_vnnlib(vnnlib_text(assertion))
    res = verify(net, prop, timeout=1.0, config=FAST)
    assert res.verdict is not Verdict.FALSIFIED, res
    # the non-strict version of the same query is falsified on the boundary (so the strict
    # answer above is not just a weak search)
    closed = read_vnnlib(vnnlib_text(assertion.replace("(< ", "(<= ").replace("(> ", "(>= ")))[0]
    res2 = verify(net, closed, timeout=5.0, config=FAST)
    assert res2.verdict is Verdict.FALSIFIED
    assert closed.violation_margin(res2.counterexample_output[None])[0] == 0.0


def test_strict_violation_that_exists_is_found_and_holds_strictly():
    """Y_0 = relu(x0 - 0.5) > 0 for x0 > 0.5: sat, and the float32 output is strictly positive."""
    net = as_network(relu_last_net(), (2,))
    (prop,) = read_vnnlib(vnnlib_text("(> Y_0 0)"))
    res = verify(net, prop, timeout=10.0, config=FAST)
    assert res.verdict is Verdict.FALSIFIED
    y = net.run_float32(res.counterexample)[0]
    assert y[0] > 0 and res.counterexample_output[0] > 0


def test_open_input_bound_excludes_the_boundary():
    """Y_0 = x0 on x0 in (0, 1]: ``Y_0 <= 0`` needs x0 = 0, which the strict bound excludes."""
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    net = as_network(nn.Sequential(lin).eval(), (1,))
    text = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (> X_0 0))(assert (<= X_0 1))(assert (<= Y_0 0))"
    (prop,) = read_vnnlib(text)
    assert prop.region.open_lower.tolist() == [True] and prop.region.open_upper is None
    assert prop.region.contains(np.array([[0.0], [1e-30], [1.0]])).tolist() == [False, True, True]
    assert read_vnnlib(format_vnnlib(prop))[0].region.open_lower.tolist() == [True]
    assert verify(net, prop, timeout=1.0, config=FAST).verdict is not Verdict.FALSIFIED
    closed = read_vnnlib(text.replace("(> X_0 0)", "(>= X_0 0)"))[0]
    assert verify(net, closed, timeout=5.0, config=FAST).verdict is Verdict.FALSIFIED


def test_open_bound_on_a_point_box_is_empty():
    from certprune.errors import InputRegionError, VNNLibError
    with pytest.raises(InputRegionError, match="open"):
        InputRegion(np.zeros(1), np.zeros(1), open_lower=np.ones(1, bool))
    text = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (> X_0 0))(assert (<= X_0 0))(assert (<= Y_0 0))"
    with pytest.raises(VNNLibError, match="infeasible"):
        read_vnnlib(text)


def test_z3_leaf_encodes_strict_rows_exactly():
    """z3 reads strict rows strictly: the constant net cannot have Y_0 > 1 (unsat), Y_0 >= 1 is sat."""
    from certprune.verifiers.bounds import affine_net
    from certprune.verifiers.smt import solve_property
    net = affine_net(constant_net(), (2,))
    assert solve_property(net, read_vnnlib(vnnlib_text("(> Y_0 1)"))[0], timeout=10).status == "unsat"
    assert solve_property(net, read_vnnlib(vnnlib_text("(>= Y_0 1)"))[0], timeout=10).status == "sat"


@pytest.mark.parametrize("make, assertion", [BOUNDARY[0], BOUNDARY[2]])
def test_cli_verify_does_not_print_sat_on_the_boundary(make, assertion, tmp_path, capsys):
    from certprune.io.onnx_export import save_onnx
    model = save_onnx(make(), tmp_path / "net.onnx", (2,))
    spec = tmp_path / "prop.vnnlib"
    spec.write_text(vnnlib_text(assertion))
    out = tmp_path / "res.txt"
    code = main(["verify", str(model), str(spec), "--timeout", "1", "--results-file", str(out)])
    word = capsys.readouterr().out.strip()
    assert word in ("timeout", "unknown", "unsat") and code != 2
    assert out.read_text().splitlines()[0] == word


def test_cli_verify_strict_sat_witness_is_strict(tmp_path, capsys):
    from certprune.io.onnx_export import save_onnx
    model = save_onnx(relu_last_net(), tmp_path / "net.onnx", (2,))
    spec = tmp_path / "prop.vnnlib"
    spec.write_text(vnnlib_text("(> Y_0 0)"))
    out = tmp_path / "res.txt"
    assert main(["verify", str(model), str(spec), "--timeout", "20", "--results-file", str(out)]) == 0
    assert capsys.readouterr().out.strip() == "sat"
    word, vals = parse_result(out.read_text())
    assert word == "sat" and vals["Y_0"] > 0


def test_twin_fairness_violation_is_the_exact_decision_rule():
    """Decision 1 iff logit > 0: logits (0, -1) give the same decision (0, 0), so no violation;
    the non-strict reading used to count it as a flip."""
    from certprune.verifiers.twin import violation_disjuncts
    prop = Property(InputRegion(np.zeros(1), np.ones(1)), violation_disjuncts())
    y = np.array([[0.0, -1.0], [-1.0, 0.0], [0.0, 0.0], [0.5, -1.0], [-1.0, 1e-30], [0.5, 0.0]])
    decided = (y > 0).astype(int)
    assert prop.is_violated(y).tolist() == (decided[:, 0] != decided[:, 1]).tolist()
    assert prop.is_violated(y).tolist() == [False, False, False, True, True, True]
