"""The float64 rounding margin of the bound passes (certprune.bounds.crown, "Rounding"): every
bound the ``exact`` policy decides with encloses the exact real-arithmetic values, checked with
exact rational arithmetic (fractions) where float64 itself would mislead (large cancelling
weights), with sampled points on normal nets, and the margin is negligible on ACAS Xu / mnist_fc.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

import certprune
from certprune.bounds import alpha as alpha_mod
from certprune.bounds import crown, engine
from certprune.bounds.ibp import ibp
from certprune.graph import build_graph
from certprune.graph.ops_linear import Linear, Scale
from certprune.graph.ops_merge import AddSub, Concat
from certprune.graph.ops_shape import Select, Structural
from certprune.graph.relu import ReLU
from certprune.specs import InputRegion, LinearConstraints, Property
from tests import graph_nets

OFF = dict(attack_restarts=0, attack_samples=0, attack_corners=0, attack_odi_restarts=0)


def cancelling(seed: int = 5, d: int = 4, h: int = 16, bias: float = 1e6) -> nn.Sequential:
    """y = 1e4 (w . relu(V x + b) - w_P . relu(V_P x + b_P)) with the second half the first one's
    neurons permuted: identically 0 in real arithmetic (every ReLU active on [-1, 1]^d), while
    float64 sums the 1e15-sized terms in different orders (forward values up to ~3; on main the
    CROWN bound alone claimed y >= 0.59)."""
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(h, d, generator=g, dtype=torch.float64) * 1e5
    b = torch.full((h,), bias, dtype=torch.float64)
    w = torch.randn(h, generator=g, dtype=torch.float64) * 1e5
    P = torch.randperm(h, generator=g)
    m = nn.Sequential(nn.Linear(d, 2 * h), nn.ReLU(), nn.Linear(2 * h, 1)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.cat([V, V[P]]))
        m[0].bias.copy_(torch.cat([b, b[P]]))
        m[2].weight.copy_(torch.cat([w, -w[P]]).unsqueeze(0) * 1e4)
        m[2].bias.zero_()
    return m


def exact_values(graph, x: np.ndarray) -> list[np.ndarray]:
    """Every node's exact value (object arrays of Fractions, (K, *shape)) at the points ``x``
    (K, n_in), for graphs of Linear, ReLU, Add/Sub, Concat and shape operators (1-D values)."""
    def frac(t):
        return np.vectorize(Fraction, otypes=[object])(t.detach().numpy().astype(np.float64))
    vals = [frac(torch.as_tensor(x))]
    for node in graph.nodes[1:]:
        op, ins = node.op, [vals[j] for j in node.inputs]
        if isinstance(op, Linear):
            v = ins[0] @ frac(op.weight).T
            vals.append(v if op.bias is None else v + frac(op.bias))
        elif isinstance(op, ReLU):
            vals.append(np.where(ins[0] > 0, ins[0], Fraction(0)))
        elif isinstance(op, Scale):
            v = ins[0] if op.scale is None else ins[0] * frac(torch.broadcast_to(op.scale, node.shape))
            vals.append(v if op.shift is None else v + frac(torch.broadcast_to(op.shift, node.shape)))
        elif isinstance(op, AddSub):
            vals.append(ins[0] + ins[1] if op.sign > 0 else ins[0] - ins[1])
        elif isinstance(op, Concat):
            vals.append(np.concatenate(ins, axis=op.dim))
        elif isinstance(op, Select):
            vals.append(ins[0].reshape(len(ins[0]), -1)[:, op.index.numpy()].reshape(len(ins[0]), *node.shape))
        elif isinstance(op, Structural):
            vals.append(ins[0].reshape(len(ins[0]), *node.shape))
        else:
            raise NotImplementedError(op)
    return vals


def _inside(b, v, box: np.ndarray | None = None) -> bool:
    """Exact values ``v`` (K, ...) inside the float bounds ``b`` ((N, ...) pairs; point k in box
    ``box[k]`` when given, else N = 1)."""
    lo = b[0].detach().numpy().reshape(len(b[0]), -1)
    hi = b[1].detach().numpy().reshape(len(b[1]), -1)
    v = v.reshape(len(v), -1)
    k = np.zeros(len(v), dtype=int) if box is None else box
    for p in range(len(v)):
        for j in range(v.shape[1]):
            if not (Fraction(float(lo[k[p], j])) <= v[p, j] <= Fraction(float(hi[k[p], j]))):
                return False
    return True


def test_cancelling_net_bounds_contain_the_exact_zero():
    m = cancelling()
    lo, hi = -np.ones(4), np.ones(4)
    for method in ("ibp", "crown", "alpha-crown"):
        b = certprune.compute_bounds(m, lo, hi, method=method)
        assert b.lower.item() <= 0.0 <= b.upper.item(), method


def test_cancelling_net_is_not_certified_by_the_bound_pass():
    """Main certified ``y > 0.29`` here with attacks off (y is identically 0)."""
    m = cancelling()
    prop = Property(InputRegion(-np.ones(4), np.ones(4)), (LinearConstraints([[1.0]], [0.29]),))
    r = certprune.verify(m, prop, timeout=10, config=OFF)
    assert r.verdict.name != "CERTIFIED"


def _chain(sizes, seed, scale):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1]).double()
        with torch.no_grad():
            lin.weight.mul_(scale)
            lin.bias.mul_(scale)
        layers += [lin, nn.ReLU()] if i < len(sizes) - 2 else [lin]
    return nn.Sequential(*layers)


def _nets():
    yield "cancelling", build_graph(cancelling(), (4,)), 4
    # [9, 12, 30, 1] / [9, 24, 10, 1]: the forward pass's fused first step with many outputs (the
    # grouped unstable-neuron products) and few (per-box weights), Linear.forward_linear_relaxed
    for sizes in ([3, 5, 1], [4, 8, 8, 2], [2, 16, 16, 3], [9, 12, 30, 1], [9, 24, 10, 1]):
        for scale in (1.0, 1e5):
            yield f"chain{sizes}x{scale:g}", build_graph(_chain(sizes, len(sizes), scale), (sizes[0],)), sizes[0]
    for name, shape in (("residual_mlp", (6,)), ("residual_relu_add", (6,)), ("concat_branches", (5,)),
                        ("twin_mlp", (4,))):
        g = build_graph(getattr(graph_nets, name)(seed=1), shape)
        for n in g.nodes[1:]:  # large weights: rounding of 1e4-sized terms
            if isinstance(n.op, Linear):
                n.op.__init__(n.op.weight * 1e4, None if n.op.bias is None else n.op.bias * 1e4)
        yield name, g, g.input_dim


NETS = list(_nets())


@pytest.mark.parametrize("name,graph,d", NETS, ids=[n for n, _, _ in NETS])
def test_exact_values_lie_inside_every_rigorous_bound(name, graph, d):
    """24 sub-boxes of [-1, 1]^d (so the two-product step of ``node_crown`` runs), 10 points each
    (corners among them) evaluated exactly: inside every node's bounds of the CROWN
    intermediate pass (with / without interval intersection), the output CROWN and
    alpha-CROWN bounds and the interval bounds."""
    rng = np.random.default_rng(0)
    N, K = 24, 10
    c = rng.uniform(-1, 1, (N, d))
    r = rng.uniform(0, 0.6, (N, d)) * (rng.random((N, 1)) < 0.8)
    lo, hi = torch.as_tensor(np.clip(c - r, -1, 1)), torch.as_tensor(np.clip(c + r, -1, 1))
    t = rng.random((N, K, d))
    t[:, :2] = rng.integers(0, 2, (N, 2, d))  # corners
    pts = np.clip(lo.numpy()[:, None] + t * (hi - lo).numpy()[:, None], lo.numpy()[:, None], hi.numpy()[:, None])
    pts = pts.reshape(N * K, d)
    box = np.repeat(np.arange(N), K)
    vals = exact_values(graph, pts)
    for intersect in (False, True):
        st = crown.intermediate(graph, lo, hi, intersect=intersect, sparse=intersect)
        for i, b in st.bounds.items():
            assert _inside(b, vals[i], box), (intersect, i)
        assert _inside(crown.output_bounds(graph, st), vals[graph.output], box)
        assert _inside(engine.alpha_mod.alpha_output_bounds(graph, st, iterations=5), vals[graph.output], box)
    ib = ibp(graph, lo, hi)
    for i in range(len(graph.nodes)):
        assert _inside(ib[i], vals[i], box), i


def test_per_box_rows_and_splits_with_beta_are_rigorous():
    """``rows="unstable"`` on 600 boxes (per-box spec rows, ``box_rows_crown``) and branch and
    bound domain bounds with split ReLUs and alpha/beta optimisation, on a 1e5-scaled net: the
    exact value at a point of each box (that satisfies the box's splits) is inside / above."""
    g = build_graph(_chain([3, 12, 12, 2], 7, 1e5), (3,))
    rng = np.random.default_rng(1)
    N = 600
    c = rng.uniform(-1, 1, (N, 3))
    r = 0.05 * (rng.random((N, 1)) < 0.7)  # point boxes among them: the bound meets the value
    lo, hi = torch.as_tensor(c - r), torch.as_tensor(c + r)
    x = np.clip(rng.uniform(lo.numpy(), hi.numpy()), lo.numpy(), hi.numpy())
    vals = exact_values(g, x)
    st = crown.intermediate(g, lo, hi, rows="unstable")
    assert any(len(torch.nonzero((st.pre[i][0] < 0) & (st.pre[i][1] > 0))) for i in g.relu_nodes)
    for i, b in st.bounds.items():
        assert _inside(b, vals[i], np.arange(N)), i
    # splits that the point x of each box satisfies: its own sign of some neurons of each layer
    splits = []
    for i in g.relu_nodes:
        z = vals[g.nodes[i].inputs[0]]
        sign = np.where(z >= 0, 1, -1).astype(np.int8) * (rng.random(z.shape) < 0.3)
        splits.append(torch.as_tensor(sign))
    C = torch.tensor([[1.0, -1.0], [-1.0, 0.0]], dtype=torch.float64)
    cc = torch.tensor([0.5, -0.25], dtype=torch.float64)
    db = engine.domain_bounds(g, lo[:64], hi[:64], [s[:64] for s in splits], C, cc, iters=5)
    y = vals[g.output][:64]
    spec = y @ np.vectorize(Fraction, otypes=[object])(C.numpy()).T + np.vectorize(Fraction, otypes=[object])(cc.numpy())
    for k in range(64):
        assert not bool(db.infeasible[k])
        for j in range(2):
            assert Fraction(float(db.lower[k, j])) <= spec[k, j]


def test_windows_and_dense_passes_are_rigorous_on_a_conv_residual_net():
    """Patches mode and the dense pass on a strided-conv residual net with weights x100: 10^4
    sampled points inside both (float64 forward: the bounds' gap is far above its rounding), and
    the two margins agree closely."""
    g = build_graph(graph_nets.conv_residual(seed=2), (1, 8, 8))
    for n in g.nodes[1:]:
        w = getattr(n.op, "weight", None)
        if w is not None and hasattr(n.op, "abs_weight"):
            n.op.weight = w * 100
            n.op.abs_weight = n.op.weight.abs()
            if getattr(n.op, "bias", None) is not None:
                n.op.bias = n.op.bias * 100
            if getattr(n.op, "augmented", None) is not None:
                n.op.augmented = torch.cat([n.op.weight, n.op.bias.unsqueeze(1)], 1)
    torch.manual_seed(0)
    x0 = torch.rand(1, g.input_dim, dtype=torch.float64)
    lo, hi = x0 - 0.02, x0 + 0.02
    st = crown.intermediate(g, lo, hi)
    conv_nodes = [i for i in g.relu_nodes if len(g.nodes[g.nodes[i].inputs[0]].shape) == 3]
    assert conv_nodes
    pts = lo + (hi - lo) * torch.rand(10_000, g.input_dim, dtype=torch.float64)
    with torch.no_grad():
        vals = g.forward(pts, keep=True)
    for i in conv_nodes:
        p = g.nodes[i].inputs[0]
        if crown.interval_exact(g, p):
            continue
        wl, wu = crown.node_crown(g, p, st, use_windows=True)
        dl, du = crown.node_crown(g, p, st, use_windows=False)
        v = vals[p].reshape(len(pts), -1)
        assert bool((v >= wl).all() and (v <= wu).all() and (v >= dl).all() and (v <= du).all())
        assert torch.allclose(wl, dl, rtol=1e-9, atol=1e-9) and torch.allclose(wu, du, rtol=1e-9, atol=1e-9)


def _margin_off(monkeypatch):
    monkeypatch.setattr(crown, "ROUNDING_MARGIN", False)


@pytest.mark.parametrize("which", ["acasxu", "mnist"])
def test_margin_is_negligible_on_benchmark_nets(shared_data, monkeypatch, which):
    """The rigorous bounds differ from the unwidened ones by < 1e-9 (1 + |b|) (intermediate and
    output, CROWN with intersection, as verify's root pass)."""
    if which == "acasxu":
        model = certprune.load_model(shared_data / "vnncomp/acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx")
        lo = torch.tensor([[-0.3, -0.01, -0.5, 0.2, 0.1]], dtype=torch.float64)
        hi = torch.tensor([[0.3, 0.01, 0.5, 0.45, 0.4]], dtype=torch.float64)
    else:
        model = certprune.load_model(shared_data / "vnncomp/mnist_fc/onnx/mnist-net_256x4.onnx.gz")
        torch.manual_seed(0)
        x = torch.rand(1, 784, dtype=torch.float64)
        lo, hi = (x - 0.03).clamp(0, 1), (x + 0.03).clamp(0, 1)
    from certprune.verifiers.bounds import graph_of
    g = graph_of(model, tuple(model.info.input_shape))

    def run():
        st = crown.intermediate(g, lo, hi, intersect=True, sparse=True)
        return st, crown.output_bounds(g, st)
    st1, out1 = run()
    _margin_off(monkeypatch)
    st0, out0 = run()
    for b1, b0 in [(st1.bounds[i], st0.bounds[i]) for i in st0.bounds] + [(out1, out0)]:
        for x1, x0, sign in ((b1[0], b0[0], -1), (b1[1], b0[1], 1)):
            d = (x1 - x0) * sign  # >= 0: widened (or equal)
            assert bool((d >= -1e-9 * (1 + x0.abs())).all())
            assert bool((d <= 1e-9 * (1 + x0.abs())).all())


def test_add_rounded_stays_below_the_exact_sum():
    rng = np.random.default_rng(3)
    a = torch.as_tensor(rng.normal(size=2000) * 10.0 ** rng.integers(-5, 12, 2000))
    c = torch.as_tensor(rng.normal(size=2000) * 10.0 ** rng.integers(-5, 12, 2000))
    s = crown.add_rounded(a, c)
    for x, y, z in zip(a.tolist(), c.tolist(), s.tolist()):
        assert Fraction(z) <= Fraction(x) + Fraction(y)


def _leaf_args(graph, lo, hi, splits=None):
    st = crown.intermediate(graph, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None])
    pre = [tuple(t[0].reshape(-1).numpy().copy() for t in st.pre[i]) for i in graph.relu_nodes]
    if splits is None:
        splits = [np.zeros(len(l), np.int8) for l, _ in pre]
    return pre, splits


