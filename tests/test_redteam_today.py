"""Red team of today's merges: the graph bound engine on random operator DAGs and the
individual-counting fairness engine against brute force.

- compute_bounds (native graph engine; IBP, CROWN, alpha-CROWN, with and without IBP
  intersection) on random DAGs of Conv (stride / padding / dilation / groups), BatchNorm, zero Pad,
  AvgPool (ceil mode, count_include_pad), Mul / Div / Sub by constants (negative, const first),
  Transpose, residual Add / Sub, Gather with repeated indices, Concat: every sampled output lies
  inside the bounds.
- audit_fairness individual counts against a brute-force float32 enumeration of every pair of the
  domain (each point run alone): fair + unfair + undecided = total, proven fair individuals
  have no flipping partner, proven unfair ones have one, a complete audit has the exact count,
  every counterexample pair is valid and flips in float32; random nets, nets with exact ties
  (integer weights), several protected attributes, relaxed attributes, partition sizes, both
  semantics, the z3 leaf forced.

Finding fixed here: under ``exact`` semantics the fairness z3 leaf ran with margin 0, so it
certified individuals at an exact real-arithmetic tie (logit 0, "no" decision) whose float32
execution says "yes" and flips; the bound path keeps the policy's margin and the default
enumeration counts them unfair (same spec, other config, other count). Fix: the z3 leaf uses
``Semantics.slack(0, 0)`` (1e-7) in exact semantics (fairness_bab.TwinBab._z3).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from certprune.fairness_spec import FairnessSpec
from certprune.io import onnx_ops as ops
from certprune.verifiers.bounds import compute_bounds
from certprune.verifiers.fairness import audit_fairness
from certprune.verifiers.fairness_bab import BabConfig
from tests.graph_nets import graph

Z3_CFG = BabConfig(enum_points=0, z3_unstable=1000, z3_depth=1, z3_every=1)


# ----------------------------------------------------------------------------- graph bounds
def _conv(g: torch.Generator, rng, C: int, H: int, W: int):
    k, s, p, d = (int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 3)), int(rng.integers(1, 3)))
    groups = int(rng.choice([1, C]))
    if H + 2 * p - d * (k - 1) - 1 < 0 or W + 2 * p - d * (k - 1) - 1 < 0:
        k, d = 1, 1
    c = nn.Conv2d(C, groups * int(rng.integers(1, 3)), k, stride=s, padding=p, dilation=d, groups=groups)
    with torch.no_grad():
        c.weight.normal_(generator=g)
        c.bias.normal_(generator=g)
    return c


def random_graph(seed: int):
    """A random ReLU DAG over input (C, H, W) and its input shape (see module doc for the ops)."""
    rng, g = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    shape = (int(rng.integers(1, 3)), int(rng.integers(3, 6)), int(rng.integers(3, 6)))
    in_shape, nodes, cur, k = shape, [], "__input__", 0

    def add(mod, ins):
        nonlocal k, cur, shape
        k += 1
        nodes.append((mod, ins, f"v{k}"))
        cur = f"v{k}"
        return cur

    for _ in range(int(rng.integers(2, 5))):
        C, H, W = shape
        op = rng.choice(["conv", "bn", "pad", "avg", "mul", "div", "sub", "perm", "res"])
        if op == "conv":
            add(_conv(g, rng, C, H, W), (cur,))
        elif op == "bn":
            bn = nn.BatchNorm2d(C).eval()
            with torch.no_grad():
                bn.running_mean.normal_(generator=g)
                bn.running_var.uniform_(0.1, 2)
                bn.weight.normal_(generator=g)   # negative scales too
                bn.bias.normal_(generator=g)
            add(bn, (cur,))
        elif op == "pad":
            add(ops.ConstantPad(tuple(int(v) for v in rng.integers(0, 3, size=4))), (cur,))
        elif op == "avg" and H >= 2 and W >= 2:
            add(nn.AvgPool2d(2, int(rng.integers(1, 3)), int(rng.integers(0, 2)), ceil_mode=bool(rng.integers(0, 2)),
                             count_include_pad=bool(rng.integers(0, 2))), (cur,))
        elif op == "mul":
            add(ops.ConstBinary("Mul", rng.normal(size=(C, 1, 1)).astype(np.float32), bool(rng.integers(0, 2))), (cur,))
        elif op == "div":
            add(ops.ConstBinary("Div", (rng.normal(size=(1, H, W)) + 0.3).astype(np.float32), False), (cur,))
        elif op == "sub":
            add(ops.ConstBinary("Sub", rng.normal(size=(W,)).astype(np.float32), bool(rng.integers(0, 2))), (cur,))
        elif op == "perm":
            add(ops.Permute((0,) + tuple(int(v) + 1 for v in rng.permutation(3))), (cur,))
        elif op == "res":
            x0 = cur
            r = add(nn.ReLU(), (x0,))
            m = nn.Conv2d(C, C, 3, padding=1)
            with torch.no_grad():
                m.weight.normal_(generator=g)
            rc = add(m, (r,))
            add(ops.TensorBinary(str(rng.choice(["Add", "Sub"]))), (x0, rc))
        with torch.no_grad():
            shape = tuple(graph(nodes, cur)(torch.zeros(1, *in_shape)).shape[1:]) if nodes else shape
        add(nn.ReLU(), (cur,))
    d = int(np.prod(shape))
    flat = add(ops.Reshape((d,)), (cur,))
    idx = rng.choice(d, size=max(1, d // 2), replace=True)          # Gather with repeated indices
    sel = add(ops.Select(idx, (len(idx),)), (flat,))
    add(ops.Concat(-1), (sel, flat))
    lin = nn.Linear(len(idx) + d, 3)
    with torch.no_grad():
        lin.weight.normal_(generator=g)
    out = add(lin, (cur,))
    return graph(nodes, out).double(), in_shape


def _check_graph_bounds(seed: int, n_samples: int = 3000) -> int:
    m, shape = random_graph(seed)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, *shape, generator=gen, dtype=torch.float64)
    lo, hi = x0 - 0.3, x0 + 0.3
    u = torch.rand(n_samples, *shape, generator=gen, dtype=torch.float64)
    u[:100] = (u[:100] > 0.5).double()                                    # corners
    with torch.no_grad():
        ys = m(lo + u * (hi - lo))
    tol = 1e-7 * (1 + float(ys.abs().max()))
    checked = 0
    for method in ("ibp", "crown", "alpha-crown"):
        for inter in (False, True):
            b = compute_bounds(m, lo, hi, method=method, engine="native", intersect_ibp=inter, input_shape=shape)
            L = torch.as_tensor(np.asarray(b.lower)).reshape(1, -1)
            U = torch.as_tensor(np.asarray(b.upper)).reshape(1, -1)
            assert torch.isfinite(L).all() and torch.isfinite(U).all()
            assert (ys >= L - tol).all() and (ys <= U + tol).all(), (seed, method, inter)
            checked += 1
    return checked


@pytest.mark.parametrize("seed", range(1, 9))
def test_graph_bounds_contain_samples_on_random_operator_dags(seed):
    assert _check_graph_bounds(seed) == 6


@pytest.mark.slow
def test_graph_bounds_contain_samples_sweep():
    assert sum(_check_graph_bounds(s, 2000) for s in range(9, 209)) == 6 * 200


# ----------------------------------------------------------------------------- fairness counts
def _seq(layers: list[tuple[np.ndarray, np.ndarray]]) -> nn.Sequential:
    mods = []
    for i, (w, b) in enumerate(layers):
        lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w, dtype=torch.float32))
            lin.bias.copy_(torch.tensor(b, dtype=torch.float32))
        mods += [lin] + ([nn.ReLU()] if i < len(layers) - 1 else [])
    return nn.Sequential(*mods).float().eval()


def random_fair_case(seed: int, ties: bool):
    """(model, spec, partition_size, semantics, config) of a tiny random audit; ``ties``: integer
    weights, so that logits are exactly 0 at some integer points (float32 rounds them off 0)."""
    rng = np.random.default_rng(seed)
    nf = int(rng.integers(2, 5))
    lo = rng.integers(-2, 2, nf)
    hi = lo + rng.integers(0, 4, nf)
    prot = list(rng.choice(nf, int(rng.integers(1, 3)) if nf > 2 else 1, replace=False))
    for i in prot:
        hi[i] = max(hi[i], lo[i] + 1)
    names = tuple(f"f{i}" for i in range(nf))
    rel = {names[i]: int(rng.integers(0, 3)) for i in range(nf) if i not in prot and rng.random() < 0.4}
    n_out, d, layers = int(rng.integers(1, 3)), nf, []
    for h in [int(rng.integers(2, 7))] * int(rng.integers(1, 3)) + [None]:
        h = n_out if h is None else h
        if ties:
            w, b = rng.integers(-2, 3, size=(h, d)).astype(float), rng.integers(-1, 2, size=h) * 0.5
        else:
            w, b = rng.normal(size=(h, d)) * float(rng.choice([0.3, 1, 3])), rng.normal(size=h) * 0.5
        layers.append((w, b))
        d = h
    if ties:
        layers[-1] = (layers[-1][0] * 0.1, layers[-1][1] * 0.2)
    spec = FairnessSpec(names, lo, hi, tuple(names[i] for i in prot), rel)
    psize = [None, 1, 2, 3][int(rng.integers(0, 4))]
    sem = ["exact", "float32"][int(rng.integers(0, 2))]
    cfg = [None, Z3_CFG, BabConfig(enum_points=0)][int(rng.integers(0, 3))]
    return _seq(layers), spec, psize, sem, cfg


def _decisions(m: nn.Module, pts: np.ndarray) -> np.ndarray:
    """float32 decisions, each point run alone (logit > 0, or argmax == 1 of two logits)."""
    with torch.no_grad():
        ys = [m(torch.tensor(p[None], dtype=torch.float32)).numpy()[0] for p in pts]
    return np.array([y[0] > 0 if len(y) == 1 else np.argmax(y) == 1 for y in ys])


def _decisions_exact(m: nn.Module, pts: np.ndarray) -> np.ndarray:
    """Real-arithmetic decisions (Fraction arithmetic on the float32 weights; a tie is 'no')."""
    from fractions import Fraction
    lins = [mod for mod in m if isinstance(mod, nn.Linear)]
    Ws = [[[Fraction(float(v)) for v in row] for row in lin.weight.detach().double().numpy()] for lin in lins]
    bs = [[Fraction(float(v)) for v in lin.bias.detach().double().numpy()] for lin in lins]
    out = []
    for p in pts:
        h = [Fraction(int(v)) for v in p]
        for k, (W, b) in enumerate(zip(Ws, bs)):
            h = [sum((w * v for w, v in zip(row, h)), c) for row, c in zip(W, b)]
            if k < len(Ws) - 1:
                h = [max(v, Fraction(0)) for v in h]
        out.append(h[0] > 0 if len(h) == 1 else h[1] > h[0])
    return np.array(out)


def brute_unfair(m: nn.Module, spec: FairnessSpec, sem: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """(every point of the domain, is it unfair) by enumerating every pair (validity rewritten here),
    with the decisions of the semantics: float32 runs, or real arithmetic for ``exact``."""
    pts = np.array(list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(spec.lower, spec.upper)])),
                   dtype=np.float64)
    d = _decisions_exact(m, pts) if sem == "exact" else _decisions(m, pts)
    prot, rel = list(spec.protected_indices), dict(zip(spec.relaxed_indices, spec.relaxed_deltas))
    diff = np.abs(pts[:, None] - pts[None])
    ok = np.any(diff[:, :, prot] > 0, axis=2)
    for i in range(pts.shape[1]):
        if i not in prot:
            ok &= diff[:, :, i] <= rel.get(i, 0)
    return pts, np.any(ok & (d[:, None] != d[None]), axis=1)


def check_audit(m, spec, psize, sem, cfg) -> dict:
    pts, unfair = brute_unfair(m, spec, sem)
    res = audit_fairness(m, spec, partition_size=psize, timeout=20, progress=False, config=cfg, semantics=sem,
                         report=False, samples=0)
    ind = res.summary["individuals"]
    assert ind["total"] == len(pts)
    assert ind["fair"] + ind["unfair"] + ind["undecided"] == ind["total"]
    assert ind["unfair"] <= int(unfair.sum()), "proven unfair individuals that have no flipping partner"
    assert ind["fair"] <= int((~unfair).sum()), "proven fair individuals that flip under the semantics"
    if ind["undecided"] == 0:
        assert ind["unfair"] == int(unfair.sum())
    for _, row in res.counterexamples.iterrows():
        x = np.array([row[f"x.{n}"] for n in spec.feature_names], dtype=np.float64)
        xp = np.array([row[f"x_prime.{n}"] for n in spec.feature_names], dtype=np.float64)
        for v in (x, xp):
            assert np.all(v >= spec.lower) and np.all(v <= spec.upper) and np.all(v == np.round(v))
        d = _decisions(m, np.vstack([x, xp]))
        assert d[0] != d[1]  # every listed pair flips in float32
        if sem == "exact":
            d = _decisions_exact(m, np.vstack([x, xp]))
            assert d[0] != d[1]  # and, under exact, in real arithmetic
    return ind


def test_fairness_z3_leaf_exact_semantics_keeps_margin_at_exact_ties():
    """x = (f0, f1), f1 protected. At (0, 1) the two logits tie exactly in real arithmetic (decision
    "no") but float32 gives y0 = -7.5e-9 < y1 = 0 ("yes"), and (0, 0) is "no": the pair's two
    individuals are unfair in float32 (4 / 4) and fair in real arithmetic (6 / 2). Each semantics
    counts its own (issue 10: the exact audit no longer mixes in float32 point decisions); the z3
    leaf keeps its margin at the tie under exact (regression: with margin 0 it closed the box)."""
    W1 = np.array([[1, 2], [0, 0], [2, 0], [0, 1], [-2, -2], [-2, 0]], float)
    b1 = np.array([-0.5, 0.5, 0, -0.5, 0.5, -0.5])
    W2 = np.array([[-2, 0, -1, 1, -1, 2], [2, 2, -2, -1, -1, 1], [1, 0, 2, -2, -2, 0],
                   [2, 2, 2, 1, 1, -2], [-2, 1, -1, -1, 1, -2], [-1, 1, -1, -2, 2, 0]], float)
    b2 = np.array([0, 0.5, -0.5, 0.5, -0.5, 0.5])
    W3 = np.array([[0.1, -0.1, -0.2, 0.1, -0.2, 0.2], [0.1, 0, -0.1, 0, 0.1, -0.2]])
    b3 = np.array([-0.1, 0.0])
    m = _seq([(W1, b1), (W2, b2), (W3, b3)])
    spec = FairnessSpec(("f0", "f1"), np.array([-2, 0]), np.array([1, 1]), ("f1",))
    for cfg in (None, Z3_CFG):
        ind = check_audit(m, spec, 2, "exact", cfg)
        assert (ind["fair"], ind["unfair"], ind["undecided"]) == (6, 2, 0), (cfg, ind)
        ind = check_audit(m, spec, 2, "float32", cfg)
        assert (ind["fair"], ind["unfair"], ind["undecided"]) == (4, 4, 0), (cfg, ind)


@pytest.mark.parametrize("seed,ties", [(s, t) for s in range(6) for t in (False, True)])
def test_fairness_counts_agree_with_brute_force(seed, ties):
    check_audit(*random_fair_case(seed, ties))


@pytest.mark.slow
@pytest.mark.parametrize("ties", [False, True])
def test_fairness_counts_agree_with_brute_force_sweep(ties):
    for seed in range(100, 300):
        check_audit(*random_fair_case(seed, ties))
