"""The z3 encoding from the graph IR (``graph.encode_z3``, the one walk's second back end) against
brute force on graphs that are not chains: residual Add/Sub blocks, concat branches with a Select
and a constant Mul, a conv/BatchNorm residual net, and twin graphs (``twin.twin_graph``, through
``smt.solve_property`` and through the fairness leaf ``fairness_smt.TwinSolver``). Brute force =
every integer point of the box run through the float64 graph; thresholds sit 1e-6 either side of
the enumerated optimum, so the exact answer is known on both sides."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from graph_nets import concat_branches, conv_residual, residual_mlp, residual_relu_add

from certprune.fairness_spec import FairnessSpec
from certprune.graph import build_graph
from certprune.graph.encode_z3 import encode_z3
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.smt import SmtOptions, input_variables, solve_property
from certprune.verifiers.twin import partition_properties, twin_graph, twin_layout, valid_pairs


def _dyadic(module, bits: int = 5):
    """Weights rounded to multiples of 2**-bits (short exact rationals keep z3 fast)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.round(p * 2.0 ** bits) / 2.0 ** bits)
    return module


def _grid(lo, hi) -> np.ndarray:
    return np.array(list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(lo, hi)])), float)


def _at_least(region: InputRegion, row: np.ndarray, t: float) -> Property:
    """Violation: row . y >= t."""
    return Property(region, (LinearConstraints(-row[None], np.array([-t])),))