def test_lp_leaf_does_not_trust_the_float64_affine_piece():
    """The cancelling net's affine piece composes to y ~ -1 + 0.06 x in float64 (y is 0): main
    refuted the true disjunct ``-y <= 0.5`` (y >= -0.5) from it; the rigorous certificate does not.
    Biases 1e7 (terms ~1e16, float64 spacing 2): with 1e6 the composition's error is 0.25-0.75
    depending on the BLAS kernel's summation order, 0.5 on an AVX-512 machine, and the trap was
    not armed there."""
    from certprune.verifiers.lp_leaf import affine_pieces, solve_leaf
    g = build_graph(cancelling(bias=1e7), (4,))
    lo, hi = -np.ones(4), np.ones(4)
    pre, sp = _leaf_args(g, lo, hi)
    assert all(not ((l < 0) & (u > 0)).any() for l, u in pre)
    H, h, _, _ = affine_pieces(g, pre, sp)
    assert np.abs(h).max() > 0.5  # the float64 composition is far off
    out = solve_leaf(g, lo, hi, pre, sp, np.array([[-1.0]]), np.array([0.5]), 1e-7, 10)
    assert out.status != "refuted"


def test_lp_leaf_certificate_matches_the_float_bound_on_normal_nets():
    """On normal nets the rigorous dual certificate (with split rows) refutes what the float64
    piece refutes and agrees with it to 1e-9; each refutation is true at 2,000 sampled points."""
    from certprune.verifiers.lp_leaf import _pieces, dual_certificate, solve_leaf
    rng = np.random.default_rng(4)
    done = 0
    for seed in range(12):
        g = build_graph(_chain([3, 6, 6, 2], seed, 1.0), (3,))
        c = rng.uniform(-1, 1, 3)
        lo, hi = c - 0.01, c + 0.01
        pre, _ = _leaf_args(g, lo, hi)
        if any(((l < 0) & (u > 0)).any() for l, u in pre):
            continue
        # split each stable neuron's sign with probability 1/2 (agreeing with its bounds)
        sp = [np.where(l >= 0, 1, -1).astype(np.int8) * (rng.random(len(l)) < 0.5) for l, u in pre]
        x = rng.uniform(lo, hi, (2000, 3))
        with torch.no_grad():
            y = g.forward(torch.as_tensor(x)).numpy()
        A = rng.normal(size=(2, 2))
        b = (y @ A.T).min(0) - 0.05  # A y <= b nowhere: refutable
        out = solve_leaf(g, lo, hi, pre, sp, A, b, 1e-7, 10)
        assert out.status == "refuted"
        assert ((y @ A.T - b) > 0).any(1).all()
        H, h, P, p, f = _pieces(g, pre, sp)
        assert len(f) == sum(int((s != 0).sum()) for s in sp)
        done += 1
    assert done >= 3


