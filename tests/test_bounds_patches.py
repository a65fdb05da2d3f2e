"""The fast paths of the identity-spec CROWN passes give the bounds of the plain sweep: patches
mode (the one sweep on ``certprune.graph.windows.Windows``, local windows) on every convolutional node (strided /
padded convs, BatchNorm, Pad, residual adds) whatever the location chunking, with a dense
fallback where it does not apply; the one-product ReLU -> Linear step; numpy's BLAS products."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from certprune.bounds import crown
from certprune.graph import windows
from certprune.graph import build_graph
from certprune.io import onnx_ops as ops
from tests.graph_nets import GRAPHS


def _chain() -> nn.Sequential:
    torch.manual_seed(4)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=2),
                         bn.eval(), nn.ReLU(), ops.ConstantPad((1, 0, 2, 1)), nn.Conv2d(4, 2, 2, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(40, 3)).eval()


NETS = {"chain_bn_pad": (_chain, (2, 9, 9)), "conv_residual": (lambda: GRAPHS["conv_residual"][0](1), (1, 8, 8))}


def _dense(g, t, st):
    return crown.node_crown(g, t, st, use_windows=False)


def _graph_and_boxes(name: str, seed: int, n: int):
    """Graph of ``NETS[name]``, ``n`` random boxes in [-1, 1.5] and their CROWN intermediate state."""
    make, shape = NETS[name]
    g = build_graph(make(), shape)
    gen = torch.Generator().manual_seed(seed)
    d = int(torch.tensor(shape).prod())
    lo = torch.rand(n, d, generator=gen, dtype=torch.float64) * 2 - 1
    hi = lo + 0.5 * torch.rand(n, d, generator=gen, dtype=torch.float64)
    return g, lo, hi, crown.intermediate(g, lo, hi)


@pytest.mark.parametrize("name", sorted(NETS))
def test_patches_equal_the_dense_pass_on_every_conv_node(name):
    g, lo, hi, st = _graph_and_boxes(name, seed=1, n=3)
    kinds = set()
    for t in range(1, len(g.nodes)):
        if windows.plan(g, t) is None:
            continue
        kinds.add(g.nodes[t].op.kind)
        pl, pu = crown.node_crown(g, t, st, use_windows=True, budget=1 << 25)  # forced on, whatever the cost
        dl, du = _dense(g, t, st)
        torch.testing.assert_close(pl, dl, rtol=0, atol=1e-12)
        torch.testing.assert_close(pu, du, rtol=0, atol=1e-12)
        cl, cu = crown.node_crown(g, t, st, use_windows=True, budget=40)  # one location per chunk
        torch.testing.assert_close(cl, pl, rtol=0, atol=1e-12)
        torch.testing.assert_close(cu, pu, rtol=0, atol=1e-12)
        assert (pl <= pu + 1e-12).all()
    assert {"conv", "relu"} <= kinds
    assert ("pad" in kinds and "scale" in kinds) if name == "chain_bn_pad" else "add" in kinds


def test_plan_keeps_windows_down_to_where_they_stop_paying(monkeypatch):
    """The plan refuses a 1-D target; below a target it keeps windows down to a node without a
    window step (grouped conv) or where a window would cover the whole node, dense from there."""
    g = build_graph(_chain(), (2, 9, 9))
    assert windows.plan(g, len(g.nodes) - 1) is None  # the Linear head: 1-D
    m = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
    geo = windows.plan(build_graph(m, (2, 7, 7)), 3)
    assert set(geo) == {3, 2}  # the grouped conv (node 1) gets dense coefficients
    geo = windows.plan(g, 8)  # Conv(s2) <- Pad <- ReLU <- BN (x - mean, x * s + b) <- Conv(p2) <- ReLU <- Conv(s2, p1)
    assert geo[7] == (2, 2, 2, 2, 0, 0) and geo[6] == (2, 2, 2, 2, 2, 1)
    assert 2 not in geo and windows.WINDOW_FILL <= 16 / 25  # a 4x4 window on node 2 (3, 5, 5): dense
    monkeypatch.setattr(windows, "WINDOW_FILL", 1.0)
    geo = windows.plan(g, 8)
    assert geo[2] == (4, 4, 2, 2, 4, 3) and 0 not in geo  # strides multiply; a 9x9 window on the 9x9 input
    g2 = build_graph(nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.Conv2d(2, 2, 3)).eval(), (1, 15, 15))
    assert windows.plan(g2, 3)[0] == (7, 7, 2, 2, 0, 0)  # a 7x7 window on a 15x15 input stays windows


def test_patches_used_on_the_mnist_convnet_and_bounds_unchanged(monkeypatch):
    """On a convnet the second conv's bounds come from patches (cheaper) and equal the dense ones."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 4, stride=2), nn.ReLU(), nn.Conv2d(4, 8, 4, stride=2), nn.ReLU(),
                      nn.Flatten(), nn.Linear(200, 10)).eval()
    g = build_graph(m, (1, 28, 28))
    lo = torch.rand(2, 784, dtype=torch.float64)
    hi = (lo + 0.02).clamp(max=1)
    st = crown.intermediate(g, lo, hi)
    used = []
    real = crown._windows_crown
    monkeypatch.setattr(crown, "_windows_crown", lambda *a: used.append(a[1]) or real(*a))
    pl, pu = crown.node_crown(g, 3, st)
    assert used == [3]  # the cost rule chose windows
    dl, du = _dense(g, 3, st)
    sl, su = crown.node_crown(g, 3, st, budget=2 * 16 * 100 - 1)  # one location's rows would not fit
    assert used == [3]  # so the dense pass (which splits rows further) ran
    torch.testing.assert_close(sl, dl, rtol=0, atol=1e-12)
    torch.testing.assert_close(su, du, rtol=0, atol=1e-12)
    torch.testing.assert_close(pl, dl, rtol=0, atol=1e-12)
    torch.testing.assert_close(pu, du, rtol=0, atol=1e-12)


