"""Each operator's window step (``certprune.graph.windows.Windows`` through ``op.backward`` /
``ReLU.backward_relaxed``) equals its dense backward step: random windows, densified by placing
every window at its location (positions outside the node dropped), give the same input
coefficients and bias as the dense step on the densified coefficients. Conv (stride, padding,
bias), Scale (BatchNorm-like scale and shift, shift only), Pad, Add / Sub, ReLU (unstable and
stable neurons), the bounding-window sum of two contributions, and the concretisation."""
from __future__ import annotations

import pytest
import torch

from certprune.graph.ops_linear import Conv, Scale
from certprune.graph.ops_merge import AddSub
from certprune.graph.ops_shape import Pad
from certprune.graph.relu import ReLU
from certprune.graph.windows import Locations, Windows, unfold


def densify(A: Windows) -> torch.Tensor:
    """(K, Lc * R, C, H, W): every window placed at its location, outside positions dropped."""
    K, Lc, R, C, ph, pw = A.P.shape
    _, H, W = A.shape
    sh_, sw_, oh, ow = A.geo[2:]
    out = A.P.new_zeros(K, Lc, R, C, H + 2 * ph + oh + 64, W + 2 * pw + ow + 64)
    pad = ph + oh + 32, pw + ow + 32  # room above / left for windows that start outside
    for k, l in enumerate(range(*A.at.sl.indices(A.at.hw[0] * A.at.hw[1]))):
        i, j = divmod(l, A.at.hw[1])
        r0, c0 = i * sh_ - oh + pad[0], j * sw_ - ow + pad[1]
        out[:, k, :, :, r0:r0 + ph, c0:c0 + pw] += A.P[:, k]
    return out[..., pad[0]:pad[0] + H, pad[1]:pad[1] + W].reshape(K, Lc * R, C, H, W)


def random_windows(shape, geo, hw=(3, 4), sl=slice(1, 9), K=1, R=3, seed=0) -> Windows:
    g = torch.Generator().manual_seed(seed)
    Lc = len(range(*sl.indices(hw[0] * hw[1])))
    P = torch.randn(K, Lc, R, shape[0], geo[0], geo[1], generator=g, dtype=torch.float64)
    return Windows(P, geo, tuple(shape), Locations(hw, sl))


def _same(win, dense, atol=1e-12):
    torch.testing.assert_close(densify(win) if isinstance(win, Windows) else win, dense, rtol=0, atol=atol)


CONVS = [(1, 0, True), (2, 1, True), (2, 0, False), (1, 2, True)]