def test_refine_dual_bound_slack_is_at_least_the_rigorous_gamma(monkeypatch):
    """With the fixed relative slack set to 0, ``dual_bound`` still subtracts 2 gamma_k (1 + scale)."""
    from certprune.semantics import gamma64
    from certprune.verifiers import refine
    monkeypatch.setattr(refine, "SLACK", 0.0)
    n = 50
    cost, R = np.ones(1), np.zeros((n, 1))
    v = refine.dual_bound(cost, R, np.zeros(n), np.zeros(n), np.zeros(1), np.ones(1), np.zeros(n))
    assert v <= -2 * gamma64(n + 1 + 8) * 1.5  # min cost v = 0; scale = 1


def test_float_chord_misses_relu_by_at_most_three_ulps_of_the_magnitude():
    """The constant of ``ReLU.relaxation_residual``: with ``s = fl(u / fl(u - l))``, ``t = -fl(s l)``,
    exactly ``relu(z) <= s z + t + 3.01 u max(|l|, |u|)`` at both ends (hence on [l, u])."""
    from certprune.graph.relu import relu_relaxation
    from certprune.semantics import U64
    rng = np.random.default_rng(5)
    mag = 10.0 ** rng.uniform(-8, 8, (2, 4000))
    l = torch.as_tensor(-mag[0] * rng.random(4000))
    u = torch.as_tensor(mag[1] * rng.random(4000))
    _, s, t = relu_relaxation(l, u)
    for li, ui, si, ti in zip(l.tolist(), u.tolist(), s.tolist(), t.tolist()):
        slack = Fraction(3.01) * Fraction(U64) * Fraction(max(-li, ui))
        for z in (li, ui):
            assert Fraction(si) * Fraction(z) + Fraction(ti) + slack >= max(Fraction(z), Fraction(0))
        assert 0 <= si <= 1


