"""Shared helpers of the fairness tests: tiny specs, nets, and independent exact checkers."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from certprune.fairness_spec import FairnessSpec


def small_spec(relaxed=()) -> FairnessSpec:
    """4 features: a in [0,7], b in [0,5], protected p in {0,1}, c in [0,9]."""
    return FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [7, 5, 1, 9], ("p",), relaxed)


def biased_mlp(seed: int, sizes=(4, 8, 8, 1)) -> nn.Sequential:
    """Random ReLU MLP with a sizeable weight on the protected input (index 2)."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 2)
        layers += [lin, nn.ReLU()] if i < len(sizes) - 2 else [lin]
    return nn.Sequential(*layers).eval()


def decisions32(model: nn.Module, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return (model(torch.tensor(X, dtype=torch.float32))[:, 0] > 0).numpy()


def brute_force_unfair(model: nn.Module, spec: FairnessSpec, lo, hi) -> bool:
    """Every integer pair of the partition, float32 decisions of the model: is some pair unfair?"""
    ranges = [range(int(l), int(h) + 1) for l, h in zip(lo, hi)]
    X = np.array(list(itertools.product(*ranges)), dtype=np.float64)
    d = dict(zip(map(tuple, X.astype(int)), decisions32(model, X)))
    prot, rel = spec.protected_indices, dict(zip(spec.relaxed_indices, spec.relaxed_deltas))
    for x in d:
        for xp in d:
            if d[x] == d[xp] or all(x[i] == xp[i] for i in prot):
                continue
            if all(x[i] == xp[i] or (i in rel and abs(x[i] - xp[i]) <= rel[i]) or i in prot for i in range(len(x))):
                return True
    return False


def z3_unfair(model: nn.Sequential, spec: FairnessSpec, lo, hi) -> bool:
    """Direct z3 encoding of the full, unpruned twin network in exact arithmetic (strict
    decision y > 0): is there an unfair pair in the partition?"""
    import z3
    lins = [m for m in model if isinstance(m, nn.Linear)]
    n = spec.num_features
    s = z3.Solver()
    x = [z3.Int(f"x{i}") for i in range(n)]
    xp = [z3.Int(f"xp{i}") for i in range(n)]
    rel = dict(zip(spec.relaxed_indices, spec.relaxed_deltas))
    for i in range(n):
        s.add(x[i] >= int(lo[i]), x[i] <= int(hi[i]), xp[i] >= int(lo[i]), xp[i] <= int(hi[i]))
        if i in rel:
            s.add(x[i] - xp[i] <= rel[i], xp[i] - x[i] <= rel[i])
        elif i not in spec.protected_indices:
            s.add(x[i] == xp[i])
    s.add(z3.Or([x[i] != xp[i] for i in spec.protected_indices]))

    def q(v):
        f = Fraction(float(v))
        return z3.RealVal(f"{f.numerator}/{f.denominator}")

    def forward(inp):
        h = [z3.ToReal(v) for v in inp]
        for k, lin in enumerate(lins):
            W, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
            z = [z3.Sum([q(W[i, j]) * h[j] for j in range(len(h))]) + q(b[i]) for i in range(len(b))]
            h = z if k == len(lins) - 1 else [z3.If(v > 0, v, z3.RealVal(0)) for v in z]
        return h[0]

    y, yp = forward(x), forward(xp)
    s.add(z3.Or(z3.And(y > 0, yp <= 0), z3.And(y <= 0, yp > 0)))
    return s.check() == z3.sat


# ------------------------------------------------------------------------------------------
# tests: the audit's verdict per partition equals two independent exact checks
# ------------------------------------------------------------------------------------------
import pytest  # noqa: E402

from certprune.verifiers.fairness import audit_fairness  # noqa: E402
from certprune.verifiers.partition import grid_partition  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_audit_matches_brute_force(seed):
    model, spec = biased_mlp(seed), small_spec()
    res = audit_fairness(model, spec, 4, timeout=60, progress=False)
    part = grid_partition(spec.lower, spec.upper, 4)
    lo, hi = part.bounds(range(part.count))
    got = res.partitions.set_index("partition")["verdict"]
    assert (got != "undecided").all()
    for pid in range(part.count):
        brute = brute_force_unfair(model, spec, lo[pid], hi[pid])
        assert got[pid] == ("falsified" if brute else "certified"), pid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_audit_matches_direct_z3_on_unpruned_twin(seed):
    model, spec = biased_mlp(seed, sizes=(4, 6, 1)), small_spec()
    res = audit_fairness(model, spec, 4, timeout=60, progress=False)
    part = grid_partition(spec.lower, spec.upper, 4)
    lo, hi = part.bounds(range(part.count))
    got = res.partitions.set_index("partition")["verdict"]
    for pid in range(part.count):
        exact = z3_unfair(model, spec, lo[pid], hi[pid])
        assert got[pid] == ("falsified" if exact else "certified"), pid
        assert brute_force_unfair(model, spec, lo[pid], hi[pid]) == exact, pid


def test_mixed_verdicts_exist_in_the_fixture():
    """The fixture family is not degenerate: across the seeds both verdicts occur."""
    seen = set()
    for seed in range(4):
        res = audit_fairness(biased_mlp(seed), small_spec(), 4, timeout=60, progress=False)
        seen |= set(res.partitions["verdict"])
    assert {"certified", "falsified"} <= seen


@pytest.mark.parametrize("seed", [4, 5])
def test_relaxed_audit_matches_brute_force(seed):
    model, spec = biased_mlp(seed), small_spec(relaxed={"a": 1})
    res = audit_fairness(model, spec, 4, timeout=60, progress=False)
    part = grid_partition(spec.lower, spec.upper, 4)
    lo, hi = part.bounds(range(part.count))
    got = res.partitions.set_index("partition")["verdict"]
    from test_fairness_individuals import brute_counts
    _, _, unfair = brute_counts(model, spec)  # partners range over the domain, across partitions
    for pid in range(part.count):
        brute = any(np.all((np.array(x) >= lo[pid]) & (np.array(x) <= hi[pid])) for x in unfair)
        assert got[pid] == ("falsified" if brute else "certified"), pid


def test_counterexamples_are_valid_flipping_pairs():
    model, spec = biased_mlp(1), small_spec(relaxed={"c": 2})
    res = audit_fairness(model, spec, 4, timeout=60, progress=False)
    cex = res.counterexamples
    assert cex["partition"].nunique() == (res.partitions["verdict"] == "falsified").sum()
    X = cex[[f"x.{n}" for n in spec.feature_names]].to_numpy(float)
    Xp = cex[[f"x_prime.{n}" for n in spec.feature_names]].to_numpy(float)
    assert (decisions32(model, X) != decisions32(model, Xp)).all()
    assert (X[:, 2] != Xp[:, 2]).all() and (np.abs(X[:, 3] - Xp[:, 3]) <= 2).all()
    assert (X[:, :2] == Xp[:, :2]).all()
    part = grid_partition(spec.lower, spec.upper, 4)
    lo, hi = part.bounds(cex["partition"].to_numpy())
    assert ((X >= lo) & (X <= hi) & (Xp >= spec.lower) & (Xp <= spec.upper)).all()
    with torch.no_grad():
        assert np.allclose(model(torch.tensor(X, dtype=torch.float32))[:, 0].numpy(), cex["logit_x"])
