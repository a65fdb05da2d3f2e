"""Shape operators (no arithmetic): Reshape (Flatten / Reshape / Squeeze / Unsqueeze / Unflatten),
Permute (Transpose), Select (Slice / Gather with constant indices), zero Pad, and the
nonnegative linear pooling ops (AveragePool, global average) through their vector-Jacobian
product, which is exact for a linear map."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from certprune.graph.op import FnPair, Interval, Op, flat_rows, signed_forward, unflat_rows
from certprune.graph.windows import Windows
from certprune.semantics import gamma64


class Structural(Op):
    """An operator that only moves (or zero-fills) values: its interval image, forward linear map,
    exact encoding and float32 error are the operator applied to the bounds / functions /
    expressions / errors (no rounding happens)."""

    def interval(self, b: Interval) -> Interval:
        return self.forward(b[0]), self.forward(b[1])

    def encode(self, enc, x):
        from certprune.graph.encode import moved_encode
        return moved_encode(self, x)

    def forward_linear(self, f: FnPair) -> FnPair:
        return signed_forward(f, self.forward, self.forward, None, None)  # moves entries: no signs

    def float32_error(self, es, ms):
        return self.forward(es[0])

    def float64_residual(self, ms):
        return None  # moves values: interval and backward step are exact

    def abs_map(self, es):
        return self.forward(es[0])


class Reshape(Structural):
    """Row-major reshape of each sample from ``in_shape`` to ``out_shape``."""

    kind = "reshape"

    def __init__(self, in_shape, out_shape):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.out_shape)

    def backward(self, A):
        return [A.reshape(A.shape[0], A.shape[1], *self.in_shape)], None

    def encode(self, enc, x):
        return x.reshaped(self.out_shape)  # row-major: the flat order is unchanged


class Permute(Structural):
    """Transpose of the per-sample dims; ``perm`` indexes the batched tensor, ``perm[0] == 0``."""

    kind = "permute"

    def __init__(self, perm):
        self.perm = tuple(int(p) for p in perm)
        inv = [0] * len(self.perm)
        for i, p in enumerate(self.perm):
            inv[p] = i
        self.inv = tuple(inv)

    def forward(self, x):
        return x.permute(*self.perm)

    def backward(self, A):
        return [A.permute(0, 1, *[i + 1 for i in self.inv[1:]])], None



class Select(Structural):
    """Fixed entries of each flattened sample: ``x.reshape(N, -1)[:, index]`` shaped ``out_shape``."""

    kind = "select"

    def __init__(self, index: torch.Tensor, in_shape, out_shape):
        self.index, self.in_shape, self.out_shape = index.long(), tuple(in_shape), tuple(out_shape)
        self.n_in = 1
        for d in in_shape:
            self.n_in *= int(d)

    def float64_residual(self, ms):
        """Exact unless an entry is selected several times (Gather): the backward step then sums
        the coefficients of its copies."""
        repeats = int(torch.unique(self.index, return_counts=True)[1].max()) if self.index.numel() else 0
        if repeats <= 1:
            return None
        return gamma64(2 * (repeats + 4)) * self.forward(ms[0])

    def forward(self, x):
        return x.reshape(x.shape[0], -1)[:, self.index].reshape(x.shape[0], *self.out_shape)

    def backward(self, A):
        K, m = A.shape[:2]
        out = A.new_zeros(K, m, self.n_in)
        out.index_add_(2, self.index, A.reshape(K, m, -1))
        return [out.reshape(K, m, *self.in_shape)], None



class Pad(Structural):
    """Zero padding; ``pad`` in torch order (last dim first, before/after pairs)."""

    kind = "pad"

    def __init__(self, pad):
        self.pad = tuple(int(p) for p in pad)

    def forward(self, x):
        return F.pad(x, self.pad)

    def window_geo(self, g):
        """2-D zero padding only moves a window: by the top / left pads."""
        if len(self.pad) != 4 or min(self.pad) < 0:
            return None
        ph, pw, sh, sw, oh, ow = g
        return ph, pw, sh, sw, oh + self.pad[2], ow + self.pad[0]

    def backward(self, A):
        if isinstance(A, Windows):
            C, H, W = A.shape
            l, r, t, b = self.pad
            return [A.moved(A.P, self.window_geo(A.geo), (C, H - t - b, W - l - r))], None
        return [F.pad(A, tuple(-p for p in self.pad))], None



class MonotoneLinear(Op):
    """A linear map with nonnegative weights given as a torch function (average pooling):
    interval = (f(lo), f(hi)); backward = its vector-Jacobian product."""

    kind = "pool"

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], in_shape, label: str):
        self.fn, self.in_shape, self.label = fn, tuple(in_shape), label

    def forward(self, x):
        return self.fn(x)

    def interval(self, b: Interval) -> Interval:
        return self.fn(b[0]), self.fn(b[1])

    def backward(self, A):
        K, m = A.shape[:2]
        with torch.enable_grad():
            x = torch.zeros(K * m, *self.in_shape, dtype=A.dtype, requires_grad=True)
            g, = torch.autograd.grad(self.fn(x), x, flat_rows(A), create_graph=A.requires_grad)
        return [unflat_rows(g, K, m)], None

    def forward_linear(self, f: FnPair) -> FnPair:
        return signed_forward(f, self.fn, self.fn, None, None)  # nonnegative weights, no offset

    def abs_map(self, es):
        return self.fn(es[0])  # nonnegative weights, no offset

    def float64_residual(self, ms):
        """``gamma_k fn(m)`` with k covering sums over the whole input / output (average pooling:
        nonnegative weights, each output a rounded mean, the backward step its vector-Jacobian
        product)."""
        out = self.fn(ms[0])
        return gamma64(2 * (math.prod(self.in_shape) + math.prod(out.shape[1:]) + 16)) * out

    def __repr__(self) -> str:
        return f"MonotoneLinear({self.label})"