# --- the forward symbolic pass and the fairness twin bounds (certprune.bounds.forward, "Rounding") ---

def _boxes_and_points(d: int, seed: int = 0, N: int = 24, K: int = 10):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, (N, d))
    r = rng.uniform(0, 0.6, (N, d)) * (rng.random((N, 1)) < 0.8)  # point boxes among them
    lo, hi = torch.as_tensor(np.clip(c - r, -1, 1)), torch.as_tensor(np.clip(c + r, -1, 1))
    t = rng.random((N, K, d))
    t[:, :2] = rng.integers(0, 2, (N, 2, d))  # corners
    pts = np.clip(lo.numpy()[:, None] + t * (hi - lo).numpy()[:, None], lo.numpy()[:, None], hi.numpy()[:, None])
    return lo, hi, pts.reshape(N * K, d), np.repeat(np.arange(N), K)


@pytest.mark.parametrize("name,graph,d", NETS, ids=[n for n, _, _ in NETS])
def test_exact_values_lie_inside_the_forward_bounds(name, graph, d):
    """Every node's forward bounds (with / without interval intersection), the output's with a
    spec matrix (folded into the last Linear) and a CROWN pass on the forward relaxations
    (``Forward.state``) contain the exact values; before the forward pass carried its rounding
    bound, point boxes (and the cancelling net everywhere) gave bounds that missed them."""
    from certprune.bounds.forward import forward_bounds, forward_pass
    lo, hi, pts, box = _boxes_and_points(d)
    vals = exact_values(graph, pts)
    m = graph.output_dim
    C = torch.as_tensor(np.random.default_rng(1).normal(size=(2, m)) * 1e3)
    Cf = np.vectorize(Fraction, otypes=[object])(C.numpy())
    for intersect in (False, True):
        res = forward_pass(graph, lo, hi, every_node=True, intersect_ibp=intersect)
        for i, b in res.bounds.items():
            assert _inside(b, vals[i], box), (intersect, i)
        (yl, yu), _ = forward_bounds(graph, lo, hi, intersect_ibp=intersect)
        assert _inside((yl, yu), vals[graph.output], box)
        (cl, cu), res = forward_bounds(graph, lo, hi, C, intersect_ibp=intersect)
        assert _inside((cl, cu), vals[graph.output].reshape(len(pts), -1) @ Cf.T, box)
        assert _inside(crown.output_bounds(graph, res.state()), vals[graph.output], box)


