"""FairnessSpec: the individual-fairness query over an integer tabular domain.

Convention: a pair (x, x') is a *violation* iff both are integer points of the domain (and of the
same partition), they differ on at least one protected feature, ``|x_r - x'_r| <= delta_r`` on
every relaxed feature, they are equal on every other feature, and the model's decisions differ
(decision = ``logit > 0`` for one output, ``argmax`` for two; float32 runs of the model, or its
real-arithmetic values under the audit's ``exact`` semantics, see certprune.semantics). The spec is immutable; the
twin network (:mod:`certprune.verifiers.twin`) compiles it to ordinary Properties.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from certprune.errors import DatasetError, ShapeMismatchError, SpecError


def _frozen_int(a) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise SpecError("domain bounds must be finite integers")
    arr = arr.astype(np.int64)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class FairnessSpec:
    """Domain ``lower <= x <= upper`` (inclusive integers, model input order), the protected
    feature names, and relaxed features as ``(name, delta)`` pairs. ``schema`` (optional) decodes
    integer codes to readable labels in reports; it plays no part in verification."""

    feature_names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    protected: tuple[str, ...]
    relaxed: tuple[tuple[str, int], ...] = ()
    schema: Any = field(default=None, repr=False)
    name: str = ""

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.feature_names)
        lo, hi = _frozen_int(self.lower), _frozen_int(self.upper)
        if lo.shape != (len(names),) or hi.shape != (len(names),):
            raise SpecError(f"domain bounds of shape {lo.shape}/{hi.shape} do not match {len(names)} feature names")
        if len(set(names)) != len(names):
            raise SpecError("feature names must be unique")
        bad = [names[i] for i in np.flatnonzero(lo > hi)]
        if bad:
            raise SpecError(f"empty domain (lower > upper) for feature(s): {', '.join(bad)}")
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        prot = tuple(self.protected) if not isinstance(self.protected, str) else (self.protected,)
        if not prot:
            raise SpecError("a fairness spec needs at least one protected attribute")
        for p in prot:
            i = self._lookup(p, "protected attribute")
            if lo[i] == hi[i]:
                raise SpecError(f"protected attribute {p!r} takes a single value {lo[i]} in the domain")
        object.__setattr__(self, "protected", prot)
        rel = tuple((str(n), int(d)) for n, d in (self.relaxed.items() if isinstance(self.relaxed, Mapping)
                                                   else self.relaxed))
        clamped = []
        for n, d in rel:
            self._lookup(n, "relaxed attribute")
            if n in prot:
                raise SpecError(f"attribute {n!r} cannot be both protected and relaxed")
            if d < 0:
                raise SpecError(f"relaxation tolerance for {n!r} must be >= 0, got {d}")
            i = names.index(n)
            # |x - x'| <= d for d past the domain's width is the same constraint as d = width (any
            # value); clamped, so that the partner moves stay within int64 (10^23 overflowed)
            clamped.append((n, min(d, int(hi[i]) - int(lo[i]))))
        object.__setattr__(self, "relaxed", tuple(clamped))

    def _lookup(self, name: str, what: str) -> int:
        if name not in self.feature_names:
            raise SpecError(f"unknown {what} {name!r}; the features are: {', '.join(self.feature_names)}")
        return self.feature_names.index(name)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def index(self, name: str) -> int:
        """Position of a feature in the model input."""
        return self._lookup(name, "feature")

    @property
    def protected_indices(self) -> tuple[int, ...]:
        return tuple(self.index(p) for p in self.protected)

    @property
    def relaxed_indices(self) -> tuple[int, ...]:
        return tuple(self.index(n) for n, _ in self.relaxed)

    @property
    def relaxed_deltas(self) -> tuple[int, ...]:
        return tuple(d for _, d in self.relaxed)

    def domain_points(self) -> float:
        """Number of integer points x of the domain (as a float; it can exceed 2**63)."""
        return float(np.prod((self.upper - self.lower + 1).astype(np.float64)))

    def check_model_inputs(self, n_inputs: int) -> None:
        """Raise ShapeMismatchError when the model's input size is not the number of features."""
        if n_inputs != self.num_features:
            raise ShapeMismatchError(
                f"the model takes {n_inputs} inputs but the fairness domain has {self.num_features} features "
                f"({', '.join(self.feature_names)})")

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """Readable values of one encoded point (category labels where the schema knows them)."""
        if self.schema is not None and hasattr(self.schema, "decode"):
            return dict(self.schema.decode(np.asarray(x)))
        return {n: int(v) for n, v in zip(self.feature_names, np.asarray(x).ravel())}

    @classmethod
    def from_schema(cls, schema: Any, protected: Sequence[str] | str,
                    relaxed: Mapping[str, int] | Sequence[tuple[str, int]] = (), name: str = "") -> "FairnessSpec":
        """Build from a tabular schema (``schema.features`` with ``name``/``lower``/``upper``, or
        ``names``/``lower``/``upper`` arrays)."""
        feats = getattr(schema, "features", None)
        if feats is not None and len(feats) and hasattr(feats[0], "name"):
            names = [f.name for f in feats]
            lo = [getattr(f, "lower", getattr(f, "low", None)) for f in feats]
            hi = [getattr(f, "upper", getattr(f, "high", None)) for f in feats]
        else:
            names = list(getattr(schema, "names", getattr(schema, "feature_names", [])))
            lo, hi = schema.lower, schema.upper
        lo = lo() if callable(lo) else lo
        hi = hi() if callable(hi) else hi
        protected, relaxed = _schema_spellings(schema, protected, relaxed)
        return cls(tuple(names), np.asarray(lo), np.asarray(hi), protected, relaxed, schema, name)


def _schema_spellings(schema: Any, protected, relaxed):
    """Attribute names in the schema's spelling where ``schema.canonical`` knows an alias (``Race`` ->
    ``race``); unknown names are left as given, so the spec's own check reports them."""
    canon = getattr(schema, "canonical", None)
    if canon is None:
        return protected, relaxed

    def fix(n):
        try:
            return canon(n)
        except DatasetError:  # unknown name: left for FairnessSpec's SpecError
            return n
    prot = fix(protected) if isinstance(protected, str) else tuple(fix(p) for p in protected)
    pairs = relaxed.items() if isinstance(relaxed, Mapping) else relaxed
    return prot, tuple((fix(n), d) for n, d in pairs)
