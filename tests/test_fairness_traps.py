"""Soundness traps: a neuron that sampling never activates, a relaxed counterexample that needs
x' outside the domain, and an exact-arithmetic flip that float32 does not reproduce."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from certprune.fairness_spec import FairnessSpec
from certprune.verifiers.fairness import audit_fairness
from certprune.verifiers.twin import valid_pairs


def _net(layers: list[tuple[list[list[float]], list[float]]]) -> nn.Sequential:
    mods: list[nn.Module] = []
    for k, (w, b) in enumerate(layers):
        lin = nn.Linear(len(w[0]), len(w))
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w))
            lin.bias.copy_(torch.tensor(b))
        mods += [lin, nn.ReLU()] if k < len(layers) - 1 else [lin]
    return nn.Sequential(*mods).eval()


def test_neuron_never_active_on_samples_still_counts():
    """h = relu(u + v + p - 20000) fires only at u = v = 10000, p = 1; y = 2h - 1 flips there.
    1,000 random samples essentially never activate h; deleting it would 'certify' the domain."""
    model = _net([([[1.0, 1.0, 1.0]], [-20000.0]), ([[2.0]], [-1.0])])
    spec = FairnessSpec(("u", "v", "p"), [0, 0, 0], [10000, 10000, 1], ("p",))
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.integers(0, 10001, 1000), rng.integers(0, 10001, 1000), rng.integers(0, 2, 1000)])
    with torch.no_grad():
        assert (model[0](torch.tensor(X, dtype=torch.float32)) <= 0).all()  # never active on samples
    res = audit_fairness(model, spec, 100000, timeout=60, progress=False)
    assert res.summary["counts"]["falsified"] == 1
    row = res.counterexamples.iloc[0]
    assert row["x.u"] == row["x_prime.u"] == 10000 and row["x.v"] == 10000
    assert {row["x.p"], row["x_prime.p"]} == {0, 1}


def test_relaxed_partner_outside_domain_is_not_counted_but_across_partitions_is():
    """y = r - 10.5 (decision r >= 11), relaxed r with delta 2. The only flips pair r <= 10 with
    r' >= 11. With domain [0, 10] that x' is outside the domain: everyone is fair. With domain
    [0, 20] and T = 11 the partner lies in the other partition, which is still a valid partner
    (an individual's partners range over the domain): r in 9..12 under both p are unfair."""
    model = _net([([[1.0, 0.0]], [0.0]), ([[1.0]], [-10.5])])
    spec = FairnessSpec(("r", "p"), [0, 0], [10, 1], ("p",), relaxed={"r": 2})
    res = audit_fairness(model, spec, 11, timeout=60, progress=False)
    assert res.summary["counts"] == {"certified": 1, "falsified": 0, "undecided": 0}
    assert res.summary["individuals"] == {"total": 22, "fair": 22, "unfair": 0, "undecided": 0}
    assert len(res.counterexamples) == 0
    spec = FairnessSpec(("r", "p"), [0, 0], [20, 1], ("p",), relaxed={"r": 2})
    res = audit_fairness(model, spec, 11, timeout=60, progress=False)
    assert res.summary["individuals"] == {"total": 42, "fair": 34, "unfair": 8, "undecided": 0}
    assert res.summary["counts"]["falsified"] == 2
    # validity: x inside its partition, x' inside the domain
    assert valid_pairs(spec, np.array([10.0, 0]), np.array([11.0, 1]), np.array([0, 0]), np.array([10, 1]))[0]
    assert not valid_pairs(spec, np.array([11.0, 0]), np.array([12.0, 1]), np.array([0, 0]), np.array([10, 1]))[0]
    small = FairnessSpec(("r", "p"), [0, 0], [10, 1], ("p",), relaxed={"r": 2})
    assert not valid_pairs(small, np.array([10.0, 0]), np.array([11.0, 1]), np.array([0, 0]), np.array([10, 1]))[0]


def test_exact_flip_that_float32_does_not_reproduce_is_counted_by_the_semantics():
    """h = relu(a x), y = c - h - p with a = fl32(0.1), c = fl32(0.3). At x = 3, p = 0 the exact
    logit is c - 3a = +7.45e-9 > 0 (an exact-arithmetic flip against p = 1), but float32 rounds
    3a to c, so y32 = 0 and both decisions are 'no'. Every other x in [3, 10] has y < 0.
    exact: the two individuals at x = 3 are unfair in real arithmetic (decided by rational
    arithmetic, as the bounds would), no pair is listed (float32 does not flip), the partition is
    not falsified; float32: every individual is fair."""
    a, c = float(np.float32(0.1)), float(np.float32(0.3))
    from fractions import Fraction
    exact = Fraction(c) - 3 * Fraction(a)
    assert 0 < exact < Fraction(1, 10 ** 6)
    # hidden units: relu(a x) and relu(p) = p
    model = _net([([[a, 0.0], [0.0, 1.0]], [0.0, 0.0]), ([[-1.0, -1.0]], [c])])
    with torch.no_grad():
        out = model(torch.tensor([[3.0, 0.0], [3.0, 1.0]]))[:, 0]
    assert out[0].item() <= 0 and out[1].item() < 0  # float32: both decisions 'no'
    spec = FairnessSpec(("x", "p"), [3, 0], [10, 1], ("p",))
    res = audit_fairness(model, spec, 100, timeout=60, progress=False)
    assert res.summary["semantics"] == "exact" and "real-arithmetic" in res.summary["decisions"]
    assert res.summary["counts"]["falsified"] == 0 and res.summary["counts"]["certified"] == 0
    assert res.summary["individuals"] == {"total": 16, "fair": 14, "unfair": 2, "undecided": 0}
    assert len(res.counterexamples) == 0
    res = audit_fairness(model, spec, 100, timeout=60, progress=False, semantics="float32")
    assert res.summary["counts"]["falsified"] == 0 and res.summary["counts"]["certified"] == 1
    assert res.summary["individuals"] == {"total": 16, "fair": 16, "unfair": 0, "undecided": 0}
    assert len(res.counterexamples) == 0
