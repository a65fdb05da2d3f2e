"""Affine operators with weights: Linear (Gemm / 2-D MatMul), MatMul by a constant, Conv1d/2d
(as convolutions: backward through the transposed convolution, never densified) and elementwise scale+shift
(BatchNorm in eval mode, Mul/Div/Add/Sub by constants, Neg)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from certprune.graph.op import Interval, Op, flat_rows, sum_trailing, unflat_rows


def _linear_encode(op, x, weight: torch.Tensor, bias: torch.Tensor | None, flat: bool = False):
    """``x @ W.T + b`` on the last dim of an expression (on the flattened value if ``flat``): W's
    rows, block-diagonal over the leading dims (exact encoding of Linear and Dense)."""
    import numpy as np
    import scipy.sparse as sp

    from certprune.graph.encode import cached
    rows = int(np.prod(x.shape[:-1])) if len(x.shape) > 1 and not flat else 1
    if rows == 1 and isinstance(x.M, np.ndarray):  # dense rows: one BLAS product
        b = None if bias is None else bias.numpy()
        return x.map(weight.numpy(), b, ())
    W = cached(op, ("w",), lambda: sp.csr_matrix(weight.numpy()))
    J = W if rows == 1 else cached(op, ("kron", rows), lambda: sp.kron(sp.eye(rows), W, format="csr"))
    b = None if bias is None else np.tile(bias.numpy(), rows)
    return x.map(J, b, ())


class Linear(Op):
    """``y = x @ W.T + b`` on the last dim; W (out, in), b (out,) or None."""

    kind = "linear"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias
        self.abs_weight = weight.abs()
        # [W | b]: one matrix product carries the bias term of the backward step as well
        self.augmented = None if bias is None else torch.cat([weight, bias.unsqueeze(1)], 1)

    def forward(self, x):
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias

    def interval(self, b: Interval) -> Interval:
        c, r = (b[0] + b[1]) / 2, (b[1] - b[0]) / 2
        zc, zr = self.forward(c), r @ self.abs_weight.T
        return zc - zr, zc + zr

    def encode(self, enc, x):
        return _linear_encode(self, x, self.weight, self.bias)

    def backward(self, A):
        if self.bias is None:
            return [A @ self.weight], None
        out = A @ self.augmented
        return [out[..., :-1]], sum_trailing(out[..., -1:])


class MatMul(Op):
    """``y = x @ W`` for a constant W (ONNX MatMul on tensors of rank > 2)."""

    kind = "matmul"

    def __init__(self, weight: torch.Tensor):
        self.weight, self.abs_weight = weight, weight.abs()

    def forward(self, x):
        return torch.matmul(x, self.weight)

    def interval(self, b: Interval) -> Interval:
        c, r = (b[0] + b[1]) / 2, (b[1] - b[0]) / 2
        zc, zr = torch.matmul(c, self.weight), torch.matmul(r, self.abs_weight)
        return zc - zr, zc + zr

    def backward(self, A):
        return [torch.matmul(A, self.weight.transpose(-1, -2))], None


class Conv(Op):
    """1-D or 2-D convolution with zero padding; backward is the transposed convolution."""

    kind = "conv"

    def __init__(self, weight, bias, stride, padding, dilation, groups, in_shape, out_shape):
        self.weight, self.bias, self.abs_weight = weight, bias, weight.abs()
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.d = weight.dim() - 2
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def _conv(self, x, w, b):
        f = F.conv1d if self.d == 1 else F.conv2d
        return f(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x):
        return self._conv(x, self.weight, self.bias)

    def interval(self, b: Interval) -> Interval:
        c, r = (b[0] + b[1]) / 2, (b[1] - b[0]) / 2
        zc, zr = self._conv(c, self.weight, self.bias), self._conv(r, self.abs_weight, None)
        return zc - zr, zc + zr

    def encode(self, enc, x):
        from certprune.graph.encode import affine_encode
        bias = None
        if self.bias is not None:
            bias = (torch.zeros(1, *self.out_shape, dtype=self.bias.dtype)
                    + self.bias.reshape(-1, *([1] * self.d))).reshape(-1).numpy()
        return affine_encode(self, x, lambda e: self._conv(e, self.weight, None), bias)

    def backward(self, A):
        K, m = A.shape[:2]
        # the transposed convolution, as the input gradient of the convolution (measured 1.6x
        # faster than F.conv_transpose2d in float64 on CPU; same values)
        f = torch.nn.grad.conv1d_input if self.d == 1 else torch.nn.grad.conv2d_input
        out = f((K * m, *self.in_shape), self.weight, flat_rows(A), self.stride, self.padding, self.dilation,
                self.groups)
        bias = None
        if self.bias is not None:
            spatial = tuple(range(3, A.dim()))
            bias = A.sum(dim=spatial) @ self.bias
        return [unflat_rows(out, K, m)], bias


class Scale(Op):
    """Elementwise ``y = x * scale + shift``; scale/shift broadcast to the per-sample shape."""

    kind = "scale"

    def __init__(self, scale: torch.Tensor | None, shift: torch.Tensor | None):
        self.scale, self.shift = scale, shift

    def forward(self, x):
        y = x if self.scale is None else x * self.scale
        return y if self.shift is None else y + self.shift

    def interval(self, b: Interval) -> Interval:
        c, r = (b[0] + b[1]) / 2, (b[1] - b[0]) / 2
        zc = self.forward(c)
        zr = r if self.scale is None else r * self.scale.abs()
        return zc - zr, zc + zr

    def encode(self, enc, x):
        import scipy.sparse as sp
        one = torch.ones(1, *x.shape, dtype=torch.float64)
        sc = (one if self.scale is None else one * self.scale).reshape(-1).numpy()
        sh = None if self.shift is None else (torch.zeros_like(one) + self.shift).reshape(-1).numpy()
        return x.map(sp.diags(sc, format="csr"), sh, ())

    def backward(self, A):
        bias = None if self.shift is None else sum_trailing(A * self.shift)
        return [A if self.scale is None else A * self.scale], bias


class Dense(Op):
    """Any other affine layer as one dense matrix on the flattened sample (a fallback read off
    the unit basis by ``affine._densify``; convolutions never take this path)."""

    kind = "dense"

    def __init__(self, weight, bias, in_shape, out_shape):
        self.linear = Linear(weight, bias)
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    def forward(self, x):
        return self.linear.forward(x.reshape(x.shape[0], -1)).reshape(x.shape[0], *self.out_shape)

    def interval(self, b: Interval) -> Interval:
        l, u = self.linear.interval((b[0].reshape(len(b[0]), -1), b[1].reshape(len(b[1]), -1)))
        return l.reshape(len(l), *self.out_shape), u.reshape(len(u), *self.out_shape)

    def encode(self, enc, x):
        return _linear_encode(self, x, self.linear.weight, self.linear.bias, flat=True)

    def backward(self, A):
        K, m = A.shape[:2]
        (a,), bias = self.linear.backward(A.reshape(K, m, -1))
        return [a.reshape(K, m, *self.in_shape)], bias
