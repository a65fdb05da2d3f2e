"""The operator interface of the graph IR: every operator owns all of its semantics here.

Conventions (all operators):
- values are batched, ``(N, *shape)``; bound computations are float64;
- ``interval(*bounds)`` takes one ``(lower, upper)`` pair per input and returns the interval
  image (sound: every point of the input boxes maps inside it);
- ``backward(A)`` takes the coefficients ``A`` (shape ``(K, m, *out_shape)``, K = 1 or N) of a
  linear function ``sum(A * y)`` of the operator's output and returns one coefficient tensor per
  input and a bias ``(K, m)`` (or None) such that ``sum(A * y) = sum_i sum(A_i * x_i) + bias``
  exactly (linear operators) -- the backward (CROWN) step. Nonlinear operators (ReLU) take
  their relaxation as well: see :mod:`certprune.graph.relu`;
- ``encode(enc, *exprs)`` maps the affine expressions (``certprune.graph.encode.LinExpr``) of
  the inputs' values to the output's: the exact LP/MILP encoding. The default serves linear
  single-input operators through their sparse Jacobian; ReLU adds its variables and constraints
  through the encoder.
"""
from __future__ import annotations

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

    def encode(self, enc, *xs):
        """Exact encoding (see module doc); the default is for bias-free linear single-input ops."""
        from certprune.graph.encode import affine_encode
        if len(xs) != 1:
            raise NotImplementedError(f"{type(self).__name__} has no exact encoding")
        return affine_encode(self, xs[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def flat_rows(A: torch.Tensor) -> torch.Tensor:
    """``(K, m, *shape) -> (K*m, *shape)`` (a view when possible)."""
    return A.reshape(A.shape[0] * A.shape[1], *A.shape[2:])


def unflat_rows(B: torch.Tensor, K: int, m: int) -> torch.Tensor:
    """Inverse of :func:`flat_rows`."""
    return B.reshape(K, m, *B.shape[1:])


def sum_trailing(t: torch.Tensor) -> torch.Tensor:
    """Sum a ``(K, m, ...)`` tensor over everything after the first two dims."""
    return t.reshape(t.shape[0], t.shape[1], -1).sum(-1)
