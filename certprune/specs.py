"""Input regions and properties: the one immutable query object every back end consumes.

Conventions
- An :class:`InputRegion` is a box ``lower <= x <= upper`` in the model's input shape (no batch
  dimension), with an optional boolean ``integer_mask`` marking inputs that take integer values
  only (tabular features). Optional ``open_lower`` / ``open_upper`` masks mark bounds that are
  excluded (``lower < x``, from VNN-LIB ``>``); bounds are computed on the closed box (sound for
  certification), and :meth:`InputRegion.contains` excludes the open bounds.
- A :class:`Property` states the *violation*: the property is violated at ``x`` in the region iff
  for at least one disjunct ``(A, b)`` all rows of ``A @ y <= b`` hold, where ``y`` is the model
  output (flattened). This is the VNN-LIB convention (the file states the negated property).
- Rows may be *strict* (``LinearConstraints.strict``: ``A_r y < b_r``, from VNN-LIB ``<`` / ``>``).
  Search and bounds work on the closure (every row non-strict: ``violation_margin``), which is
  sound for certification, since the closed violation set contains the strict one. Whether a
  concrete output violates the property is decided exactly by ``is_violated``: strict rows must
  hold strictly there, so a counterexample on the boundary of a strict row is rejected.
- Certifying means proving that no ``x`` in the region makes any disjunct true.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from certprune.errors import InputRegionError, ShapeMismatchError, SpecError


FLOAT32_MAX = float(np.finfo(np.float32).max)  # input boxes must be executable in float32


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class InputRegion:
    """A box of inputs; arrays are float64, read-only, shaped like one model input. The boolean
    masks (None = none set) mark integer inputs and open (excluded) bounds."""

    lower: np.ndarray
    upper: np.ndarray
    integer_mask: np.ndarray | None = None
    open_lower: np.ndarray | None = None
    open_upper: np.ndarray | None = None

    def __post_init__(self) -> None:
        lo = np.asarray(self.lower, dtype=np.float64)
        hi = np.asarray(self.upper, dtype=np.float64)
        if lo.shape != hi.shape:
            raise InputRegionError(f"lower bound shape {lo.shape} differs from upper bound shape {hi.shape}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InputRegionError("input box contains NaN or infinite bounds")
        big = np.flatnonzero((np.abs(lo) > FLOAT32_MAX).ravel() | (np.abs(hi) > FLOAT32_MAX).ravel())
        if big.size:
            i = int(big[0])
            raise InputRegionError(
                f"input box bound beyond the float32 range (|x| <= {FLOAT32_MAX:.4g}) at {big.size} input(s), "
                f"first at index {i} ([{lo.ravel()[i]:.4g}, {hi.ravel()[i]:.4g}]): models run in float32")
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
        for name in ("open_lower", "open_upper"):
            object.__setattr__(self, name, self._open_mask(name))
        if self.has_open and np.any((lo == hi) & (self.open_lower_mask | self.open_upper_mask)):
            raise InputRegionError("input box is empty: a bound is open (strict) where lower == upper")

    def _open_mask(self, name: str) -> np.ndarray | None:
        m = getattr(self, name)
        if m is None:
            return None
        m = np.asarray(m, dtype=bool)
        if m.shape != self.lower.shape:
            raise InputRegionError(f"{name} shape {m.shape} differs from box shape {self.lower.shape}")
        return _frozen(m) if m.any() else None

    @property
    def has_open(self) -> bool:
        """Whether some bound is open (strict)."""
        return self.open_lower is not None or self.open_upper is not None

    @property
    def open_lower_mask(self) -> np.ndarray:
        """``open_lower`` as a full boolean array (all False when None)."""
        return np.zeros(self.shape, bool) if self.open_lower is None else self.open_lower

    @property
    def open_upper_mask(self) -> np.ndarray:
        """``open_upper`` as a full boolean array (all False when None)."""
        return np.zeros(self.shape, bool) if self.open_upper is None else self.open_upper

    def reshaped(self, shape: tuple[int, ...]) -> "InputRegion":
        """The same box with every array reshaped row-major to ``shape`` (same number of inputs)."""
        def r(a):
            return None if a is None else a.reshape(shape)
        return InputRegion(self.lower.reshape(shape), self.upper.reshape(shape), r(self.integer_mask),
                           r(self.open_lower), r(self.open_upper))

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
        (within ``tol``; strictly inside open bounds) and, for integer inputs, is integral."""
        x = np.asarray(x, dtype=np.float64)
        batched = x.reshape(-1, *self.shape) if x.shape != self.shape else x[None]
        flat = batched.reshape(len(batched), -1)
        lo, hi = self.lower.ravel() - tol, self.upper.ravel() + tol
        above = np.where(self.open_lower_mask.ravel(), flat > lo, flat >= lo)
        below = np.where(self.open_upper_mask.ravel(), flat < hi, flat <= hi)
        ok = np.all(above & below, axis=1)
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
    """A conjunction ``A @ y <= b`` over the flattened model output; ``A`` is (k, n_out).

    ``strict`` (bool, (k,), default all False) marks rows that hold only strictly, ``A_r y < b_r``."""

    A: np.ndarray
    b: np.ndarray
    strict: np.ndarray | None = None

    def __post_init__(self) -> None:
        A = np.atleast_2d(np.asarray(self.A, dtype=np.float64))
        b = np.atleast_1d(np.asarray(self.b, dtype=np.float64))
        if A.ndim != 2 or b.shape != (A.shape[0],):
            raise SpecError(f"constraint matrix {A.shape} does not match right-hand side {b.shape}")
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
            raise SpecError("output constraints contain NaN or infinite coefficients")
        strict = np.zeros(b.shape, dtype=bool) if self.strict is None else np.asarray(self.strict, dtype=bool)
        if strict.shape != b.shape:
            raise SpecError(f"strict mask of shape {strict.shape} does not match {b.shape[0]} constraint rows")
        object.__setattr__(self, "A", _frozen(A))
        object.__setattr__(self, "b", _frozen(b))
        object.__setattr__(self, "strict", _frozen(strict))

    @property
    def has_strict(self) -> bool:
        """Whether some row is strict (``<``)."""
        return bool(self.strict.any())

    def slack(self, y: np.ndarray) -> np.ndarray:
        """``A @ y - b`` per row, shape (N, k); the conjunction holds iff every entry <= 0."""
        y = np.asarray(y, dtype=np.float64).reshape(-1, self.A.shape[1])
        # Elementwise product + per-row sum instead of BLAS ``y @ A.T``: BLAS rounds differently
        # with the batch size, and a counterexample's margin must not change between the batch it
        # was found in and its re-check alone. A non-finite output (float32 overflow) gives inf or
        # NaN slack quietly; NaN never satisfies a row.
        with np.errstate(over="ignore", invalid="ignore"):
            return (y[:, None, :] * self.A[None, :, :]).sum(axis=-1) - self.b

    def holds(self, y: np.ndarray) -> np.ndarray:
        """Per output row (N,): every non-strict row has slack <= 0 and every strict row < 0."""
        s = self.slack(y)
        return np.all(np.where(self.strict, s < 0, s <= 0), axis=1)


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

    @property
    def has_strict(self) -> bool:
        """Whether some disjunct has a strict row (then margin 0 is not a violation)."""
        return any(d.has_strict for d in self.disjuncts)

    def violation_margin(self, y: np.ndarray) -> np.ndarray:
        """Per output row: ``min over disjuncts of max over rows of (A y - b)`` (shape (N,)).
        The closure of the violation (strict rows read non-strictly) holds at y iff the margin is
        <= 0; a margin < 0 implies a violation, a margin of exactly 0 only without strict rows.
        NaN (from non-finite outputs) is reported as +inf.
        Use :meth:`is_violated` to decide a concrete output."""
        m = np.min(np.stack([d.slack(y).max(axis=1) for d in self.disjuncts]), axis=0)
        return np.where(np.isnan(m), np.inf, m)  # a NaN output (float32 overflow) never violates

    def is_violated(self, y: np.ndarray) -> np.ndarray:
        """Boolean per output row: does some disjunct hold, strict rows strictly (exact test)?
        An output with a non-finite entry (float32 overflow) is never a violation."""
        y = np.asarray(y, dtype=np.float64).reshape(-1, self.num_outputs)
        finite = np.all(np.isfinite(y), axis=1)
        return finite & np.any(np.stack([d.holds(y) for d in self.disjuncts]), axis=0)

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
