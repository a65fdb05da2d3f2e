"""Forward symbolic bounds over the graph IR (``certprune.bounds.forward``): sampled points
(10^4 per box) inside every node's bounds on residual / concat / conv / twin graphs, exact on
point boxes and on linear graphs, the values the former chain-only ``native_forward`` gave
(recorded on a hand-built net), and ``compute_bounds(mode="forward")`` on graphs.
(Agreement with auto_LiRPA's forward mode on chains: tests/test_bounds_agreement.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from certprune.bounds.forward import forward_bounds, forward_pass
from certprune.graph import build_graph
from certprune.io import onnx_ops as ops
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.bounds import compute_bounds
from tests.graph_nets import GRAPHS, graph
from tests.test_graph_bounds import N_SAMPLES, _inside
from tests.test_graph_bounds import _boxes as graph_boxes
from tests.test_graph_bounds import _samples as _points



def _boxes(d: int, n: int, seed: int, width: float = 0.6):
    return graph_boxes((d,), n, seed, width)


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("intersect", [False, True])
def test_sampled_points_inside_forward_bounds_at_every_node(name, seed, intersect):
    make, shape = GRAPHS[name]
    g = build_graph(make(seed), shape)
    lo, hi = _boxes(g.input_dim, 2, seed + 11)
    res = forward_pass(g, lo, hi, intersect_ibp=intersect, every_node=True)
    (yl, yu), _ = forward_bounds(g, lo, hi, intersect_ibp=intersect)
    for box in range(2):
        vals = g.forward(_points(lo, hi, box, seed=box), keep=True)
        for t in range(1, len(g.nodes)):
            assert _inside(vals[t], res.bounds[t][0][box], res.bounds[t][1][box]), (name, t)
        assert _inside(vals[g.output], yl[box], yu[box])
        assert (yu[box] - yl[box]).max() < 1e3  # not vacuous


def test_forward_bounds_are_exact_on_point_boxes():
    for name, (make, shape) in GRAPHS.items():
        g = build_graph(make(3), shape)
        lo, _ = _boxes(g.input_dim, 3, 4)
        (yl, yu), _ = forward_bounds(g, lo, lo.clone())
        y = g.forward(lo).reshape(3, -1)
        torch.testing.assert_close(yl, y, rtol=0, atol=1e-10)
        torch.testing.assert_close(yu, y, rtol=0, atol=1e-10)


def test_linear_graph_keeps_exact_functions():
    """Without ReLUs every node is a linear function of the input: the forward bounds are the
    exact range (= interval arithmetic on the composed matrix), even through select/concat/add."""
    g_ = torch.Generator().manual_seed(0)
    l1, l2 = nn.Linear(4, 3), nn.Linear(6, 2)
    with torch.no_grad():
        for p in (*l1.parameters(), *l2.parameters()):
            p.copy_(torch.randn(p.shape, generator=g_))
    m = graph([(l1, ("__input__",), "a"), (ops.Select(np.array([0, 1, 3]), (3,)), ("__input__",), "s"),
               (ops.TensorBinary("Sub"), ("a", "s"), "d"), (ops.Concat(1), ("d", "a"), "c"),
               (l2, ("c",), "y")], "y")
    g = build_graph(m, (4,))
    lo, hi = _boxes(4, 3, 1, width=2.0)
    (yl, yu), _ = forward_bounds(g, lo, hi)
    M = torch.func.jacrev(lambda x: g.forward(x[None])[0])(torch.zeros(4, dtype=torch.float64))  # (2, 4)
    y0 = g.forward(torch.zeros(1, 4, dtype=torch.float64))[0]
    c, r = (lo + hi) / 2, (hi - lo) / 2
    torch.testing.assert_close(yl, c @ M.T + y0 - r @ M.abs().T, rtol=0, atol=1e-12)
    torch.testing.assert_close(yu, c @ M.T + y0 + r @ M.abs().T, rtol=0, atol=1e-12)


def test_chain_values_equal_the_former_native_forward(monkeypatch):
    """Recorded from ``verifiers/native_forward.forward_crown`` (deleted) on this net, without the
    rounding margin (layer 2 of box 1 has ``u = -l``: CROWN's lower slope is a tie there, which
    the margin's outward push may break the other way)."""
    from certprune.bounds import crown
    monkeypatch.setattr(crown, "ROUNDING_MARGIN", False)
    W = ([[1.0, -2.0], [0.5, 1.5], [-1.0, 1.0]], [[1.0, -1.0, 2.0], [-0.5, 1.0, 1.0]], [[1.0, -2.0]])
    B = ([0.5, -0.25, 0.0], [0.0, -1.0], [0.25])
    net = AffineReluNet(tuple(torch.tensor(w, dtype=torch.float64) for w in W),
                        tuple(torch.tensor(b, dtype=torch.float64) for b in B), (2,))
    lo = torch.tensor([[-1.0, -0.5], [0.0, 0.25]], dtype=torch.float64)
    hi = torch.tensor([[0.5, 1.0], [1.0, 0.75]], dtype=torch.float64)
    b = compute_bounds(net, lo, hi, mode="forward", return_intermediate=True)
    assert b.method == "forward"
    torch.testing.assert_close(b.lower, torch.tensor([[-4.094512195121951], [-1.0]], dtype=torch.float64))
    torch.testing.assert_close(b.upper, torch.tensor([[4.25], [1.625]], dtype=torch.float64))
    pre = [([[-2.5, -1.5, -1.0], [-1.0, 0.125, -0.75]], [[2.0, 1.5, 2.0], [1.0, 1.375, 0.75]]),
           ([[-2.375, -3.0], [-1.375, -1.125]], [[4.0, 2.125], [1.375, 0.625]])]
    for (l, u), (el, eu) in zip(b.intermediate, pre):
        torch.testing.assert_close(l, torch.tensor(el, dtype=torch.float64))
        torch.testing.assert_close(u, torch.tensor(eu, dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_compute_bounds_forward_mode_runs_on_graphs_with_a_spec(name):
    """mode="forward" on non-chain graphs (it was chain-only), with a spec matrix C: sound by
    sampling, and C folded into a Linear output is never looser than C applied to y's bounds."""
    make, shape = GRAPHS[name]
    m = make(1).double()
    d = int(np.prod(shape))
    lo, hi = _boxes(d, 2, 7)
    g = build_graph(m, shape)
    C = torch.randn(2, g.output_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    b = compute_bounds(m, lo.reshape(2, *shape), hi.reshape(2, *shape), mode="forward", C=C, engine="native",
                       input_shape=shape, return_intermediate=True)
    assert b.method == "forward" and len(b.intermediate) == len(g.relu_nodes)
    plain = compute_bounds(m, lo.reshape(2, *shape), hi.reshape(2, *shape), mode="forward", engine="native",
                           input_shape=shape)
    Cp, Cn = C.clamp(min=0), C.clamp(max=0)
    assert (b.lower >= plain.lower @ Cp.T + plain.upper @ Cn.T - 1e-9).all()
    for box in range(2):
        y = g.forward(_points(lo, hi, box, seed=3)).reshape(N_SAMPLES, -1) @ C.T
        assert _inside(y, b.lower[box], b.upper[box])


def _every_op_net() -> nn.Module:
    """Pad, Conv, ReLU, AvgPool, Permute, MatMul by a constant, constant Mul/Add, Flatten, Linear."""
    torch.manual_seed(4)
    return nn.Sequential(ops.ConstantPad((1, 1, 1, 1)), nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AvgPool2d(2),
                         ops.Permute((0, 2, 3, 1)), ops.MatMulConst(np.random.default_rng(0).normal(size=(3, 4))),
                         ops.ConstBinary("Mul", np.float32(-0.75), False),
                         ops.ConstBinary("Add", np.linspace(-1, 1, 4).astype(np.float32), False), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16, 3)).eval()


def test_every_operator_forward_map_is_sound_by_sampling():
    m = _every_op_net()
    g = build_graph(m, (2, 4, 4))
    kinds = {n.op.kind for n in g.nodes[1:]}
    assert {"pad", "conv", "relu", "pool", "permute", "matmul", "scale", "reshape", "linear"} <= kinds
    lo, hi = _boxes(g.input_dim, 2, 9)
    res = forward_pass(g, lo, hi, every_node=True)
    for box in range(2):
        x = _points(lo, hi, box, seed=box)
        vals = g.forward(x, keep=True)
        torch.testing.assert_close(vals[g.output], m.double()(x.reshape(-1, 2, 4, 4)), rtol=0, atol=1e-10)
        for t in range(1, len(g.nodes)):
            assert _inside(vals[t], res.bounds[t][0][box], res.bounds[t][1][box]), g.nodes[t]


def test_forward_mode_on_a_node_that_uses_one_input_twice():
    """y = W2 (h + h), h = relu(W1 x): the forward pass freed h's functions after its first use
    and raised KeyError on the second (review finding); bounds must contain sampled outputs."""
    import torch
    from torch import nn

    from certprune.io import onnx_ops as ops
    from certprune.verifiers.bounds import compute_bounds
    from tests.graph_nets import graph as make_graph

    torch.manual_seed(0)
    g = make_graph([(nn.Linear(3, 5), ("__input__",), "z"), (nn.ReLU(), ("z",), "h"),
                    (ops.TensorBinary("Add"), ("h", "h"), "s"), (nn.Linear(5, 2), ("s",), "y")], "y")
    lo, hi = -torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    b = compute_bounds(g, lo, hi, method="crown", mode="forward", engine="native")
    x = lo + (hi - lo) * torch.rand(10_000, 3, dtype=torch.float64)
    with torch.no_grad():
        y = g.double()(x)
    assert bool((y >= b.lower - 1e-9).all() and (y <= b.upper + 1e-9).all())


def _chain(dims, seed):
    g_ = torch.Generator().manual_seed(seed)
    ws = tuple((torch.randn(o, i, generator=g_) / i ** 0.5).float().double() for i, o in zip(dims, dims[1:]))
    bs = tuple((torch.randn(o, generator=g_) * 0.3).float().double() for o in dims[1:])
    return AffineReluNet(ws, bs, (dims[0],))


@pytest.mark.parametrize("dims", [[6, 20, 1], [6, 9, 3, 2], [5, 4, 4, 4, 1]], ids=["one-layer", "narrow", "deep"])
def test_fused_relu_linear_equals_the_unfused_step_and_encloses_samples(dims, monkeypatch):
    """A ReLU of a shared input function feeding one narrow Linear is mapped in one step
    (``Linear.forward_linear_relaxed``): every node's bounds equal the two-step pass' (float64
    rounding only) and enclose 10^4 sampled points per box."""
    import certprune.bounds.forward as F
    g = build_graph(_chain(dims, sum(dims)))
    assert F._fusable(g, ())  # the fused step is exercised
    lo, hi = _boxes(g.input_dim, 3, 7, width=1.5)
    fused = forward_pass(g, lo, hi, every_node=True)
    monkeypatch.setattr(F, "_fusable", lambda graph, keep: set())
    plain = forward_pass(g, lo, hi, every_node=True)
    for t in range(1, len(g.nodes)):
        for k in (0, 1):
            torch.testing.assert_close(fused.bounds[t][k], plain.bounds[t][k], rtol=1e-12, atol=1e-12)
    for box in range(3):
        vals = g.forward(_points(lo, hi, box, seed=box), keep=True)
        for t in range(1, len(g.nodes)):
            assert _inside(vals[t], fused.bounds[t][0][box], fused.bounds[t][1][box]), t


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_inputs_fixed_in_every_box_are_held_in_the_offsets(name):
    """Inputs that are one and the same point in every box (a twin batch's protected values)
    leave the functions' columns (``forward._fixed_inputs``): every node's bounds equal those of
    the pass that keeps all columns (the same boxes beside one box where every input varies, so
    nothing is fixed; float64 rounding only), enclose sampled points, and the kept functions
    come back over all inputs, zero on the fixed ones."""
    from certprune.bounds.forward import _fixed_inputs
    make, shape = GRAPHS[name]
    g = build_graph(make(2), shape)
    lo, hi = _boxes(g.input_dim, 3, 21, width=0.8)
    fixed = torch.arange(g.input_dim) % 2 == 1
    lo[:, fixed] = hi[:, fixed] = torch.linspace(-0.7, 0.9, int(fixed.sum()), dtype=torch.float64)
    assert torch.equal(_fixed_inputs(lo, hi), torch.nonzero(~fixed).flatten())
    wide_lo, wide_hi = _boxes(g.input_dim, 1, 22, width=0.8)
    alo, ahi = torch.cat([lo, wide_lo]), torch.cat([hi, wide_hi])
    assert _fixed_inputs(alo, ahi) is None
    out = g.output
    folded = forward_pass(g, lo, hi, keep=(out,), every_node=True)
    full = forward_pass(g, alo, ahi, keep=(out,), every_node=True)
    for t in range(1, len(g.nodes)):
        for k in (0, 1):
            torch.testing.assert_close(folded.bounds[t][k], full.bounds[t][k][:3], rtol=1e-9, atol=1e-9)
    for f in folded.fns[out]:
        assert f.A.shape[1] == g.input_dim and bool((f.A[:, fixed] == 0).all())
    for box in range(3):
        x = _points(lo, hi, box, seed=box)
        vals = g.forward(x, keep=True)
        for t in range(1, len(g.nodes)):
            assert _inside(vals[t], folded.bounds[t][0][box], folded.bounds[t][1][box]), (name, t)
        fl, fu = folded.fns[out]
        y = vals[out].reshape(len(x), -1)
        for f, sign in ((fl, 1), (fu, -1)):
            A = f.A[0 if f.A.shape[0] == 1 else box].reshape(g.input_dim, -1)
            b = f.b[0 if f.b.shape[0] == 1 else box].reshape(-1)
            assert bool((sign * (y - (x @ A + b)) >= -1e-9).all())


@pytest.mark.parametrize("dims", [[8, 12, 20, 1], [9, 16, 40, 2]], ids=["wide", "wider"])
def test_fused_wide_linear_by_unstable_neurons_equals_the_unfused_step(dims, monkeypatch):
    """The fused step of a Linear with at least twice as many outputs as the input function has
    columns takes the shared product plus one product over each box's unstable neurons, the
    boxes grouped by their unstable count (``Linear.forward_linear_relaxed``): on 64 boxes of
    widths from 0.05 to 2 (from none to most of the neurons unstable, so the groups are padded
    differently) every node's bounds equal the unfused pass' (float64 rounding only) and
    enclose sampled points."""
    import certprune.bounds.forward as F
    from certprune.graph.ops_linear import _CHUNKS, Linear
    g = build_graph(_chain(dims, 11 * len(dims)))
    assert F._fusable(g, ())
    calls = []
    step = Linear.forward_linear_relaxed
    monkeypatch.setattr(Linear, "forward_linear_relaxed", lambda self, f, r: calls.append(1) or step(self, f, r))
    lo, hi = _boxes(g.input_dim, 64, 3, width=1.0)
    c, r = (lo + hi) / 2, (hi - lo) / 2 * torch.linspace(0.05, 2.0, 64, dtype=torch.float64).unsqueeze(1)
    lo, hi = c - r, c + r
    fused = forward_pass(g, lo, hi, every_node=True)
    relu = next(i for i, n in enumerate(g.nodes[1:], start=1) if n.op.nonlinear)
    counts = fused.relax[relu].unstable.sum(1)
    assert int(counts.min()) == 0 and int(counts.max()) > dims[1] // 2  # groups padded differently
    assert len(set(counts.tolist())) > _CHUNKS
    assert calls  # the fused step ran (m >= 2 n_in: the grouped products)
    monkeypatch.setattr(F, "_fusable", lambda graph, keep: set())
    plain = forward_pass(g, lo, hi, every_node=True)
    for t in range(1, len(g.nodes)):
        for k in (0, 1):
            torch.testing.assert_close(fused.bounds[t][k], plain.bounds[t][k], rtol=1e-12, atol=1e-12)
    for box in (0, 31, 63):
        vals = g.forward(_points(lo, hi, box, seed=box), keep=True)
        for t in range(1, len(g.nodes)):
            assert _inside(vals[t], fused.bounds[t][0][box], fused.bounds[t][1][box]), t


@pytest.mark.parametrize("m", [4, 30], ids=["few-outputs", "many-outputs"])
def test_fused_step_on_the_torch_path_equals_the_unfused_step(m):
    """With autograd on (the torch path of ``Linear.forward_linear_relaxed``, no numpy) the fused
    step gives the unfused step's functions, as the numpy path does."""
    from certprune.graph.op import LinFn
    from certprune.graph.ops_linear import Linear
    from certprune.graph.relu import ReLU
    g_ = torch.Generator().manual_seed(m)
    def rnd(*shape):
        return torch.randn(*shape, generator=g_, dtype=torch.float64)
    op = Linear(rnd(m, 12), rnd(m))
    f = LinFn(rnd(1, 9, 12), rnd(1, 12))
    l = torch.randn(7, 12, generator=g_, dtype=torch.float64)
    u = l + 2 * torch.rand(7, 12, generator=g_, dtype=torch.float64)
    plain = op.forward_linear(ReLU.forward_relaxed((f, f), ReLU.relax(l, u)))
    for r in (ReLU.relax(l, u), ReLU.relax(l.clone().requires_grad_(), u)):
        for a, b in zip(plain, op.forward_linear_relaxed(f, r)):
            torch.testing.assert_close(b.A.detach(), a.A, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(b.b.detach(), a.b, rtol=1e-12, atol=1e-12)
