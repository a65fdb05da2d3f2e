"""Partitions of an integer domain, Fairify style, or given by the user.

Fairify's rule: every feature with more than ``T`` integer values is cut into consecutive chunks
of ``T`` values (the last chunk may be shorter); partitions are all combinations of chunks,
numbered in C order over the features (the last feature varies fastest). Bounds are inclusive.
Protected attributes (``whole``) are never cut: they range over their whole domain in every
partition, since a chunk holding one protected value would have no pair to check. Grids of more
than ``MAX_PARTITIONS`` partitions are refused (ConfigError naming the count and a larger size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from certprune.errors import ConfigError, SpecError

MAX_PARTITIONS = 10 ** 6  # ~3 KB of bookkeeping per partition: 10^6 fits in a few GB


def box_points(lo, hi, dims=None) -> list[int]:
    """Exact number of integer points of each inclusive box [lo, hi] (K, n) over the features
    ``dims`` (all when None): Python ints, no int64 overflow. The one count of box sizes (partitions,
    units, the domain)."""
    lo, hi = np.atleast_2d(np.asarray(lo, dtype=np.float64)), np.atleast_2d(np.asarray(hi, dtype=np.float64))
    if dims is not None:
        lo, hi = lo[:, list(dims)], hi[:, list(dims)]
    w = hi - lo + 1
    if w.shape[1] and np.all(np.abs(np.prod(w, axis=1)) < 2.0 ** 62):
        # every product fits int64 (the float64 estimate is off by far less than its margin to
        # 2^63): one vectorised exact product instead of math.prod per row (a fairness round
        # decides thousands of units; cProfile put it at 15 % of GC-4's run, timers at ~1 %)
        return np.prod(w.astype(np.int64), axis=1).tolist()
    return [math.prod(r) for r in w.astype(np.int64).tolist()]


@dataclass(frozen=True, eq=False)
class Partitioning:
    """Either a chunk grid (``starts[f]``/``ends[f]`` per feature) or explicit ``boxes`` (K, 2, n)."""

    starts: tuple[np.ndarray, ...] = ()
    ends: tuple[np.ndarray, ...] = ()
    boxes: np.ndarray | None = None

    @property
    def count(self) -> int:
        if self.boxes is not None:
            return int(len(self.boxes))
        n = 1
        for s in self.starts:
            n *= len(s)  # Python ints: no int64 overflow
        return n

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.starts)

    def bounds(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer bounds (lo, hi), each (len(ids), n), of the given partition ids."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if np.any((ids < 0) | (ids >= min(self.count, np.iinfo(np.int64).max))):
            raise ConfigError(f"partition id out of range 0..{self.count - 1}")
        if self.boxes is not None:
            return self.boxes[ids, 0].copy(), self.boxes[ids, 1].copy()
        idx = np.unravel_index(ids, self.grid_shape)
        lo = np.stack([s[i] for s, i in zip(self.starts, idx)], axis=1).astype(np.float64)
        hi = np.stack([e[i] for e, i in zip(self.ends, idx)], axis=1).astype(np.float64)
        return lo, hi

    def points(self, ids) -> list[int]:
        """Exact number of integer points of each partition (:func:`box_points`)."""
        return box_points(*self.bounds(ids))


def grid_partition(lower: np.ndarray, upper: np.ndarray, size: int, whole=()) -> Partitioning:
    """Fairify's partitioning of the domain [lower, upper] with chunk size ``size``; features whose
    indices are in ``whole`` (the protected ones) are kept whole (see module doc)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ConfigError(f"partition size must be a positive integer, got {size!r}")
    whole = {int(i) for i in whole}
    starts, ends = [], []
    for f, (lo, hi) in enumerate(zip(np.asarray(lower, dtype=np.int64), np.asarray(upper, dtype=np.int64))):
        step = int(hi - lo + 1) if f in whole else min(int(size), int(hi - lo + 1))  # a chunk past hi: one chunk
        s = np.arange(lo, hi + 1, step, dtype=np.int64)
        starts.append(s)
        ends.append(np.minimum(s + step - 1, hi))
    part = Partitioning(tuple(starts), tuple(ends))
    if part.count > MAX_PARTITIONS:
        raise ConfigError(f"partition size {size} gives {part.count} partitions, more than the cap of "
                          f"{MAX_PARTITIONS}; use --partition-size {_suggest(lower, upper, whole)} or larger")
    return part


def _suggest(lower, upper, whole) -> int:
    """Smallest power-of-two chunk size whose grid stays within MAX_PARTITIONS."""
    widths = [int(h - l + 1) for f, (l, h) in enumerate(zip(lower, upper)) if f not in whole]
    t = 1
    while True:
        n = 1
        for w in widths:
            n *= -(-w // t)
        if n <= MAX_PARTITIONS:
            return t
        t *= 2


def domain_pieces(lower: np.ndarray, upper: np.ndarray, whole, k: int) -> np.ndarray:
    """The domain cut into (at most) ``k`` disjoint boxes covering it, (K, 2, n): the box of most
    integer points is halved along its widest feature not in ``whole`` (the protected
    attributes, never cut: see the module doc) until there are ``k`` or none can be cut. Used to
    give local workers a whole-domain audit to share (``audit_fairness``)."""
    lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    free = [d for d in range(len(lo)) if d not in set(whole)]
    boxes = [(lo.copy(), hi.copy())]
    sizes = box_points(lo, hi)  # Python ints: no int64 overflow
    while len(boxes) < k:
        i = max(range(len(boxes)), key=sizes.__getitem__)
        blo, bhi = boxes[i]
        w = {d: bhi[d] - blo[d] for d in free}
        d = max(w, key=w.get) if w else None
        if d is None or w[d] < 1:
            break
        mid = np.floor((blo[d] + bhi[d]) / 2)
        a_hi, b_lo = bhi.copy(), blo.copy()
        a_hi[d], b_lo[d] = mid, mid + 1
        boxes[i:i + 1] = [(blo, a_hi), (b_lo, bhi)]
        sizes[i:i + 1] = box_points(np.stack([blo, b_lo]), np.stack([a_hi, bhi]))
    return np.stack([np.stack(b) for b in boxes])


def box_partition(boxes, lower: np.ndarray, upper: np.ndarray) -> Partitioning:
    """A user-given partition: boxes (K, 2, n) of inclusive integer bounds inside the domain.
    Boxes must not overlap (individuals are counted per box, so an overlap would count some twice
    and could report a domain as fair that was never fully audited); they need not cover it."""
    b = np.asarray(boxes, dtype=np.float64)
    n = len(lower)
    if b.ndim != 3 or b.shape[1:] != (2, n):
        raise SpecError(f"user partitions must be shaped (K, 2, {n}) (lower and upper per box), got {b.shape}")
    if np.any(b != np.round(b)):
        raise SpecError("user partition bounds must be integers")
    if np.any(b[:, 0] > b[:, 1]):
        raise SpecError("a user partition has lower > upper")
    if np.any(b[:, 0] < lower) or np.any(b[:, 1] > upper):
        raise SpecError("a user partition leaves the domain")
    for k in range(len(b) - 1):
        rest = b[k + 1:]
        hit = np.all((rest[:, 0] <= b[k, 1]) & (b[k, 0] <= rest[:, 1]), axis=1)
        if hit.any():
            raise SpecError(f"user partitions {k} and {k + 1 + int(np.argmax(hit))} overlap; give disjoint boxes")
    return Partitioning(boxes=b)