@pytest.mark.parametrize("jacobian", [True, False])
@pytest.mark.parametrize("stride,padding,bias", CONVS)
def test_conv_window_step_equals_the_transposed_convolution(stride, padding, bias, jacobian, monkeypatch):
    """Both ways of the window step: the cached window Jacobian (one product) and conv2d_input."""
    monkeypatch.setattr(Conv, "JACOBIAN_VALUES", (1 << 21) if jacobian else 0)
    g = torch.Generator().manual_seed(stride * 10 + padding)
    cin, cout, k = 3, 2, 3
    H_in = W_in = 9
    Ho = (H_in + 2 * padding - k) // stride + 1
    w = torch.randn(cout, cin, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(cout, generator=g, dtype=torch.float64) if bias else None
    op = Conv(w, b, (stride, stride), (padding, padding), (1, 1), 1, (cin, H_in, W_in), (cout, Ho, Ho))
    A = random_windows((cout, Ho, Ho), (2, 3, 1, 1, 1, 0), hw=(Ho - 1, Ho), sl=slice(2, 2 + Ho + 3))
    (win,), wb = op.backward(A)
    (den,), db = op.backward(densify(A))
    assert win.geo == op.window_geo(A.geo) and win.shape == (cin, H_in, W_in)
    assert (op.jacobians().get((cout, 2, 3) + win.geo[:2] + ((0, 0), torch.float64)) is not None) is jacobian
    _same(win, den)
    same = Windows(A.P[:, :1].expand_as(A.P), A.geo, A.shape, A.at)  # one window for all locations
    (w1,), _ = op.backward(same)
    (d1,), _ = op.backward(densify(same))
    _same(w1, d1)
    if bias:
        torch.testing.assert_close(wb, db, rtol=0, atol=1e-12)
    else:
        assert wb is None and db is None


@pytest.mark.parametrize("with_scale", [True, False])
def test_scale_window_step_equals_the_dense_step(with_scale):
    g = torch.Generator().manual_seed(3)
    shape = (2, 5, 6)
    scale = torch.randn(2, 1, 1, generator=g, dtype=torch.float64) if with_scale else None
    op = Scale(scale, torch.randn(2, 1, 1, generator=g, dtype=torch.float64))
    A = random_windows(shape, (3, 2, 1, 2, 1, 1))
    (win,), wb = op.backward(A)
    (den,), db = op.backward(densify(A))
    _same(win, den)
    torch.testing.assert_close(wb, db, rtol=0, atol=1e-12)


def test_pad_window_step_moves_the_geometry_only():
    op = Pad((1, 0, 2, 1))  # left, right, top, bottom
    A = random_windows((2, 8, 6), (3, 3, 2, 2, 0, 1))
    (win,), b = op.backward(A)
    (den,), _ = op.backward(densify(A))
    assert b is None and win.shape == (2, 5, 5) and win.geo == (3, 3, 2, 2, 2, 2)
    _same(win, den)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_addsub_window_step_and_the_bounding_window_sum(sign):
    op = AddSub(sign)
    A = random_windows((2, 6, 6), (2, 2, 1, 1, 0, 0), seed=1)
    (a, b), bias = op.backward(A)
    assert bias is None
    _same(a, densify(A))
    _same(b, sign * densify(A))
    B = random_windows((2, 6, 6), (3, 2, 1, 1, 1, 0), seed=2)  # another contribution, other window
    s = a + B
    assert s.geo == (3, 2, 1, 1, 1, 0) and s.P.shape[-2:] == (3, 2)
    _same(s, densify(A) + densify(B))
    with pytest.raises(ValueError):
        a + random_windows((2, 6, 6), (2, 2, 2, 1, 0, 0))  # other stride


def test_relu_window_step_equals_the_relaxed_dense_step():
    g = torch.Generator().manual_seed(5)
    N, shape = 3, (2, 5, 5)
    l = torch.randn(N, *shape, generator=g, dtype=torch.float64)
    u = l + torch.rand(N, *shape, generator=g, dtype=torch.float64) * 2
    r = ReLU.relax(l, u)
    assert r.unstable.any() and (~r.unstable).any()
    A = random_windows(shape, (3, 3, 2, 2, 1, 1), hw=(3, 3), sl=slice(0, 9))
    win, wb, loss = ReLU.backward_relaxed(A, r)
    den, db, _ = ReLU.backward_relaxed(densify(A), r)
    assert loss is None and win.batch == N
    _same(win, den)
    torch.testing.assert_close(wb, db, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        ReLU.backward_relaxed(A, r, record=True)


def test_concretize_equals_the_dense_minimum():
    from certprune.bounds.crown import concretize_lower
    g = torch.Generator().manual_seed(7)
    N, shape = 2, (1, 6, 7)
    lo = torch.rand(N, *shape, generator=g, dtype=torch.float64)
    hi = lo + torch.rand(N, *shape, generator=g, dtype=torch.float64)
    A = random_windows(shape, (4, 3, 2, 2, 1, 1), hw=(3, 3), sl=slice(0, 9))
    bias = torch.randn(1, A.rows, generator=g, dtype=torch.float64)
    D = densify(A).reshape(1, A.rows, -1)  # before: concretize overwrites P with |P| (the sweep's last use)
    got = A.concretize(bias, lo, hi)
    want = concretize_lower(D.clone(), bias, lo.reshape(N, -1), hi.reshape(N, -1))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    x = lo + (hi - lo) * torch.rand(500, N, *shape, generator=g, dtype=torch.float64)  # sampled: a lower bound
    vals = torch.einsum("mx,snx->snm", D[0], x.reshape(500, N, -1)) + bias
    assert (vals >= got - 1e-12).all()
    assert unfold(lo, A.geo, (3, 3)).shape == (N, 9, 1, 12)


def test_dense_conversion_equals_the_placed_windows():
    """``Windows.dense`` (where the sweep leaves windows) scatters each window to its location,
    also for a chunk of locations that starts and ends inside a row of the target."""
    A = random_windows((2, 6, 7), (4, 3, 2, 2, 1, 2), hw=(3, 4), sl=slice(1, 11), K=2)
    _same(A.dense(), densify(A))
    B = random_windows((2, 6, 7), (5, 5, 2, 2, 2, 2), hw=(3, 4), sl=slice(0, 12), seed=4)  # window > node
    _same(B.dense(), densify(B))