def _integer_twin_boxes(layout, N, rng, start, grow, grown, top, values):
    """N integer twin boxes over 4 features with the protected feature 2 at ``values[0]`` and its
    partner at ``values[1]``: corners below ``start``, each box grown by up to ``grow - 1`` in each
    feature with probability ``grown`` (else a point box), clipped at ``top`` when given."""
    zlo = np.zeros((N, layout.dz))
    zlo[:, :4] = rng.integers(0, start, (N, 4))
    zhi = zlo.copy()
    zhi[:, :4] += rng.integers(0, grow, (N, 4)) * (rng.random((N, 1)) < grown)
    if top is not None:
        zhi[:, :4] = np.minimum(zhi[:, :4], top)
    zlo[:, 2], zhi[:, 2] = values[0], values[0]
    zlo[:, 4], zhi[:, 4] = values[1], values[1]
    return zlo, zhi


def _cancelling_credit_net(seed: int = 5, d: int = 4, h: int = 16):
    """The cancelling net as a one-logit fairness model (float32 weights): 0 in real arithmetic
    on every input (all ReLUs active on [0, 3]^d: biases 1e6 against weights 1e5)."""
    from certprune.verifiers.affine import AffineReluNet
    m = cancelling(seed, d, h)
    ws = tuple(layer.weight.detach().float().double() for layer in (m[0], m[2]))
    bs = tuple(layer.bias.detach().float().double() for layer in (m[0], m[2]))
    ws = (ws[0] * 0.1, ws[1])  # inputs up to 3: keep every ReLU active
    return AffineReluNet(ws, bs, (d,))