CASES = {
    "residual_relu_add": (lambda: residual_relu_add(1, d=3, h=4, out=2), np.full(3, -2.0), np.full(3, 2.0)),
    "residual_mlp": (lambda: residual_mlp(2, d=3, h=4, out=2), np.full(3, -2.0), np.full(3, 2.0)),
    "concat_branches": (lambda: concat_branches(1, d=4), np.zeros(4), np.ones(4)),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("options", [SmtOptions(), SmtOptions(relu="disjunction", auto_bounds=False)],
                         ids=["bounds", "exact-relu"])
def test_graph_z3_agrees_with_enumeration_on_non_chain_graphs(name, options):
    make, lo, hi = CASES[name]
    model = _dyadic(make())
    g = build_graph(model, (len(lo),))
    pts = _grid(lo, hi)
    y = g.forward(torch.as_tensor(pts)).numpy()
    row = np.array([1.0, -1.0])
    d = y @ row
    region = InputRegion(lo, hi, np.ones(len(lo), bool))
    for t in (d.max() - 1e-6, d.max() + 1e-6):
        out = solve_property(g, _at_least(region, row, t), timeout=60, options=options)
        assert out.status == ("sat" if t < d.max() else "unsat"), (name, t, out.status)
        if out.status == "sat":
            assert np.all(out.x == np.round(out.x)) and np.all((out.x >= lo) & (out.x <= hi))
            yx = model(torch.as_tensor(out.x[None], dtype=torch.float32)).detach().numpy() @ row
            assert yx[0] >= t - 1e-4   # re-run in float32 on the original module


def test_graph_z3_agrees_with_enumeration_on_a_conv_batchnorm_residual_net():
    """One pixel of the 8x8 input ranges over {0, 1, 2}, the rest fixed at 1/2: three points
    through strided/padded convs, BatchNorm and a residual Add (conv Jacobians in the z3 terms;
    weights on a 1/4 grid: z3 on 24-bit float32 rationals of every conv weight is slow)."""
    model = _dyadic(conv_residual(0), bits=2)
    g = build_graph(model, (1, 8, 8))
    lo = np.full(64, 0.5)
    hi = lo.copy()
    free = [27]
    lo[free], hi[free] = 0.0, 2.0
    mask = np.zeros(64, bool)
    mask[free] = True
    pts = np.repeat(lo[None], 3, 0)
    pts[:, free] = _grid(lo[free], hi[free])
    y = g.forward(torch.as_tensor(pts)).reshape(3, -1).numpy()
    row = np.zeros(y.shape[1])
    row[0], row[1] = 1.0, -1.0
    d = y @ row
    region = InputRegion(lo, hi, mask)
    for t in (d.max() - 1e-6, d.max() + 1e-6):
        out = solve_property(g, _at_least(region, row, t), timeout=120)
        assert out.status == ("sat" if t < d.max() else "unsat"), (t, out.status)


def _twin_case(seed: int, relax: bool):
    g = torch.Generator().manual_seed(seed)
    dims = [3, 5, 4, 1]
    r = lambda t: torch.round(t * 16) / 16  # noqa: E731
    ws = tuple(r(torch.randn(o, i, generator=g, dtype=torch.float64)) for i, o in zip(dims, dims[1:]))
    bs = tuple(r(torch.randn(o, generator=g, dtype=torch.float64)) for o in dims[1:])
    net = AffineReluNet(ws, bs, (3,))
    spec = FairnessSpec(("a", "p", "c"), [0, 0, 0], [3, 1, 3], ("p",), {"c": 1} if relax else {})
    return net, spec


def _brute_unfair(net, spec, lo, hi) -> bool:
    """Some integer x in [lo, hi] and valid partner x' (in the partition too: Fairify's query)
    get different decisions (float64 logits, decision = logit > 0)."""
    X = _grid(lo, hi)
    XP = _grid(lo, hi)
    xs, xps = np.repeat(X, len(XP), 0), np.tile(XP, (len(X), 1))
    ok = valid_pairs(spec, xs, xps, lo, hi) & np.all((xps >= lo) & (xps <= hi), axis=1)
    y = net.forward(torch.as_tensor(xs[ok])).numpy()[:, 0]
    yp = net.forward(torch.as_tensor(xps[ok])).numpy()[:, 0]
    return bool(np.any((y > 0) != (yp > 0)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("relax", [False, True], ids=["plain", "relaxed"])
def test_graph_z3_on_twin_graph_agrees_with_pair_enumeration(seed, relax):
    net, spec = _twin_case(seed, relax)
    layout = twin_layout(spec)
    tg = twin_graph(net, layout)
    lo, hi = spec.lower.astype(float), spec.upper.astype(float)
    off = layout.n + len(layout.protected)

    def coupled(z, ys):  # x'_r = x_r + d_r inside the partition (not a box: an extra constraint)
        return [c for j, i in enumerate(layout.relaxed)
                for c in (z[i] + z[off + j] >= int(lo[i]), z[i] + z[off + j] <= int(hi[i]))]
    hits = []
    for prop in partition_properties(spec, lo, hi):
        out = solve_property(tg.graph, prop, timeout=60, extra_constraints=coupled)
        assert out.status in ("sat", "unsat")
        if out.status == "sat":  # the pair must be valid and flip (the weights keep clear of ties)
            x, xp = layout.split(out.x[None])
            y = net.forward(torch.as_tensor(np.concatenate([x, xp]))).numpy()[:, 0]
            assert valid_pairs(spec, x, xp, lo, hi)[0] and np.all((xp >= lo) & (xp <= hi))
            hits.append(bool((y[0] > 0) != (y[1] > 0)))
    assert any(hits) == _brute_unfair(net, spec, lo, hi)


@pytest.mark.parametrize("seed", range(4))
def test_fairness_twin_solver_agrees_with_pair_enumeration(seed):
    """The fairness z3 leaf on the twin graph (phases from no bounds, margin 0): unsat iff no
    integer pair of the box flips."""
    from certprune.verifiers.fairness_smt import TwinSolver
    net, spec = _twin_case(seed, True)
    layout = twin_layout(spec)
    tg = twin_graph(net, layout)
    lo, hi = spec.lower.astype(float), spec.upper.astype(float)
    solver = TwinSolver(tg, layout)
    unfair = False
    for prop in partition_properties(spec, lo, hi):
        zlo, zhi = prop.region.lower, prop.region.upper
        status, z = solver.solve(zlo, zhi, lo, hi, {}, (0.0, 0.0), 60)
        assert status in ("sat", "unsat")
        if status == "sat":
            x, xp = layout.split(z[None])
            assert np.all((xp >= lo) & (xp <= hi))   # the coupled x' bounds are in the encoding
            y = net.forward(torch.as_tensor(np.concatenate([x, xp]))).numpy()[:, 0]
            unfair |= bool((y[0] > 0) != (y[1] > 0))
    assert unfair == _brute_unfair(net, spec, lo, hi)


def test_encode_z3_names_and_drops_like_the_chain_encoder():
    """On a chain the IR encoding names neurons ``{prefix}{layer}_{j}`` and drops dead ones."""
    import z3
    net = AffineReluNet((torch.tensor([[1.0], [-1.0]], dtype=torch.float64), torch.tensor([[1.0, 1.0]], dtype=torch.float64)),
                        (torch.tensor([0.0, -5.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)), (1,))
    region = InputRegion(np.zeros(1), np.ones(1))
    _, terms, cons = input_variables(region)
    enc = encode_z3(build_graph(net), terms, [(np.array([0.0, -5.0]), np.array([1.0, -4.0]))], prefix="q")
    assert enc.stats == {"inactive": 1, "active": 1, "unstable": 0}
    assert [str(v) for v in enc.pre_vars[build_graph(net).relu_nodes[0]] if v is not None] == ["q0_0"]
    s = z3.Solver()
    s.add(cons + enc.constraints + [enc.outputs[0] > 1])
    assert s.check() == z3.unsat
