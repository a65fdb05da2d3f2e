"""The twin as a graph (``twin.twin_graph``) and the fairness bounds over it (``twin_bounds``):
the graph computes [s(P z), s(P' z)] (the model run on x and on x'); sampled points (10^4 per
box) lie inside y, y', y - y' bounds and every node's forward bounds; the float32 margin tau
encloses float32 runs; values equal the former hand-written twin pass (recorded)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certprune.bounds.forward import forward_pass
from certprune.fairness_spec import FairnessSpec
from certprune.semantics import Semantics
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.twin import twin_graph, twin_layout
from certprune.verifiers.twin_bounds import twin_bounds

N = 10_000


def _net(seed: int, n: int = 4, h: int = 12) -> AffineReluNet:
    g = torch.Generator().manual_seed(seed)
    dims = [n, h, h, 1]
    ws = tuple((torch.randn(o, i, generator=g) / i ** 0.5).float().double() for i, o in zip(dims, dims[1:]))
    bs = tuple((torch.randn(o, generator=g) * 0.1).float().double() for o in dims[1:])
    return AffineReluNet(ws, bs, (n,))


SPECS = [FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [5, 4, 2, 6], ("p",)),
         FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [5, 4, 2, 6], ("p", "b"), {"c": 2})]


def _box(spec, layout, seed):
    rng = np.random.default_rng(seed)
    zlo, zhi = np.zeros(layout.dz), np.zeros(layout.dz)
    zlo[:layout.n] = rng.integers(0, 3, layout.n)
    zhi[:layout.n] = zlo[:layout.n] + rng.integers(1, 3, layout.n)
    for j, i in enumerate(layout.protected):
        zlo[i] = zhi[i] = 0
        zlo[layout.n + j] = zhi[layout.n + j] = 1
    off = layout.n + len(layout.protected)
    for j, d in enumerate(layout.deltas):
        zlo[off + j], zhi[off + j] = -d, d
    return torch.from_numpy(zlo)[None], torch.from_numpy(zhi)[None]


def _points(zlo, zhi, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(N, zlo.shape[1], generator=g, dtype=torch.float64)
    u[:64] = (u[:64] > 0.5).double()
    return zlo + u * (zhi - zlo)


@pytest.mark.parametrize("spec", SPECS, ids=["plain", "relaxed"])
def test_twin_graph_equals_the_model_on_both_copies(spec):
    layout = twin_layout(spec)
    net = _net(0)
    tg = twin_graph(net, layout)
    z = torch.randn(50, layout.dz, dtype=torch.float64)
    P, Pp = (torch.from_numpy(m) for m in (layout.P, layout.Pp))
    want = torch.cat([net.forward(z @ P.T), net.forward(z @ Pp.T)], 1)
    torch.testing.assert_close(tg.graph.forward(z), want, rtol=0, atol=1e-12)
    vals = tg.graph.forward(z, keep=True)
    torch.testing.assert_close(vals[tg.x], z @ P.T)
    torch.testing.assert_close(vals[tg.xp], z @ Pp.T)
    assert len(tg.relus) == 2 and all(tg.graph.nodes[a].op is tg.graph.nodes[b].op for a, b in tg.pairs[1:])


@pytest.mark.parametrize("spec", SPECS, ids=["plain", "relaxed"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_points_inside_twin_bounds(spec, seed):
    layout = twin_layout(spec)
    net = _net(seed)
    tg = twin_graph(net, layout)
    zlo, zhi = _box(spec, layout, seed)
    tb = twin_bounds(net, layout, zlo, zhi, keep_pre=True)
    z = _points(zlo, zhi, seed)
    vals = tg.graph.forward(z, keep=True)
    y, yp = vals[tg.outs[0]][:, 0], vals[tg.outs[1]][:, 0]
    eps = 1e-9
    for v, (l, u) in ((y, tb.y), (yp, tb.yp), (y - yp, tb.diff)):
        assert (v >= l - eps).all() and (v <= u + eps).all()
    res = forward_pass(tg.graph, zlo, zhi, every_node=True)
    for t in range(1, len(tg.graph.nodes)):
        v = vals[t].reshape(N, -1)
        assert (v >= res.bounds[t][0].reshape(1, -1) - eps).all() and (v <= res.bounds[t][1].reshape(1, -1) + eps).all()
    for k, (a, b) in enumerate(tg.relus):  # pre: (2, h) per ReLU layer, copy of x then of x'
        pa, pb = vals[tg.graph.nodes[a].inputs[0]], vals[tg.graph.nodes[b].inputs[0]]
        assert (pa >= tb.pre[k][0][0] - eps).all() and (pb <= tb.pre[k][1][1] + eps).all()
    # the copies are related through z: y - y' is bounded tighter than y's and y''s own intervals
    assert float(tb.diff[1] - tb.diff[0]) < float((tb.y[1] - tb.y[0]) + (tb.yp[1] - tb.yp[0])) - 1e-6


def test_tau_encloses_float32_execution_of_both_copies():
    spec = SPECS[1]
    layout = twin_layout(spec)
    net = _net(3, h=40)
    zlo, zhi = _box(spec, layout, 3)
    tb = twin_bounds(net, layout, zlo, zhi)
    z = _points(zlo, zhi, 0).round()  # integer individuals, as the audit runs them
    x, xp = (torch.from_numpy(a) for a in layout.split(z.numpy()))
    for v, tau in ((x, tb.tau[0]), (xp, tb.tau[1])):
        h32, h = v.float(), v
        for k, (w, b) in enumerate(zip(net.weights, net.biases)):
            h32, h = h32 @ w.float().T + b.float(), h @ w.T + b
            if k < net.num_layers - 1:
                h32, h = h32.clamp(min=0), h.clamp(min=0)
        assert ((h32.double() - h).abs() <= tau).all()


def test_twin_bounds_equal_the_former_hand_written_pass():
    """Recorded from the deleted hand-written twin pass (twin_bounds before the graph form)."""
    W = ([[1.0, -2.0, 0.5, 1.0], [0.5, 1.5, -1.0, 0.25], [-1.0, 1.0, 2.0, -0.5]],
         [[1.0, -1.0, 2.0], [-0.5, 1.0, 1.0]], [[1.0, -2.0]])
    B = ([0.5, -0.25, 0.0], [0.0, -1.0], [0.25])
    net = AffineReluNet(tuple(torch.tensor(w, dtype=torch.float64) for w in W),
                        tuple(torch.tensor(b, dtype=torch.float64) for b in B), (4,))
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [3, 3, 1, 3], ("p",), {"c": 1})
    zlo = torch.tensor([[0.0, 1.0, 0.0, 1.0, 1.0, -1.0]], dtype=torch.float64)
    zhi = torch.tensor([[2.0, 2.0, 0.0, 3.0, 1.0, 1.0]], dtype=torch.float64)
    tb = twin_bounds(net, twin_layout(spec), zlo, zhi)
    want = {"y": (-9.249999999999998, 2.0908239700374542), "yp": (-9.058823529411764, 6.266871165644171),
            "diff": (-8.846755745034834, 4.0), "tau": (3.196400969233463e-05, 4.3303799499722525e-05)}
    for k, (a, b) in want.items():
        got = getattr(tb, k)
        assert float(got[0][0]) == pytest.approx(a, rel=1e-12, abs=1e-15) and float(got[1][0]) == pytest.approx(b, rel=1e-12)
    assert not bool(tb.closed(Semantics.EXACT)[0])


def _boxes(layout, seed, n=600):
    """``n`` random twin boxes: widths 0..3 per free feature, random protected values (0..2)."""
    rng = np.random.default_rng(seed)
    zlo, zhi = np.zeros((n, layout.dz)), np.zeros((n, layout.dz))
    zlo[:, :layout.n] = rng.integers(0, 4, (n, layout.n))
    zhi[:, :layout.n] = zlo[:, :layout.n] + rng.integers(0, 4, (n, layout.n)) * (rng.random((n, 1)) < 0.7)
    for j, i in enumerate(layout.protected):
        v, w = rng.integers(0, 3, n), rng.integers(0, 3, n)
        zlo[:, i] = zhi[:, i] = v
        zlo[:, layout.n + j] = zhi[:, layout.n + j] = w
    off = layout.n + len(layout.protected)
    for j, d in enumerate(layout.deltas):
        zlo[:, off + j], zhi[:, off + j] = -d, d
    return torch.from_numpy(zlo), torch.from_numpy(zhi)


@pytest.mark.parametrize("spec", SPECS, ids=["plain", "relaxed"])
@pytest.mark.parametrize("sem", [Semantics.FLOAT32, Semantics.EXACT], ids=["float32", "exact"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_skipping_crown_on_forward_closed_boxes_keeps_every_verdict(spec, sem, seed):
    """``skip_closed``: CROWN runs only where the forward bounds leave a box open; the closed mask
    and every proven flip equal the full pass', and the open boxes get the full pass' bounds."""
    layout = twin_layout(spec)
    net = _net(seed, h=16)
    zlo, zhi = _boxes(layout, seed)
    full = twin_bounds(net, layout, zlo, zhi)
    fast = twin_bounds(net, layout, zlo, zhi, skip_closed=sem)
    closed = full.closed(sem)
    assert torch.equal(fast.closed(sem), closed)
    assert 0 < int(closed.sum()) < len(closed)  # both paths exercised
    (a, b), (c, d) = full.signs(sem), fast.signs(sem)
    assert torch.equal(a * b == -1, c * d == -1)  # proven flips
    opn = ~closed
    for f, s in ((full.y, fast.y), (full.yp, fast.yp), (full.diff, fast.diff)):
        for k in (0, 1):
            torch.testing.assert_close(f[k][opn], s[k][opn], rtol=0, atol=1e-12)  # batch-size rounding only
            # skipped boxes: the forward bounds, never tighter than the full pass' (sound)
            gap = (f[k] - s[k] if k == 0 else s[k] - f[k])[closed]
            assert (gap >= -1e-12).all()
    assert torch.equal(full.score, fast.score) and torch.equal(full.unstable, fast.unstable)


def test_point_logits_and_twin_graphs_share_one_decision_graph():
    """One weak cache of the decision graph per (net, last_abs): every twin graph of the net is
    built on the graph the point logits run on (it used to be built twice)."""
    from certprune.verifiers.twin_bounds import cached_twin, decision_graph
    net = _net(3)
    la = (net.weights[-1].abs(), net.biases[-1].abs())
    g = decision_graph(net, la)
    assert decision_graph(net, la) is g and decision_graph(net) is not g
    tg = cached_twin(net, twin_layout(SPECS[0]), la)
    assert tg.model is g and cached_twin(net, twin_layout(SPECS[1]), la).model is g
    assert g.nodes[g.output].op.rounding_abs is la


@pytest.mark.parametrize("spec", SPECS, ids=["plain", "relaxed"])
def test_one_relu_layer_twin_skips_crown_with_the_same_bounds(spec):
    """A one-ReLU-layer model gets no backward CROWN pass (its pre-activations are exact, so
    CROWN returns the forward functions): y and y' equal a CROWN pass run here on the same
    relaxations (float64 rounding only), y - y' is never looser (the pair differences may
    tighten it further), and the bounds enclose sampled points."""
    from certprune.bounds import crown
    from certprune.verifiers.twin_bounds import _SPECS, cached_twin
    layout = twin_layout(spec)
    g_ = torch.Generator().manual_seed(4)
    net = AffineReluNet(((torch.randn(30, 4, generator=g_) / 2).float().double(), torch.randn(1, 30, generator=g_).float().double() / 5),
                        ((torch.randn(30, generator=g_) * 0.3).float().double(), torch.zeros(1, dtype=torch.float64)), (4,))
    zlo, zhi = _boxes(layout, 4)
    tb = twin_bounds(net, layout, zlo, zhi)
    tg = cached_twin(net, layout)
    assert len(tg.relus) == 1
    res = forward_pass(tg.graph, zlo, zhi, keep=(tg.graph.output,))
    cr = crown.backward(tg.graph, tg.graph.output, _SPECS, res.state()).lower.expand(len(zlo), 6)
    for got, c in ((tb.y[0], cr[:, 0]), (-tb.y[1], cr[:, 1]), (tb.yp[0], cr[:, 2]), (-tb.yp[1], cr[:, 3]),
                   (tb.diff[0], cr[:, 4]), (-tb.diff[1], cr[:, 5])):
        assert (got >= c - 1e-9).all()  # CROWN is never tighter (skipping it loses nothing)
    torch.testing.assert_close(tb.y[0], cr[:, 0], rtol=0, atol=1e-9)  # same functions
    torch.testing.assert_close(tb.yp[1], -cr[:, 3], rtol=0, atol=1e-9)
    z = _points(zlo[:1], zhi[:1], 0)
    vals = tg.graph.forward(z, keep=True)
    y, yp = vals[tg.outs[0]][:, 0], vals[tg.outs[1]][:, 0]
    for v, (l, u) in ((y, tb.y), (yp, tb.yp), (y - yp, tb.diff)):
        assert (v >= l[0] - 1e-9).all() and (v <= u[0] + 1e-9).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_copy_bounds_contain_sampled_points_and_float32_runs(seed):
    """``copy_bounds`` (one copy of the model per box, the fairness search's copy mode): 10^4
    integer points per box inside the logit bounds, float32 runs within tau, and on deep nets the
    CROWN pass is no looser than the forward bounds alone."""
    from certprune.bounds.forward import forward_pass
    from certprune.verifiers.twin_bounds import copy_bounds, decision_graph
    net = _net(seed, h=30)
    g = torch.Generator().manual_seed(seed)
    lo = torch.randint(0, 4, (6, 4), generator=g).double()
    hi = lo + torch.randint(0, 5, (6, 4), generator=g).double()
    cb = copy_bounds(net, lo, hi)
    fw = forward_pass(decision_graph(net), lo, hi, keep=(decision_graph(net).output,))
    assert (cb.y[0] >= fw.bounds[decision_graph(net).output][0][:, 0]).all()
    for k in range(6):
        x = torch.floor(lo[k] + torch.rand(N, 4, generator=g, dtype=torch.float64) * (hi[k] - lo[k] + 1))
        x = torch.minimum(x, hi[k])
        h32, h = x.float(), x
        for j, (w, b) in enumerate(zip(net.weights, net.biases)):
            h32, h = h32 @ w.float().T + b.float(), h @ w.T + b
            if j < net.num_layers - 1:
                h32, h = h32.clamp(min=0), h.clamp(min=0)
        y, y32 = h[:, 0], h32.double()[:, 0]
        assert (y >= cb.y[0][k] - 1e-9).all() and (y <= cb.y[1][k] + 1e-9).all()
        assert ((y32 - y).abs() <= cb.tau[k]).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_without_the_crown_pass_bounds_are_looser_and_its_boxes_are_named(seed):
    """``crown_pass=False`` (the search's choice where the pass closes few boxes): every bound
    contains the full pass' bounds (which enclose sampled points, tests above), it closes a
    subset of the boxes, and the full pass names as the boxes it bounded exactly those the
    forward bounds left open (the search's yield is measured on them)."""
    spec = SPECS[0]
    layout = twin_layout(spec)
    net = _net(seed, h=16)
    zlo, zhi = _boxes(layout, seed)
    sem = Semantics.EXACT
    full = twin_bounds(net, layout, zlo, zhi, skip_closed=sem)
    off = twin_bounds(net, layout, zlo, zhi, skip_closed=sem, crown_pass=False)
    assert len(off.crowned) == 0 and off.crown_seconds == 0.0
    cf, co = full.closed(sem), off.closed(sem)
    assert not (co & ~cf).any()
    assert torch.equal(full.crowned, torch.nonzero(~co).flatten()) and full.crown_seconds > 0
    assert int(cf[full.crowned].sum()) > 0  # the pass does close some boxes here
    for f, o in ((full.y, off.y), (full.yp, off.yp), (full.diff, off.diff)):
        assert (o[0] <= f[0] + 1e-12).all() and (o[1] >= f[1] - 1e-12).all()
    (a, b), (c, d) = full.signs(sem), off.signs(sem)
    assert not ((c * d == -1) & ~(a * b == -1)).any()  # a flip proven without the pass is proven with it
