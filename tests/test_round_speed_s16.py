"""Session-16 speed paths keep the exact results: box_points' int64 product against Python's
exact product (including boxes beyond int64), the fairness search's vectorised accounting against
the per-row loop, the numpy products of the forward pass against torch's, and keep_heap."""
from __future__ import annotations

import math
import platform
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from certprune.bounds.forward import concretize
from certprune.graph.op import LinFn
from certprune.graph.ops_linear import _two_products
from certprune.verifiers.fairness_bab import TwinBab
from certprune.verifiers.partition import box_points
from certprune.verifiers.unit_pool import Units


def _exact(lo, hi, dims=None):
    lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
    dims = range(lo.shape[1]) if dims is None else dims
    return [math.prod(int(hi[k, d]) - int(lo[k, d]) + 1 for d in dims) for k in range(len(lo))]


@pytest.mark.parametrize("scale", [10, 10 ** 4, 10 ** 6])
def test_box_points_matches_python_ints(scale):
    rng = np.random.default_rng(scale)
    lo = rng.integers(-scale, scale, size=(50, 5)).astype(np.float64)
    hi = lo + rng.integers(0, scale, size=(50, 5))
    got = box_points(lo, hi)
    assert got == _exact(lo, hi)  # scale 10^6: products up to ~10^30, the Python-int path
    assert all(type(v) is int for v in got)
    assert box_points(lo, hi, [0, 2]) == _exact(lo, hi, [0, 2])


def test_box_points_at_the_int64_edge():
    lo = np.zeros((3, 3))
    hi = np.array([[2 ** 21 - 1] * 3, [2 ** 20 - 1] * 3, [2 ** 21] * 3], dtype=np.float64)
    assert box_points(lo, hi) == [2 ** 63, 2 ** 60, (2 ** 21 + 1) ** 3]
    assert box_points(lo[1:2], hi[1:2]) == [2 ** 60]  # alone: the int64 path
    assert box_points(np.zeros((2, 0)), np.zeros((2, 0))) == [1, 1]  # no feature: one point


@pytest.mark.parametrize("width", [3, 2 ** 22])  # totals within int64, and beyond it (per-row loop)
def test_account_matches_the_row_loop(width):
    rng = np.random.default_rng(width)
    N, V, P = 40, 3, 4
    lo = np.zeros((N, 4))
    hi = lo + rng.integers(0, width, size=(N, 4))
    u = Units(lo, hi, rng.integers(0, P, N), rng.random((N, V)) < 0.7, np.zeros(N, np.int64), np.ones(N))
    fair, unfair = rng.random((N, V)) < 0.4, rng.random((N, V)) < 0.3
    free = [0, 1, 3]  # feature 2 plays the protected one
    st = SimpleNamespace(fair=[0] * P, unfair=[0] * P)
    want_f, want_u = [0] * P, [0] * P
    f, uf = fair & u.open, unfair & u.open & ~(fair & u.open)
    for k, n in enumerate(_exact(lo, hi, free)):
        want_f[u.part[k]] += n * int(f[k].sum())
        want_u[u.part[k]] += n * int(uf[k].sum())
    opened = u.open.copy()
    TwinBab._account(SimpleNamespace(free=free, _tally=lambda *a: None), u, fair, unfair, st)  # no cells here
    assert st.fair == want_f and st.unfair == want_u
    assert np.array_equal(u.open, opened & ~f & ~uf)
    if width > 3:
        assert sum(want_f) + sum(want_u) > 2 ** 63  # the big case really is beyond int64


def test_numpy_products_match_torch():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 5, 9, generator=g, dtype=torch.float64), torch.randn(7, 5, 9, generator=g, dtype=torch.float64)
    B = torch.randn(9, 6, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)
    ref = x @ B[0] + y @ B[1]
    got = _two_products(x, y, B)
    assert got.shape == ref.shape and torch.allclose(got, ref, rtol=1e-13, atol=1e-13)
    got32 = _two_products(x.float(), y.float(), (B[0].float(), B[1].float()))  # torch path, float32
    assert got32.dtype == torch.float32 and torch.allclose(got32.double(), ref, rtol=1e-4, atol=1e-4)
    for A in (torch.randn(7, 9, 4, generator=g, dtype=torch.float64),
              torch.randn(7, 4, 9, generator=g, dtype=torch.float64).transpose(1, 2)):  # strided, as forward passes give
        f = LinFn(A, torch.randn(7, 4, generator=g, dtype=torch.float64))
        lo = torch.randn(7, 9, generator=g, dtype=torch.float64)
        hi = lo + torch.rand(7, 9, generator=g, dtype=torch.float64)
        for upper in (False, True):
            c, r = (lo + hi) / 2, (hi - lo) / 2
            mid = torch.einsum("kn,knm->km", c, A)
            rad = torch.einsum("kn,knm->km", r, A.abs())
            want = (mid + rad if upper else mid - rad) + f.b
            assert torch.allclose(concretize(f, lo, hi, upper), want, rtol=1e-13, atol=1e-13)
            pts = lo[:, None, :] + torch.rand(7, 200, 9, generator=g, dtype=torch.float64) * (hi - lo)[:, None, :]
            vals = torch.einsum("kpn,knm->kpm", pts, A) + f.b[:, None, :]
            ext = vals.amax(1) if upper else vals.amin(1)
            assert torch.all(ext <= want + 1e-12) if upper else torch.all(ext >= want - 1e-12)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_heap_takes_effect_on_glibc():
    from certprune.heap import keep_heap
    assert keep_heap() is True