def test_twin_bounds_contain_the_exact_zero_of_a_cancelling_net():
    """y = y' = 0 identically in real arithmetic, while float64 sums 1e15-sized terms in
    different orders: y, y' and y - y' bounds contain 0 on every box, and no box is closed as
    'both decisions the same' by a sign it does not have (before: the forward and pair-
    difference bounds of y - y' excluded the exact 0 on point boxes)."""
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.twin import twin_layout
    from certprune.verifiers.twin_bounds import twin_bounds
    net = _cancelling_credit_net()
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [3, 3, 1, 3], ("p",))
    layout = twin_layout(spec)
    zlo, zhi = _integer_twin_boxes(layout, 64, np.random.default_rng(3), start=4, grow=2, grown=0.5,
                                   top=3, values=(0, 1))
    tb = twin_bounds(net, layout, torch.as_tensor(zlo), torch.as_tensor(zhi))
    for lo_, hi_ in (tb.y, tb.yp, tb.diff):
        assert bool((lo_ <= 0).all()) and bool((hi_ >= 0).all())


def test_twin_bounds_contain_exact_values_on_large_weights():
    """The twin bounds of a 1e4-scaled three-layer one-logit net contain the exact y, y' and
    y - y' (Fractions) at integer points and corners of 40 boxes."""
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.affine import AffineReluNet
    from certprune.verifiers.twin import twin_layout
    from certprune.verifiers.twin_bounds import twin_bounds
    g = torch.Generator().manual_seed(11)
    dims = [4, 10, 10, 1]
    ws = tuple((torch.randn(o, i, generator=g) * 1e4).float().double() for i, o in zip(dims, dims[1:]))
    bs = tuple((torch.randn(o, generator=g) * 1e4).float().double() for o in dims[1:])
    net = AffineReluNet(ws, bs, (4,))
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [5, 4, 2, 6], ("p",))
    layout = twin_layout(spec)
    rng = np.random.default_rng(4)
    N = 40
    zlo, zhi = _integer_twin_boxes(layout, N, rng, start=3, grow=3, grown=0.7, top=None, values=(0, 2))
    tb = twin_bounds(net, layout, torch.as_tensor(zlo), torch.as_tensor(zhi))
    frac = np.vectorize(Fraction, otypes=[object])

    def exact(x):
        h = frac(x)
        for k, (w, b) in enumerate(zip(net.weights, net.biases)):
            h = h @ frac(w.numpy()).T + frac(b.numpy())
            if k < len(net.weights) - 1:
                h = np.where(h > 0, h, Fraction(0))
        return h[:, 0]
    for k in range(N):
        z = np.stack([zlo[k], zhi[k]] + [rng.integers(zlo[k], zhi[k] + 1) for _ in range(6)]).astype(np.float64)
        x, xp = layout.split(z)
        y, yp = exact(x), exact(xp)
        for v, (l, u) in ((y, tb.y), (yp, tb.yp), (y - yp, tb.diff)):
            assert all(Fraction(float(l[k])) <= t <= Fraction(float(u[k])) for t in v), k
