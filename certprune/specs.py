"""Input regions and properties: the one immutable query object every back end consumes.

Conventions
- An :class:`InputRegion` is a box ``lower <= x <= upper`` in the model's input shape (no batch
  dimension), with an optional boolean ``integer_mask`` marking inputs that take integer values
  only (tabular features).
- A :class:`Property` states the *violation*: the property is violated at ``x`` in the region iff
  for at least one disjunct ``(A, b)`` all rows of ``A @ y <= b`` hold, where ``y`` is the model
  output (flattened). This is the VNN-LIB convention (the file states the negated property).
- Certifying means proving that no ``x`` in the region makes any disjunct true.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from certprune.errors import InputRegionError, ShapeMismatchError, SpecError


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class InputRegion:
    """A box of inputs; arrays are float64, read-only, shaped like one model input."""

    lower: np.ndarray
    upper: np.ndarray
    integer_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        lo = np.asarray(self.lower, dtype=np.float64)
        hi = np.asarray(self.upper, dtype=np.float64)
        if lo.shape != hi.shape:
            raise InputRegionError(f"lower bound shape {lo.shape} differs from upper bound shape {hi.shape}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InputRegionError("input box contains NaN or infinite bounds")
        bad = np.flatnonzero((lo > hi).ravel())
        if bad.size:
            i = int(bad[0])
            raise InputRegionError(
                f"infeasible input box: lower > upper at {bad.size} input(s), first at index {i} "
                f"({lo.ravel()[i]} > {hi.ravel()[i]})")
        mask = None
        if self.integer_mask is not None:
            mask = np.asarray(self.integer_mask, dtype=bool)
            if mask.shape != lo.shape:
                raise InputRegionError(f"integer_mask shape {mask.shape} differs from box shape {lo.shape}")
            ilo, ihi = np.ceil(lo[mask]), np.floor(hi[mask])
            if np.any(ilo > ihi):
                raise InputRegionError("input box contains no integer point in an integer-valued input")
        object.__setattr__(self, "lower", _frozen(lo))
        object.__setattr__(self, "upper", _frozen(hi))
        object.__setattr__(self, "integer_mask", None if mask is None else _frozen(mask))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.lower.shape)

    @property
    def dim(self) -> int:
        return int(self.lower.size)

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower

    def contains(self, x: np.ndarray, tol: float = 0.0) -> np.ndarray:
        """Whether each point of ``x`` (shape ``(N, *shape)`` or ``shape``) lies in the box
        (within ``tol``) and, for integer inputs, is integral."""
        x = np.asarray(x, dtype=np.float64)
        batched = x.reshape(-1, *self.shape) if x.shape != self.shape else x[None]
        flat = batched.reshape(len(batched), -1)
        ok = np.all((flat >= self.lower.ravel() - tol) & (flat <= self.upper.ravel() + tol), axis=1)
        if self.integer_mask is not None:
            m = self.integer_mask.ravel()
            ok &= np.all(flat[:, m] == np.round(flat[:, m]), axis=1)
        return ok

    def clip(self, x: np.ndarray) -> np.ndarray:
        """Project points into the box (and round integer inputs)."""
        x = np.clip(np.asarray(x, dtype=np.float64), self.lower, self.upper)
        if self.integer_mask is not None:
            r = np.clip(np.round(x), np.ceil(self.lower), np.floor(self.upper))
            x = np.where(self.integer_mask, r, x)
        return x


@dataclass(frozen=True, eq=False)
class LinearConstraints:
    """A conjunction ``A @ y <= b`` over the flattened model output; ``A`` is (k, n_out)."""

    A: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        A = np.atleast_2d(np.asarray(self.A, dtype=np.float64))
        b = np.atleast_1d(np.asarray(self.b, dtype=np.float64))
        if A.ndim != 2 or b.shape != (A.shape[0],):
            raise SpecError(f"constraint matrix {A.shape} does not match right-hand side {b.shape}")
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
            raise SpecError("output constraints contain NaN or infinite coefficients")
        object.__setattr__(self, "A", _frozen(A))
        object.__setattr__(self, "b", _frozen(b))

    def slack(self, y: np.ndarray) -> np.ndarray:
        """``A @ y - b`` per row, shape (N, k); the conjunction holds iff every entry <= 0."""
        y = np.asarray(y, dtype=np.float64).reshape(-1, self.A.shape[1])
        # Elementwise product + per-row sum instead of BLAS ``y @ A.T``: BLAS rounds differently
        # with the batch size, and a counterexample's margin must not change between the batch it
        # was found in and its re-check alone.
        return (y[:, None, :] * self.A[None, :, :]).sum(axis=-1) - self.b


@dataclass(frozen=True, eq=False)
class Property:
    """Input region + violation condition (an OR of ``A y <= b`` conjunctions); see module doc."""

    region: InputRegion
    disjuncts: tuple[LinearConstraints, ...]
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        ds = tuple(self.disjuncts)
        if not ds:
            raise SpecError("a property needs at least one violation disjunct")
        widths = {d.A.shape[1] for d in ds}
        if len(widths) != 1:
            raise SpecError(f"disjuncts disagree on the number of outputs: {sorted(widths)}")
        object.__setattr__(self, "disjuncts", ds)

    @property
    def num_outputs(self) -> int:
        return self.disjuncts[0].A.shape[1]

    def violation_margin(self, y: np.ndarray) -> np.ndarray:
        """Per output row: ``min over disjuncts of max over rows of (A y - b)``.
        The property is violated at y iff the margin is <= 0 (shape (N,))."""
        return np.min(np.stack([d.slack(y).max(axis=1) for d in self.disjuncts]), axis=0)

    def is_violated(self, y: np.ndarray) -> np.ndarray:
        """Boolean per output row: does some disjunct hold (non-strict, ``A y <= b``)?"""
        return self.violation_margin(y) <= 0

    def check_outputs(self, num_outputs: int) -> None:
        """Raise a clear error if the property refers to outputs the model does not have."""
        if self.num_outputs != num_outputs:
            raise ShapeMismatchError(
                f"property refers to {self.num_outputs} outputs but the model has {num_outputs}")

    def with_region(self, region: InputRegion) -> "Property":
        """The same violation condition over another region (used by branch and bound)."""
        return Property(region, self.disjuncts, self.name, self.meta)


@dataclass(frozen=True, eq=False)
class RobustnessSpec:
    """L-inf local robustness: every x with ``|x - point| <= epsilon`` (clipped to
    ``[clip_min, clip_max]``) is classified as ``label`` (argmax of the output)."""

    point: np.ndarray
    epsilon: float
    label: int
    clip_min: float | np.ndarray = 0.0
    clip_max: float | np.ndarray = 1.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.epsilon) or self.epsilon < 0:
            raise SpecError(f"epsilon must be a finite number >= 0, got {self.epsilon}")
        object.__setattr__(self, "point", _frozen(np.asarray(self.point, dtype=np.float64)))

    def to_property(self, num_classes: int) -> Property:
        """Violation = some other class j scores at least as high as ``label``."""
        if not 0 <= self.label < num_classes:
            raise SpecError(f"label {self.label} is not a class of a {num_classes}-class model")
        lo = np.clip(self.point - self.epsilon, self.clip_min, self.clip_max)
        hi = np.clip(self.point + self.epsilon, self.clip_min, self.clip_max)
        if np.any(self.point < lo) or np.any(self.point > hi):
            raise SpecError(f"the point lies more than epsilon={self.epsilon} outside the valid input range "
                            f"[{self.clip_min}, {self.clip_max}]: the clipped box would not contain it")
        disjuncts = []
        for j in range(num_classes):
            if j == self.label:
                continue
            row = np.zeros(num_classes)
            row[self.label], row[j] = 1.0, -1.0  # y_label - y_j <= 0
            disjuncts.append(LinearConstraints(row[None], np.zeros(1)))
        return Property(InputRegion(lo, hi), tuple(disjuncts), name=f"robust(label={self.label}, eps={self.epsilon})")


def box_property(lower: Sequence[float], upper: Sequence[float], A, b) -> Property:
    """Shorthand: one box and one conjunction ``A y <= b``."""
    return Property(InputRegion(np.asarray(lower), np.asarray(upper)), (LinearConstraints(A, b),))
