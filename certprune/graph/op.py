"""The operator interface of the graph IR: every operator owns all of its semantics here.

Conventions (all operators):
- values are batched, ``(N, *shape)``; bound computations are float64;
- ``interval(*bounds)`` takes one ``(lower, upper)`` pair per input and returns the interval
  image (sound: every point of the input boxes maps inside it);
- ``backward(A)`` takes the coefficients ``A`` (shape ``(K, m, *out_shape)``, K = 1 or N) of a
  linear function ``sum(A * y)`` of the operator's output and returns one coefficient tensor per
  input and a bias ``(K, m)`` (or None) such that ``sum(A * y) = sum_i sum(A_i * x_i) + bias``
  exactly (linear operators) -- the backward (CROWN) step. Nonlinear operators (ReLU) take
  their relaxation as well: see :mod:`certprune.graph.relu`. ``A`` may also be a
  :class:`~certprune.graph.windows.Windows` (coefficients on local windows, patches mode; biases
  then (K, rows)) for the operators whose ``window_geo(g)`` gives the geometry on their input for
  the geometry ``g`` on their output (None, the default: no window step).
- ``encode(enc, *exprs)`` maps the expressions of the inputs' values to the output's: the exact
  encoding, for both back ends of the one walk (``certprune.graph.encode.walk``): HiGHS rows
  (``encode.LinExpr``, LP/MILP leaves) or exact z3 terms (``encode_z3.TermExpr``). Operators
  only call the expression's ``map`` (weights / sparse Jacobian), ``gather`` (index maps),
  ``combine`` (Add/Sub) and ``reshaped``; the default serves linear single-input operators
  through their sparse Jacobian; ReLU adds its variables and constraints through the encoder
  ``enc`` (``encode.Encoder`` or ``encode_z3.Z3Encoder``).
- ``forward_linear(*fns)`` takes one ``(lower, upper)`` pair of :class:`LinFn` per input (linear
  functions of the graph input bounding the input value from below / above over the box) and
  returns the pair for the output -- the forward symbolic step (``certprune.bounds.forward``).
  A pair whose two members are the same object is *exact* (the value equals the function).
- ``float32_error(es, ms)`` takes per input a bound ``e`` on |float32 value - exact value| and a
  bound ``m`` on |float32 value| (both (N, *shape)) and returns the bound ``e`` of the output
  when the operator itself runs in float32 (``certprune.bounds.float32``); operators whose
  float32 execution is not modelled raise UnsupportedModelError.
- ``float64_residual(ms)`` takes per input a bound ``m`` on its |value| (both (N, *shape), from
  the input's bounds) and returns ``r`` (N, *out_shape) or None (= 0) such that, in float64,
  (a) the computed ``interval`` image widened by ``r`` on both sides encloses the exact real
  image of the input boxes, and (b) for any coefficients ``A`` on the output, the computed
  ``backward(A)`` (input coefficients and bias) misses the exact ``sum(A * y)`` by at most
  ``sum(|A| * r)`` on those boxes: the rounding margin of the bound passes
  (:mod:`certprune.bounds.crown`). Operators that only move values return None.
- ``abs_map(es)`` takes per input a nonnegative tensor ``e`` (N, *shape) and returns the image
  under the operator's linear part with every weight replaced by its absolute value and no
  offset (``|W| e`` for Linear, ``e_a + e_b`` for Add / Sub, the move itself for shape
  operators): how an error or magnitude bound on the inputs carries to the output (the forward
  pass's rounding bound, :mod:`certprune.bounds.forward`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Interval = tuple[torch.Tensor, torch.Tensor]


class Op:
    """Base class: a named operator with ``arity`` tensor inputs."""

    kind = "op"
    arity = 1
    nonlinear = False

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def interval(self, *bounds: Interval) -> Interval:
        raise NotImplementedError

    def backward(self, A: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        raise NotImplementedError

    def window_geo(self, g):
        """Window geometry on the input for ``g`` on the output; None: no window step."""
        return None

    def encode(self, enc, *xs):
        """Exact encoding (see module doc); the default is for bias-free linear single-input ops."""
        from certprune.graph.encode import affine_encode
        if len(xs) != 1:
            raise NotImplementedError(f"{type(self).__name__} has no exact encoding")
        return affine_encode(self, xs[0])

    def forward_linear(self, *fns: "FnPair") -> "FnPair":
        raise NotImplementedError

    def float32_error(self, es: list[torch.Tensor], ms: list[torch.Tensor]) -> torch.Tensor:
        from certprune.errors import UnsupportedModelError
        raise UnsupportedModelError(f"--semantics float32: no float32 rounding-error bound for {self!r} "
                                    "(supported: Linear, MatMul, Conv, ReLU, Add/Sub, Concat and shape operators)")

    def float64_residual(self, ms: list[torch.Tensor]) -> torch.Tensor | None:
        from certprune.errors import UnsupportedModelError
        raise UnsupportedModelError(f"no float64 rounding margin for {self!r}")

    def abs_map(self, es: list[torch.Tensor]) -> torch.Tensor:
        from certprune.errors import UnsupportedModelError
        raise UnsupportedModelError(f"no forward-mode rounding bound for {self!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True, eq=False)
class LinFn:
    """A linear function ``sum_d A[:, d] * x_d + b`` of the flattened graph input x, batched:
    ``A`` (K, n_in, *shape), ``b`` (K, *shape), K = 1 (the same for every box) or N."""

    A: torch.Tensor
    b: torch.Tensor

    def map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> "LinFn":
        """``f`` (a linear map without offset on batched values) applied to coefficients and offset."""
        K, n = self.A.shape[:2]
        A = f(self.A.reshape(K * n, *self.A.shape[2:]))
        return LinFn(A.reshape(K, n, *A.shape[1:]), f(self.b))

    def __add__(self, other: "LinFn") -> "LinFn":
        return LinFn(self.A + other.A, self.b + other.b)

    def __neg__(self) -> "LinFn":
        return LinFn(-self.A, -self.b)

    def shift(self, c: torch.Tensor | None) -> "LinFn":
        return self if c is None else LinFn(self.A, self.b + c)


FnPair = tuple[LinFn, LinFn]


def signed_forward(f: FnPair, lin, pos, neg, shift: torch.Tensor | None) -> FnPair:
    """Forward step of ``y = lin(x) + shift`` with ``lin = pos + neg`` (nonnegative / nonpositive
    weights; ``neg`` None when there are none): lower = pos(L) + neg(U) + shift, and the mirror.
    An operator that only moves entries is ``signed_forward(f, fn, fn, None, None)``."""
    lo, up = f
    if lo is up:
        g = lo.map(lin).shift(shift)
        return g, g
    if neg is None:
        return lo.map(pos).shift(shift), up.map(pos).shift(shift)
    return (lo.map(pos) + up.map(neg)).shift(shift), (up.map(pos) + lo.map(neg)).shift(shift)


def flat_rows(A: torch.Tensor) -> torch.Tensor:
    """``(K, m, *shape) -> (K*m, *shape)`` (a view when possible)."""
    return A.reshape(A.shape[0] * A.shape[1], *A.shape[2:])


def unflat_rows(B: torch.Tensor, K: int, m: int) -> torch.Tensor:
    """Inverse of :func:`flat_rows`."""
    return B.reshape(K, m, *B.shape[1:])


def sum_trailing(t: torch.Tensor) -> torch.Tensor:
    """Sum a ``(K, m, ...)`` tensor over everything after the first two dims."""
    return t.reshape(t.shape[0], t.shape[1], -1).sum(-1)
