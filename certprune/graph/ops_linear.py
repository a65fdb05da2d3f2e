"""Affine operators with weights: Linear (Gemm / 2-D MatMul), MatMul by a constant, Conv1d/2d
(as convolutions: backward through the transposed convolution, never densified) and elementwise scale+shift
(BatchNorm in eval mode, Mul/Div/Add/Sub by constants, Neg)."""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from certprune.graph.op import FnPair, Interval, LinFn, Op, flat_rows, signed_forward, sum_trailing, unflat_rows
from certprune.graph.windows import Windows
from certprune.semantics import TINY64, gamma, gamma64


def _pos_neg(op, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(max(w, 0), min(w, 0)), computed once per operator."""
    pn = op.__dict__.get("_pn")
    if pn is None:
        pn = op._pn = (w.clamp(min=0), w.clamp(max=0))
    return pn


def _linear_encode(op, x, weight: torch.Tensor, bias: torch.Tensor | None, flat: bool = False):
    """``x @ W.T + b`` on the last dim of an expression (on the flattened value if ``flat``): W's
    rows, block-diagonal over the leading dims (exact encoding of Linear and Dense)."""
    import scipy.sparse as sp

    from certprune.graph.encode import cached
    rows = int(np.prod(x.shape[:-1])) if len(x.shape) > 1 and not flat else 1
    if rows == 1 and x.dense:  # dense rows: one BLAS product
        b = None if bias is None else bias.numpy()
        return x.map(weight.numpy(), b, ())
    W = cached(op, ("w",), lambda: sp.csr_matrix(weight.numpy()))
    J = W if rows == 1 else cached(op, ("kron", rows), lambda: sp.kron(sp.eye(rows), W, format="csr"))
    b = None if bias is None else np.tile(bias.numpy(), rows)
    return x.map(J, b, ())


_CHUNKS = 8  # box groups of Linear.forward_linear_relaxed's unstable-neuron products
_BLAS_THREADS: list[int] = []  # the thread count last given to numpy's BLAS


def matmul(A: torch.Tensor, W: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``A @ W`` for A (..., n) and a 2-D W (n, p). float64 CPU products without autograd run
    through numpy's BLAS (OpenBLAS: measured 2.5-3x faster than torch's MKL on the small-inner-
    dimension products of backward passes on AMD CPUs; same values up to float64 rounding),
    with as many BLAS threads as torch uses (``torch.set_num_threads``). ``out`` (2-D A only):
    a float64 buffer of the result's shape, rows possibly strided, written and returned."""
    if out is not None:
        if (A.dtype != torch.float64 or W.dtype != torch.float64 or A.requires_grad or W.requires_grad
                or A.device.type != "cpu" or A.dim() != 2):
            out.copy_(A @ W)
            return out
        _blas_threads()
        np.matmul(A.contiguous().numpy(), W.contiguous().numpy(), out=out.numpy())
        return out
    if (A.dtype != torch.float64 or W.dtype != torch.float64 or A.requires_grad or W.requires_grad
            or A.device.type != "cpu" or A.dim() < 2 or A.numel() < (1 << 14)):
        return A @ W
    _blas_threads()
    a = A.reshape(-1, A.shape[-1])
    if not a.is_contiguous():
        a = a.contiguous()
    return torch.from_numpy(a.numpy() @ W.numpy()).reshape(*A.shape[:-1], W.shape[1])



def _blas_threads() -> None:
    """Give numpy's BLAS as many threads as torch uses (once per change). Where the environment
    already gave OpenBLAS that count (``OPENBLAS_NUM_THREADS``, else ``OMP_NUM_THREADS``, which
    it reads at load), threadpoolctl is not asked: its library scan costs ~10 ms, a third of a
    quick model's first round."""
    n = torch.get_num_threads()
    if not _BLAS_THREADS or _BLAS_THREADS[-1] != n:
        env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        if not _BLAS_THREADS and env is not None and env.strip() == str(n):
            _BLAS_THREADS.append(n)
            return
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(limits=n, user_api="blas")
        except Exception:  # no threadpoolctl: numpy keeps its own thread count
            pass
        _BLAS_THREADS.append(n)


def batched_mv(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum_n A[k, i, n] * v[k, n]``, (K', m), for A (K, m, n) and v (N, n) with K in {1, N}
    (K' = max(K, N)). float64 CPU without autograd: K = 1 is one 2-D product, K = N numpy's
    stacked products (measured 3-9x faster than torch's bmm on (1024, 20-40, 20-50) blocks)."""
    if (A.dtype != torch.float64 or v.dtype != torch.float64 or A.requires_grad or v.requires_grad
            or A.device.type != "cpu" or A.dim() != 3):
        return (A @ v.unsqueeze(-1)).squeeze(-1)
    if A.shape[0] == 1:
        return matmul(v, A[0].T)
    if A.shape[0] != v.shape[0]:
        return (A @ v.unsqueeze(-1)).squeeze(-1)
    return torch.from_numpy(A.numpy() @ v.contiguous().numpy()[..., None])[..., 0]


def _two_products(x: torch.Tensor, y: torch.Tensor, B: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``x @ B[0] + y @ B[1]`` over the last dim of x, y (same shape), as one 2-D product and one
    accumulating ``addmm_`` (any summation order of the 2 n terms: the rounding bound of one
    product of inner length 2 n holds)."""
    lead, n = x.shape[:-1], x.shape[-1]
    if (x.dtype == y.dtype == B[0].dtype == B[1].dtype == torch.float64 and x.device.type == "cpu"
            and not (x.requires_grad or y.requires_grad or B[0].requires_grad or B[1].requires_grad)):
        # numpy's BLAS, as :func:`matmul`: 25-45 % faster than torch's mm + addmm_ on the
        # (N dz, h) x (h, 2 h') products of the forward twin pass (Bank, German models); the sum of
        # two products of inner length n is one summation order of the 2 n terms
        _blas_threads()
        xn, yn = x.reshape(-1, n).contiguous().numpy(), y.reshape(-1, n).contiguous().numpy()
        out = xn @ B[0].numpy()
        out += yn @ B[1].numpy()
        return torch.from_numpy(out).reshape(*lead, out.shape[-1])
    out = x.reshape(-1, n) @ B[0]
    out.addmm_(y.reshape(-1, n), B[1])
    return out.reshape(*lead, out.shape[-1])


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
            return [matmul(A, self.weight)], None
        out = matmul(A, self.augmented)
        return [out[..., :-1]], sum_trailing(out[..., -1:])

    def forward_linear(self, f: FnPair) -> FnPair:
        lo, up = f
        if lo is up or lo.A.shape[0] != up.A.shape[0]:
            wp, wn = _pos_neg(self, self.weight)
            return signed_forward(f, lambda x: x @ self.weight.T, lambda x: x @ wp.T, lambda x: x @ wn.T, self.bias)
        # [L', U'] = L @ [W+^T, W-^T] + U @ [W-^T, W+^T]: both functions in one output, two
        # accumulating products (no concatenated copy of [L, U]: measured 15-35 % faster than one
        # product on it on the Bank twin, where the copy cost a third of the step)
        B = self.__dict__.get("_stacked")
        if B is None:
            wp, wn = _pos_neg(self, self.weight)
            B = self._stacked = (torch.cat([wp.T, wn.T], 1), torch.cat([wn.T, wp.T], 1))
        h = self.weight.shape[0]
        A, b = _two_products(lo.A, up.A, B), _two_products(lo.b, up.b, B)
        if self.bias is not None:
            b = b + self.bias.repeat(2)
        return LinFn(A[..., :h], b[..., :h]), LinFn(A[..., h:], b[..., h:])

    def forward_linear_relaxed(self, f: LinFn, r) -> FnPair:
        """Forward step of ``W relu(v) + b`` for a shared input function ``v = f`` (K = 1, shape
        (h,)) and a ReLU relaxation ``r`` (N, h) on it: lower ``alpha v``, upper ``s v + t``
        (alpha, s >= 0), the same functions as ``forward_linear(forward_relaxed(f, r))`` without
        its four products of the (N, n_in, h) relaxed functions with W+ and W-.

        Per box the lower map is ``C = alpha W+ + s W-`` and the upper ``s W+ + alpha W-``, that is
        ``alpha W + g W-`` and ``alpha W + g W+`` with ``g = s - alpha`` (0 on stable neurons). With
        few outputs (m < 2 n_in, n_in the function's columns) C is built per box, (N, m, h), and
        mapped by numpy's stacked products ``A0 C^T`` straight into the (N, n_in, m) layout the
        next step reads. With more: one shared product ``(A0 alpha) W^T`` of (N n_in, h)
        rows plus, per box, a product over its unstable neurons only (``A0[:, U] g_U`` times the
        rows U of W-^T / W+^T; the boxes in ``_CHUNKS`` groups by their unstable count, each
        padded to its largest). Measured against the unfused step on the Adult / Bank / German
        twins' first-layer shapes (N 670-4,096, n_in 12-19, h 12-150, m 1-100, ~5 % unstable):
        1.2-4.7x faster. The offsets are (N, h) x (h, m) products of the slopes times ``b0``.
        Rounding, at any point of the box, against the exact map of the exact relaxation: C path,
        each entry of C (``C_up = C_lo + g |W|``) within ``9 u |W|`` and a product of inner length
        h, so within ``gamma_{h + 12} |W| mag``; grouped path, the same nonzero terms split as
        ``alpha w v + g w v`` (``|alpha| + |g| <= 2``, ``g`` rounded once) in at most 2 h + 4
        roundings, so within ``gamma_{4 h + 8} |W| mag``: both inside the Linear's residual
        (``float64_residual``, ``gamma_{4 h + 2 m + 32} (|W| mag + |b|)``)."""
        a, s, t = r.alpha, r.slope, r.intercept
        A0, b0 = f.A[0], f.b[0]  # (n_in, h), (h,)
        N, (m, h) = len(a), self.weight.shape
        wp, wn = _pos_neg(self, self.weight)
        bias = 0.0 if self.bias is None else self.bias
        fast = (A0.dtype == a.dtype == s.dtype == t.dtype == torch.float64 and a.device.type == "cpu"
                and not (A0.requires_grad or a.requires_grad or s.requires_grad or t.requires_grad))
        n = A0.shape[0]
        ab, sb = a * b0, s * b0  # matmul: numpy's BLAS for float64 CPU, torch otherwise
        b_lo = matmul(ab, wp.T) + matmul(sb, wn.T) + matmul(t, wn.T) + bias
        b_up = matmul(sb, wp.T) + matmul(ab, wn.T) + matmul(t, wp.T) + bias
        if m < 2 * n or not fast:  # few outputs: per-box weights C (N, m, h) no larger than the functions
            g = (s - a).unsqueeze(1)
            C_lo = (a.unsqueeze(1) * self.weight).addcmul_(g, wn)  # alpha W + g W-
            C_up = torch.addcmul(C_lo, g, self.abs_weight)  # alpha W + g W+ (3 passes over C, not 4)
            if not fast:
                return LinFn(A0 @ C_lo.transpose(1, 2), b_lo), LinFn(A0 @ C_up.transpose(1, 2), b_up)
            _blas_threads()
            A0n = A0.contiguous().numpy()
            lo, up = (torch.from_numpy(np.matmul(A0n, C.numpy().transpose(0, 2, 1))) for C in (C_lo, C_up))
            return LinFn(lo, b_lo), LinFn(up, b_up)
        _blas_threads()
        base = matmul((A0.unsqueeze(0) * a.unsqueeze(1)).reshape(N * n, h), self.weight.T).reshape(N, n, m)
        g = s - a
        nz = g != 0
        cnt = nz.sum(1)
        lo, up = base.clone(), base
        order = torch.argsort(cnt)
        c_sorted = cnt[order]
        W_n, W_p = wn.T, wp.T  # (h, m)
        for c in range(_CHUNKS):  # boxes in order of their unstable count, each chunk padded to its largest
            rows = order[c * N // _CHUNKS:(c + 1) * N // _CHUNKS]
            k = int(c_sorted[(c + 1) * N // _CHUNKS - 1]) if len(rows) else 0
            if k == 0:
                continue
            idx = torch.argsort(nz[rows].to(torch.int8), dim=1, descending=True, stable=True)[:, :k]
            X = (A0.T[idx] * torch.gather(g[rows], 1, idx).unsqueeze(2)).transpose(1, 2).numpy()  # (r, n, k)
            lo.index_add_(0, rows, torch.from_numpy(np.matmul(X, W_n[idx].numpy())))  # padded: g = 0
            up.index_add_(0, rows, torch.from_numpy(np.matmul(X, W_p[idx].numpy())))
        return LinFn(lo, b_lo), LinFn(up, b_up)

    rounding_abs: tuple[torch.Tensor, torch.Tensor | None] | None = None
    """(|W|, |b|) of the float32 computation this operator stands for, where it differs from the
    operator's own (a two-logit difference y1 - y0 computes both rows: |w1| + |w0|)."""

    def float32_error(self, es, ms):
        """Higham Thm 3.5: ``e |W|^T + gamma_{n+1} (m |W|^T + |b|)`` (any order, FMA or not)."""
        aw, ab = self.rounding_abs or (self.abs_weight, None if self.bias is None else self.bias.abs())
        t = ms[0] @ aw.T
        return es[0] @ aw.T + gamma(aw.shape[1] + 1) * (t if ab is None else t + ab)

    def abs_map(self, es):
        return matmul(es[0], self.abs_weight.T)

    def float64_residual(self, ms):
        """``gamma_k (|W| m + |b|)``: the interval image (centre and radius products of inner
        length n_in, their sum, the box's rounded centre/radius: 2 gamma_{n_in+4}) and the
        backward step (``A @ [W | b]``, inner length n_out, and the bias summed over leading dims:
        gamma_{size}), k doubled again for the rounding of r itself and of widening by it."""
        n_in = self.weight.shape[1]
        size = math.prod(ms[0].shape[1:-1]) * self.weight.shape[0]
        t = matmul(ms[0], self.abs_weight.T)
        if self.bias is not None:
            t = t + self.bias.abs()
        return gamma64(2 * (2 * n_in + size + 16)) * t


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

    def forward_linear(self, f: FnPair) -> FnPair:
        wp, wn = _pos_neg(self, self.weight)
        return signed_forward(f, lambda x: torch.matmul(x, self.weight), lambda x: torch.matmul(x, wp),
                              lambda x: torch.matmul(x, wn), None)

    def float32_error(self, es, ms):
        k = self.weight.shape[-2]
        return torch.matmul(es[0], self.abs_weight) + gamma(k) * torch.matmul(ms[0], self.abs_weight)

    def abs_map(self, es):
        return torch.matmul(es[0], self.abs_weight)

    def float64_residual(self, ms):
        """As Linear: forward inner length p, backward q (W (p, q))."""
        p, q = self.weight.shape[-2:]
        return gamma64(2 * (2 * p + q + 16)) * torch.matmul(ms[0], self.abs_weight)


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

    def window_geo(self, g):
        """A window grows to ``(ph - 1) * stride + k`` and moves by the padding (2-D, ungrouped,
        undilated convolutions; others have no window step)."""
        if self.d != 2 or self.groups != 1 or tuple(self.dilation) != (1, 1):
            return None
        ph, pw, sh, sw, oh, ow = g
        kh, kw = self.weight.shape[2:]
        (s0, s1), (p0, p1) = self.stride, self.padding
        return (ph - 1) * s0 + kh, (pw - 1) * s1 + kw, sh * s0, sw * s1, oh * s0 + p0, ow * s1 + p1

    CONV_CHUNK = 1 << 18  # values of the transposed convolution's output per call of the dense backward step
    JACOBIAN_VALUES = 1 << 21  # largest Jacobian kept (16 MB in float64)
    JACOBIAN_SPREAD = 12  # ... and only where an output covers at most this many kernel areas

    def jacobians(self) -> dict:
        """The window Jacobians built so far for the current weight tensor, by (C, h, w, H, W,
        padding, dtype): they sit on this operator (never shared with another), and a new or
        in-place changed weight (tensor identity, version counter) starts an empty dict."""
        held = self.__dict__.get("_jac")
        if held is None or held[0] is not self.weight or held[1] != self.weight._version:
            held = self._jac = (self.weight, self.weight._version, {})
        return held[2]

    def _transposed(self, P: torch.Tensor, out_hw, padding) -> torch.Tensor:
        """The transposed convolution of windows P (B, C, h, w) to (B, C_in, *out_hw) (2-D): one
        BLAS product with its Jacobian (C * h * w, C_in * H * W), built once per shape and weight and
        kept on the operator, where that is small (``JACOBIAN_VALUES``), the output small next to the
        kernel (``JACOBIAN_SPREAD``) and there are at least as many rows as Jacobian rows; else
        ``conv2d_input``. Measured on the windows of patches mode: oval21 1.6x, MNIST convnet 2.2x,
        sri_resnet_a 7x7 windows 1.2x faster (in isolation; in the pass: MNIST conv node 38 -> 31
        ms); 2-5x slower on larger outputs (28x28 from a 4x4 kernel, 16x16 on oval21), hence the
        spread rule. Not for the dense step: on the MNIST convnet's 5x5 node it won 1.5x in
        isolation but lost in the pass (Linear node 110 -> 130 ms). Same values up to rounding."""
        B, C, h, w = P.shape
        ci, (kh, kw) = self.in_shape[0], self.weight.shape[2:]
        H, W = out_hw
        key = (C, h, w, H, W, tuple(padding), P.dtype)
        cache = self.jacobians()
        if key not in cache:
            small = C * h * w * ci * H * W <= self.JACOBIAN_VALUES and H * W <= self.JACOBIAN_SPREAD * kh * kw
            J = None
            if small:
                eye = torch.eye(C * h * w, dtype=P.dtype).reshape(-1, C, h, w)
                J = torch.nn.grad.conv2d_input((C * h * w, ci, H, W), self.weight.to(P.dtype), eye, self.stride,
                                               padding, self.dilation, self.groups).reshape(C * h * w, -1)
            cache[key] = J
        J = cache[key]
        if J is None or B < J.shape[0]:
            return torch.nn.grad.conv2d_input((B, ci, H, W), self.weight.to(P.dtype), P, self.stride, padding,
                                              self.dilation, self.groups)
        return matmul(P.reshape(B, -1), J).reshape(B, ci, H, W)

    def _backward_windows(self, A: Windows):
        """The transposed convolution of every window (unpadded: the geometry carries the padding)."""
        P = A.masked()
        K, Lc, R, C, ph, pw = P.shape
        bias = None if self.bias is None else (P.sum((-2, -1)) @ self.bias).reshape(K, Lc * R)
        g = self.window_geo(A.geo)
        same = Lc > 1 and P.stride(1) == 0  # the same windows at every location (the identity spec)
        Q = P[:, :1] if same else P
        out = self._transposed(Q.reshape(-1, C, ph, pw), g[:2], (0, 0))
        out = out.reshape(K, Q.shape[1], R, *out.shape[1:])
        return [A.moved(out.expand(K, Lc, *out.shape[2:]) if same else out, g, self.in_shape)], bias

    def backward(self, A):
        if isinstance(A, Windows):
            return self._backward_windows(A)
        K, m = A.shape[:2]
        # the transposed convolution, as the input gradient of the convolution (measured 1.6x
        # faster than F.conv_transpose2d in float64 on CPU; same values)
        f = torch.nn.grad.conv1d_input if self.d == 1 else torch.nn.grad.conv2d_input
        rows, B = flat_rows(A), K * m
        per = max(1, self.CONV_CHUNK // max(1, math.prod(self.in_shape)))
        if B <= per or A.requires_grad:
            out = f((B, *self.in_shape), self.weight, rows, self.stride, self.padding, self.dilation, self.groups)
        else:  # in row chunks whose input and output stay in cache
            out = A.new_empty(B, *self.in_shape)
            for s in range(0, B, per):
                e = min(B, s + per)
                out[s:e] = f((e - s, *self.in_shape), self.weight, rows[s:e], self.stride, self.padding,
                             self.dilation, self.groups)
        bias = None
        if self.bias is not None:
            spatial = tuple(range(3, A.dim()))
            bias = A.sum(dim=spatial) @ self.bias
        return [unflat_rows(out, K, m)], bias

    def forward_linear(self, f: FnPair) -> FnPair:
        wp, wn = _pos_neg(self, self.weight)
        shift = None if self.bias is None else self.bias.reshape(-1, *([1] * self.d))
        return signed_forward(f, lambda x: self._conv(x, self.weight, None), lambda x: self._conv(x, wp, None),
                              lambda x: self._conv(x, wn, None), shift)

    def float32_error(self, es, ms):
        """As Linear, with n = the products per output (in channels / groups x kernel size)."""
        k = self.weight[0].numel()
        ab = None if self.bias is None else self.bias.abs()
        return self._conv(es[0], self.abs_weight, None) + gamma(k + 1) * self._conv(ms[0], self.abs_weight, ab)

    def abs_map(self, es):
        return self._conv(es[0], self.abs_weight, None)

    def float64_residual(self, ms):
        """As Linear, with the forward inner length the kernel volume (in channels / groups x
        kernel size), the backward one at most out channels x kernel size (transposed
        convolution) or a window's volume (patches mode, < the node's size), and the bias term
        summed over the node."""
        k = self.weight[0].numel()
        back = self.weight.shape[0] * math.prod(self.weight.shape[2:])
        ab = None if self.bias is None else self.bias.abs()
        return gamma64(2 * (2 * k + back + math.prod(self.out_shape) + 16)) * self._conv(ms[0], self.abs_weight, ab)


class Scale(Op):
    """Elementwise ``y = x * scale + shift``; scale/shift broadcast to the per-sample shape.
    ``scale_err`` (broadcastable, >= 0): a bound on |model's real scale - ``scale``| where the
    stored scale is itself rounded (BatchNorm's ``w / sqrt(var + eps)``, a division's reciprocal);
    it enters the rounding margin only (:meth:`float64_residual`)."""

    kind = "scale"

    def __init__(self, scale: torch.Tensor | None, shift: torch.Tensor | None,
                 scale_err: torch.Tensor | None = None):
        self.scale, self.shift, self.scale_err = scale, shift, scale_err

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

    def window_geo(self, g):
        return g

    def backward(self, A):
        if isinstance(A, Windows):
            bias = None if self.shift is None else A.dot(A.of_param(self, "shift", self.shift))
            return [A if self.scale is None else A.times(A.of_param(self, "scale", self.scale))], bias
        bias = None if self.shift is None else sum_trailing(A * self.shift)
        return [A if self.scale is None else A * self.scale], bias

    def forward_linear(self, f: FnPair) -> FnPair:
        if self.scale is None:
            return signed_forward(f, lambda x: x, lambda x: x, None, self.shift)
        sp, sn = _pos_neg(self, self.scale)
        return signed_forward(f, lambda x: x * self.scale, lambda x: x * sp, lambda x: x * sn, self.shift)

    def abs_map(self, es):
        """``|scale| e`` (the stored scale's own error ``scale_err`` is in :meth:`float64_residual`)."""
        return es[0] if self.scale is None else es[0] * self.scale.abs()

    def float64_residual(self, ms):
        """``gamma_k (|scale| m + |shift|)``: a few roundings per entry forward, one product per
        coefficient backward and the shift's bias summed over the node; plus ``scale_err m``,
        the stored scale's own error, widened by one more rounding."""
        t = ms[0] if self.scale is None else ms[0] * self.scale.abs()
        if self.shift is not None:
            t = t + self.shift.abs()
        r = gamma64(2 * (math.prod(t.shape[1:]) + 16)) * t
        return r if self.scale_err is None else r + (ms[0] * self.scale_err) * (1 + gamma64(4))


def reciprocal_scale(c: torch.Tensor) -> Scale:
    """``x / c`` as ``x * fl(1 / c)``: the correctly rounded reciprocal is within ``U64 |inv| /
    (1 - U64)`` of the real ``1 / c``, plus an underflow, which ``scale_err`` carries."""
    inv = 1.0 / c
    return Scale(inv, None, gamma64(2) * inv.abs() + 2 * TINY64)


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

    def forward_linear(self, f: FnPair) -> FnPair:
        wp, wn = _pos_neg(self, self.linear.weight)

        def via(w):
            return lambda x: (x.reshape(x.shape[0], -1) @ w.T).reshape(x.shape[0], *self.out_shape)
        b = None if self.linear.bias is None else self.linear.bias.reshape(self.out_shape)
        return signed_forward(f, via(self.linear.weight), via(wp), via(wn), b)

    def abs_map(self, es):
        e = es[0].reshape(len(es[0]), -1)
        return self.linear.abs_map([e]).reshape(len(e), *self.out_shape)

    def float64_residual(self, ms):
        m = ms[0].reshape(len(ms[0]), -1)
        return self.linear.float64_residual([m]).reshape(len(m), *self.out_shape)