def test_blas_matmul_equals_torch_and_keeps_autograd():
    """``ops_linear.matmul`` (numpy's BLAS for large float64 products) equals torch's product,
    and products that need gradients (alpha-CROWN) stay in torch."""
    from certprune.graph.ops_linear import matmul
    g = torch.Generator().manual_seed(0)
    A = torch.randn(64, 30, 50, generator=g, dtype=torch.float64)
    W = torch.randn(50, 21, generator=g, dtype=torch.float64)
    torch.testing.assert_close(matmul(A, W), A @ W, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(matmul(A[:, ::2], W), A[:, ::2] @ W, rtol=1e-13, atol=1e-12)  # non-contiguous
    buf = torch.zeros(64, 3, 21, dtype=torch.float64)  # into the strided rows of a buffer
    got = matmul(A[:, 0], W, out=buf[:, 1])
    assert got.data_ptr() == buf[:, 1].data_ptr() and (buf[:, [0, 2]] == 0).all()
    torch.testing.assert_close(buf[:, 1], A[:, 0] @ W, rtol=1e-13, atol=1e-12)
    Ag = A.clone().requires_grad_(True)
    out = matmul(Ag, W)
    assert out.grad_fn is not None
    out.sum().backward()
    torch.testing.assert_close(Ag.grad, W.sum(1).expand(64, 30, 50), rtol=0, atol=1e-12)


def test_two_step_relu_linear_product_equals_the_sweep(monkeypatch):
    """node_crown's two-product step through ReLU -> Linear (``crown._relu_linear_step``, used
    from 16 boxes on) gives the intermediate and output bounds of the plain sweep, with and
    without a bias on the Linear below, and with split-clamped relaxations."""
    from certprune.verifiers.bounds import compute_bounds
    from tests.conftest import random_mlp
    m = random_mlp([6, 12, 10, 8, 3], seed=2)
    with torch.no_grad():
        m[2].bias = None  # a Linear without bias below the second ReLU
    g = build_graph(m, (6,))
    gen = torch.Generator().manual_seed(3)
    lo = torch.rand(40, 6, generator=gen, dtype=torch.float64) * 2 - 1
    hi = lo + 0.6 * torch.rand(40, 6, generator=gen, dtype=torch.float64)
    used = []
    real = crown._relu_linear_step
    monkeypatch.setattr(crown, "_relu_linear_step", lambda *a: used.append(real(*a)) or used[-1])
    splits = {g.relu_nodes[0]: (torch.rand(40, 12, generator=gen) * 3).long().sub(1).to(torch.int8)}
    fast = crown.intermediate(g, lo, hi, splits=splits)
    fast_out = crown.output_bounds(g, fast)
    b_fast = compute_bounds(m, lo, hi, engine="native", intermediate="all", return_intermediate=True)
    assert sum(u is not None for u in used) >= 4  # two intermediate nodes, two calls each
    monkeypatch.setattr(crown, "_relu_linear_step", lambda *a: None)
    slow = crown.intermediate(g, lo, hi, splits=splits)
    slow_out = crown.output_bounds(g, slow)
    b_slow = compute_bounds(m, lo, hi, engine="native", intermediate="all", return_intermediate=True)
    for i in slow.bounds:
        torch.testing.assert_close(fast.bounds[i][0], slow.bounds[i][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(fast.bounds[i][1], slow.bounds[i][1], rtol=0, atol=1e-12)
    torch.testing.assert_close(fast_out[0], slow_out[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(b_fast.lower, b_slow.lower, rtol=0, atol=1e-12)
    torch.testing.assert_close(b_fast.upper, b_slow.upper, rtol=0, atol=1e-12)
    for (a, b), (c, d) in zip(b_fast.intermediate, b_slow.intermediate):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-12)
        torch.testing.assert_close(b, d, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(NETS))
def test_concretising_in_place_gives_the_bounds_of_the_kept_coefficients(name):
    """``keep_lam=False`` (identity-spec and output passes) reuses the input coefficients' buffer
    for |lam|: same lower bounds as the pass that keeps them, which stay untouched."""
    g, lo, hi, st = _graph_and_boxes(name, seed=2, n=4)
    m = g.output_dim
    A = torch.cat([torch.eye(m), -torch.eye(m)]).double().unsqueeze(0)
    kept = crown.backward(g, g.output, A, st)
    lam = kept.lam_x.clone()
    fast = crown.backward(g, g.output, A.clone(), st, keep_lam=False)
    assert fast.lam_x is None
    torch.testing.assert_close(fast.lower, kept.lower, rtol=0, atol=1e-12)
    torch.testing.assert_close(kept.lam_x, lam, rtol=0, atol=0)
    yl, yu = crown.output_bounds(g, st)
    torch.testing.assert_close(yl, kept.lower.expand(4, 2 * m)[:, :m], rtol=0, atol=1e-12)
    d, gen = lo.shape[1], torch.Generator().manual_seed(3)
    x = lo + (hi - lo) * torch.rand(2000, 1, d, generator=gen, dtype=torch.float64)  # sampled soundness
    y = g.forward(x.reshape(-1, d)).reshape(2000, 4, -1)
    assert (y >= yl - 1e-9).all() and (y <= yu + 1e-9).all()


def test_same_shape_convs_keep_their_own_window_jacobians():
    """Two convolutions of one shape but different weights in one graph: each operator's cached
    window Jacobian (``Conv._transposed``) belongs to its own weight, so the CROWN bounds (patches
    mode, the Jacobian path taken) contain 10^4 sampled outputs per box and equal auto_LiRPA's;
    a weight changed in place rebuilds the Jacobian instead of reusing the old one."""
    from certprune.graph.ops_linear import Conv
    from certprune.verifiers.bounds import compute_bounds
    torch.manual_seed(7)
    m = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 3)).eval()
    with torch.no_grad():
        m[4].weight.copy_(-2.0 * m[2].weight.flip(0))  # the same shape, other values
    g = build_graph(m, (2, 8, 8))
    convs = [n.op for n in g.nodes if isinstance(n.op, Conv)]
    assert len(convs) == 3 and convs[1].weight.shape == convs[2].weight.shape
    gen = torch.Generator().manual_seed(8)
    lo = torch.rand(40, 128, generator=gen, dtype=torch.float64) * 2 - 1
    hi = lo + 0.4 * torch.rand(40, 128, generator=gen, dtype=torch.float64)
    nat = compute_bounds(g, lo, hi, engine="native", intermediate="all")
    ref = compute_bounds(m, lo, hi, engine="lirpa", input_shape=(2, 8, 8))
    j1, j2 = convs[1].jacobians(), convs[2].jacobians()
    shared = set(j1) & set(j2)  # keys the two same-shape convs both built
    assert any(j1[k] is not None for k in shared)
    assert all(not torch.equal(j1[k], j2[k]) for k in shared)
    torch.testing.assert_close(nat.lower, ref.lower, rtol=0, atol=1e-6)
    torch.testing.assert_close(nat.upper, ref.upper, rtol=0, atol=1e-6)
    for box in (0, 17, 39):
        x = lo[box] + (hi[box] - lo[box]) * torch.rand(10_000, 128, generator=gen, dtype=torch.float64)
        y = m.double()(x.reshape(-1, 2, 8, 8))
        assert (y >= nat.lower[box] - 1e-9).all() and (y <= nat.upper[box] + 1e-9).all()
    with torch.no_grad():
        convs[2].weight.mul_(-1.0)  # in place: a new version of the same tensor
    assert convs[2].jacobians() == {}  # nothing built from the old values is served
    convs[2]._transposed(torch.ones(1, 2, 1, 1, dtype=torch.float64), (3, 3), (0, 0))
    assert convs[2].jacobians() is not j2 and len(convs[2].jacobians()) == 1


@pytest.mark.parametrize("name", sorted(NETS))
def test_dense_conv_step_in_row_chunks_gives_the_same_bounds(name, monkeypatch):
    """The dense backward step of a convolution runs its rows in chunks (``Conv.CONV_CHUNK``
    output values per call): same bounds on every node as one call for all rows."""
    from certprune.graph.ops_linear import Conv
    g, lo, hi, _ = _graph_and_boxes(name, seed=3, n=5)
    monkeypatch.setattr(Conv, "CONV_CHUNK", 1 << 30)
    one = crown.intermediate(g, lo, hi)
    whole = [_dense(g, t, one) for t in range(1, len(g.nodes))]
    monkeypatch.setattr(Conv, "CONV_CHUNK", 100)  # a few rows per call
    st = crown.intermediate(g, lo, hi)
    for t in range(1, len(g.nodes)):
        l, u = _dense(g, t, st)
        torch.testing.assert_close(l, whole[t - 1][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(u, whole[t - 1][1], rtol=0, atol=1e-12)
    torch.testing.assert_close(crown.output_bounds(g, st)[0], crown.output_bounds(g, one)[0], rtol=0, atol=1e-12)
