"""Feature schemas of integer-encoded tabular data sets.

Conventions
- Every feature is an integer in the inclusive range ``[low, high]``; the feature order is the
  model's input order.
- ``labels[i]`` (when present) is the readable category of code ``low + i``. A code the schema
  has no label for (a value allowed by the verification domain that never occurs in the data)
  decodes to ``"code <v>"``.
- Feature names are lower case in every data set (``age``, ``race``, ``sex``). Lookups
  (:meth:`TabularSchema.index`, :meth:`TabularSchema.canonical`) also accept other spellings that
  differ only in case or in ``-`` vs ``_`` (e.g. COMPAS's former ``Race``, ``Female``; Adult's
  ``hours_per_week`` for ``hours-per-week``) and return the canonical name.
- The ranges are the *verification domain* (for Adult, German and Bank: Fairify's, exactly). A
  data row may fall outside it (e.g. German ``property = 3``); see ``TabularSchema.outside``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from certprune.errors import DatasetError, ShapeMismatchError

KINDS = ("binary", "categorical", "integer")


@dataclass(frozen=True)
class Feature:
    """One integer feature ``low <= v <= high``; ``labels[i]`` names code ``low + i``."""

    name: str
    low: int
    high: int
    kind: str
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DatasetError(f"feature {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if int(self.low) != self.low or int(self.high) != self.high or self.low > self.high:
            raise DatasetError(f"feature {self.name!r}: bad integer range [{self.low}, {self.high}]")
        if self.labels is not None and len(self.labels) > self.high - self.low + 1:
            raise DatasetError(f"feature {self.name!r}: {len(self.labels)} labels for "
                               f"{self.high - self.low + 1} codes")

    @property
    def size(self) -> int:
        """Number of integer values in the range."""
        return int(self.high - self.low + 1)

    def decode(self, v: int) -> Any:
        """Readable value of code ``v``: its label, else the integer itself."""
        v = int(v)
        if self.labels is None:
            return v
        i = v - self.low
        return self.labels[i] if 0 <= i < len(self.labels) else f"code {v}"


def _fold(name: str) -> str:
    """Spelling-insensitive key of a feature name: lower case, ``-`` read as ``_``."""
    return str(name).strip().lower().replace("-", "_")


@dataclass(frozen=True)
class TabularSchema:
    """Features in model input order, protected attribute names, target column, favourable label."""

    name: str
    features: tuple[Feature, ...]
    protected: tuple[str, ...]
    target: str
    favourable_label: str

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise DatasetError(f"schema {self.name!r}: duplicate feature names")
        for p in self.protected:
            self.index(p)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def protected_indices(self) -> tuple[int, ...]:
        return tuple(self.index(p) for p in self.protected)

    def index(self, name: str) -> int:
        """Position of feature ``name`` (or an alias, see module doc) in the model input
        (DatasetError listing valid names)."""
        return self.names.index(self.canonical(name))

    def canonical(self, name: str) -> str:
        """The schema's spelling of feature ``name``: exact match first, then ignoring case and
        ``-`` vs ``_`` (DatasetError listing valid names when nothing matches)."""
        if name in self.names:
            return name
        hits = [n for n in self.names if _fold(n) == _fold(name)]
        if len(hits) != 1:
            raise DatasetError(f"unknown feature {name!r} in data set {self.name!r}; "
                               f"valid names: {', '.join(self.names)}")
        return hits[0]

    def feature(self, name: str) -> Feature:
        """The Feature called ``name``."""
        return self.features[self.index(name)]

    def lower(self) -> np.ndarray:
        """Inclusive lower bounds, float64, shape (num_features,)."""
        return np.array([f.low for f in self.features], dtype=np.float64)

    def upper(self) -> np.ndarray:
        """Inclusive upper bounds, float64, shape (num_features,)."""
        return np.array([f.high for f in self.features], dtype=np.float64)

    def decode(self, row) -> dict[str, Any]:
        """``{feature name: readable value}`` of one encoded row (category labels where known)."""
        r = np.asarray(row).ravel()
        if r.size != self.num_features:
            raise ShapeMismatchError(f"a {self.name} row has {self.num_features} features, got {r.size}")
        if np.any(r != np.round(r)):
            raise DatasetError(f"{self.name} features are integers; got non-integral values in {r.tolist()}")
        return {f.name: f.decode(int(round(float(v)))) for f, v in zip(self.features, r)}

    def validate_model_inputs(self, n: int) -> None:
        """ShapeMismatchError when a model's input size differs from the number of features."""
        if int(n) != self.num_features:
            raise ShapeMismatchError(
                f"the model takes {n} inputs but the {self.name} schema has {self.num_features} features "
                f"({', '.join(self.names)})")

    def outside(self, X: np.ndarray) -> np.ndarray:
        """Boolean (N,) mask of rows with at least one value outside the schema's domain."""
        X = np.asarray(X).reshape(-1, self.num_features)
        return np.any((X < self.lower()) | (X > self.upper()), axis=1)

    def region(self):
        """The whole domain as an InputRegion with every input integral."""
        from certprune.specs import InputRegion
        return InputRegion(self.lower(), self.upper(), np.ones(self.num_features, dtype=bool))
