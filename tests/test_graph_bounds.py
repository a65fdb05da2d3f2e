"""The graph IR and its bound engine: forward equivalence with torch, soundness by sampling at
every node (IBP, CROWN, alpha-CROWN) on residual / concat / strided-conv+BatchNorm / twin
graphs, agreement with auto_LiRPA CROWN on residual and conv graphs, exact values on point
boxes, and clear refusals of unsupported operators."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from certprune.bounds import alpha, crown
from certprune.bounds.engine import graph_bounds
from certprune.bounds.ibp import ibp
from certprune.errors import UnsupportedModelError
from certprune.graph import build_graph
from certprune.io import onnx_ops as ops
from certprune.verifiers.bounds import compute_bounds
from tests.graph_nets import GRAPHS, graph

N_SAMPLES = 10_000
TOL = 1e-9


def _boxes(shape, n_boxes: int, seed: int, width: float = 0.6):
    g = torch.Generator().manual_seed(seed)
    d = int(np.prod(shape))
    lo = torch.rand(n_boxes, d, generator=g, dtype=torch.float64) * 2 - 1
    return lo, lo + width * torch.rand(n_boxes, d, generator=g, dtype=torch.float64)


def _samples(lo, hi, box: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(N_SAMPLES, lo.shape[1], generator=g, dtype=torch.float64)
    u[:64] = (u[:64] > 0.5).double()  # some corners
    return lo[box] + u * (hi[box] - lo[box])


def _inside(values: torch.Tensor, l: torch.Tensor, u: torch.Tensor) -> bool:
    v = values.reshape(len(values), -1)
    return bool((v >= l.reshape(1, -1) - TOL).all() and (v <= u.reshape(1, -1) + TOL).all())


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_forward_equals_torch_module(name):
    make, shape = GRAPHS[name]
    m = make(1)
    g = build_graph(m, shape)
    x = torch.randn(7, *shape, dtype=torch.float64)
    torch.testing.assert_close(g.forward(x), m.double()(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_sampled_points_inside_every_node_bound(name):
    """IBP bounds of every node, CROWN bounds of every node (a backward pass from each), and the
    CROWN / alpha-CROWN output bounds contain the values of 10^4 points per box."""
    make, shape = GRAPHS[name]
    g = build_graph(make(2), shape)
    lo, hi = _boxes(shape, 2, seed=3)
    boxes_ibp = ibp(g, lo, hi)
    st = crown.intermediate(g, lo, hi)
    st_tight = crown.intermediate(g, lo, hi, intersect=True, sparse=True)
    out_crown = crown.output_bounds(g, st)
    out_alpha = alpha.alpha_output_bounds(g, st, iterations=5)
    per_node = [crown.node_crown(g, t, st) for t in range(1, len(g.nodes))]
    for box in range(2):
        vals = g.forward(_samples(lo, hi, box, seed=box), keep=True)
        for t in range(1, len(g.nodes)):
            assert _inside(vals[t], boxes_ibp[t][0][box], boxes_ibp[t][1][box]), ("ibp", t)
            assert _inside(vals[t], st.bounds[t][0][box], st.bounds[t][1][box]), ("crown state", t)
            assert _inside(vals[t], st_tight.bounds[t][0][box], st_tight.bounds[t][1][box]), ("tight", t)
            l, u = per_node[t - 1]
            assert _inside(vals[t], l[box], u[box]), ("crown node", t)
        y = vals[g.output]
        for l, u in (out_crown, out_alpha):
            assert _inside(y, l[box], u[box])
        # CROWN is at least as tight as IBP somewhere, alpha never looser than CROWN
        assert (out_alpha[0] >= out_crown[0] - 1e-12).all() and (out_alpha[1] <= out_crown[1] + 1e-12).all()


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_point_boxes_give_the_forward_pass(name, method):
    make, shape = GRAPHS[name]
    m = make(4)
    g = build_graph(m, shape)
    x = torch.rand(3, int(np.prod(shape)), dtype=torch.float64)
    b = graph_bounds(g, x, x, method)
    y = m.double()(x.reshape(3, *shape)).reshape(3, -1)
    torch.testing.assert_close(b.lower, y, rtol=0, atol=1e-10)
    torch.testing.assert_close(b.upper, y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["residual_mlp", "conv_residual", "twin_mlp"])
def test_crown_agrees_with_auto_lirpa(name):
    make, shape = GRAPHS[name]
    m = make(5)
    lo, hi = _boxes(shape, 4, seed=6, width=0.4)
    C = torch.randn(2, 3 if name != "twin_mlp" else 2, dtype=torch.float64)
    for spec in (None, C):
        a = compute_bounds(m, lo, hi, engine="native", intermediate="all", input_shape=shape, C=spec, return_intermediate=True)
        b = compute_bounds(m, lo, hi, engine="lirpa", input_shape=shape, C=spec, return_intermediate=True)
        torch.testing.assert_close(a.lower, b.lower, rtol=0, atol=1e-6)
        torch.testing.assert_close(a.upper, b.upper, rtol=0, atol=1e-6)
    for (al, au), (bl, bu) in zip(a.intermediate, b.intermediate):
        torch.testing.assert_close(al, bl, rtol=0, atol=1e-6)
        torch.testing.assert_close(au, bu, rtol=0, atol=1e-6)


def test_conv_backward_is_transposed_convolution_not_dense():
    make, shape = GRAPHS["conv_residual"]
    g = build_graph(make(0), shape)
    kinds = [n.op.kind for n in g.nodes[1:]]
    assert kinds.count("conv") == 3 and "dense" not in kinds
    assert {"add", "scale", "relu", "reshape", "linear"} <= set(kinds)


def test_twin_graph_relates_the_copies_through_the_shared_input():
    """y = s(x) - s(x') with x' = x on a box where feature 0 and the protected copy coincide:
    CROWN over the twin graph sees the shared inputs and bounds the difference near 0, much
    tighter than IBP (which treats the copies as independent)."""
    make, shape = GRAPHS["twin_mlp"]
    g = build_graph(make(0), shape)
    lo = torch.tensor([[0.0, 0.0, 0.0, 0.2]], dtype=torch.float64)
    hi = torch.tensor([[0.3, 0.3, 0.3, 0.2]], dtype=torch.float64)
    C = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    cr = graph_bounds(g, lo, hi, "crown", C)
    ib = graph_bounds(g, lo, hi, "ibp", C)
    assert float(cr.upper - cr.lower) < 0.5 * float(ib.upper - ib.lower)


def test_unsupported_operators_are_named_once():
    m = graph([(nn.Linear(3, 4), ("__input__",), "a"), (nn.Sigmoid(), ("a",), "b"), (nn.Tanh(), ("b",), "c"),
               (nn.Linear(4, 1), ("c",), "y")], "y")
    with pytest.raises(UnsupportedModelError, match="unsupported layers: Sigmoid, Tanh"):
        build_graph(m, (3,))
    prod = graph([(nn.Linear(3, 4), ("__input__",), "a"), (nn.Linear(3, 4), ("__input__",), "b"),
                  (ops.TensorBinary("Mul"), ("a", "b"), "y")], "y")
    with pytest.raises(UnsupportedModelError, match="TensorBinary\\(Mul\\)"):
        build_graph(prod, (3,))
    with pytest.raises(UnsupportedModelError, match="division by a tensor"):
        build_graph(nn.Sequential(nn.Linear(3, 2), ops.ConstBinary("Div", np.float32(2.0), True)), (3,))


def test_pooling_pad_permute_and_matmul_ops_are_sound():
    """AvgPool, zero Pad, Permute, MatMul by a constant and a constant Sub inside a conv net."""
    torch.manual_seed(0)
    m = nn.Sequential(ops.ConstantPad((1, 0, 0, 1)), nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AvgPool2d(2),
                      ops.Permute((0, 2, 3, 1)), ops.MatMulConst(np.random.default_rng(0).normal(size=(3, 2))),
                      ops.ConstBinary("Sub", np.float32(0.5), True), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).eval()
    shape = (2, 5, 5)
    g = build_graph(m, shape)
    x = torch.randn(4, *shape, dtype=torch.float64)
    torch.testing.assert_close(g.forward(x), m.double()(x), rtol=0, atol=1e-12)
    lo, hi = _boxes(shape, 1, seed=1)
    st = crown.intermediate(g, lo, hi)
    l, u = crown.output_bounds(g, st)
    vals = g.forward(_samples(lo, hi, 0, 0))
    assert _inside(vals, l[0], u[0])
    for t in range(1, len(g.nodes)):
        cl, cu = crown.node_crown(g, t, st)
        assert _inside(g.forward(_samples(lo, hi, 0, 0), keep=True)[t], cl[0], cu[0]), t


@pytest.mark.parametrize("name", ["conv_residual", "residual_relu_add"])
def test_sparse_intermediate_bounds_are_sound_and_keep_the_output_bound(name, monkeypatch):
    """CROWN on interval-unstable neurons only (forced on small layers here): sound at every node,
    never looser than plain interval bounds, and the output bound contains the samples."""
    monkeypatch.setattr(crown, "SPARSE_WORK", 0)
    make, shape = GRAPHS[name]
    g = build_graph(make(7), shape)
    lo, hi = _boxes(shape, 2, seed=8)
    st = crown.intermediate(g, lo, hi, intersect=True, sparse=True)
    boxes_ibp = ibp(g, lo, hi)
    l, u = crown.output_bounds(g, st)
    for box in range(2):
        vals = g.forward(_samples(lo, hi, box, seed=box), keep=True)
        for t in range(1, len(g.nodes)):
            assert _inside(vals[t], st.bounds[t][0][box], st.bounds[t][1][box]), t
            assert (st.bounds[t][0][box] >= boxes_ibp[t][0][box] - 1e-12).all()
        assert _inside(vals[g.output], l[box], u[box])


def test_conv1d_and_dense_fallback_are_sound():
    """Conv1d runs as a convolution; a layer without an operator of its own (ConvTranspose2d)
    becomes one dense affine map read off the unit basis; both bound soundly."""
    torch.manual_seed(3)
    m1 = nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.BatchNorm1d(3).eval(), nn.ReLU(),
                       nn.Flatten(), nn.Linear(9, 2)).eval()
    m2 = nn.Sequential(nn.ConvTranspose2d(1, 2, 2, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)).eval()
    for m, shape, kind in ((m1, (2, 6), "conv"), (m2, (1, 2, 2), "dense")):
        g = build_graph(m, shape)
        assert kind in [n.op.kind for n in g.nodes[1:]]
        x = torch.randn(5, *shape, dtype=torch.float64)
        torch.testing.assert_close(g.forward(x), m.double()(x), rtol=0, atol=1e-10)
        lo, hi = _boxes(shape, 1, seed=2)
        for method in ("ibp", "crown", "alpha-crown"):
            b = graph_bounds(g, lo, hi, method)
            assert _inside(g.forward(_samples(lo, hi, 0, 1)), b.lower[0], b.upper[0]), (kind, method)


def test_row_chunking_does_not_change_bounds(monkeypatch):
    """Intermediate bounds computed a few identity rows per pass (memory cap) equal one pass."""
    make, shape = GRAPHS["conv_residual"]
    g = build_graph(make(9), shape)
    lo, hi = _boxes(shape, 3, seed=4)
    ref = graph_bounds(g, lo, hi, "crown")
    monkeypatch.setattr(crown, "ROW_BUDGET", 3 * 2 * 64 * 5)  # 5 rows per pass on the widest node (64)
    small = graph_bounds(g, lo, hi, "crown")
    torch.testing.assert_close(small.lower, ref.lower, rtol=0, atol=1e-12)
    torch.testing.assert_close(small.upper, ref.upper, rtol=0, atol=1e-12)
    for (a, b), (c, d) in zip(small.intermediate, ref.intermediate):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-12)
        torch.testing.assert_close(b, d, rtol=0, atol=1e-12)
