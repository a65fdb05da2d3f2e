"""The open units of the individual-counting search (:mod:`fairness_bab`): a batch type and a
growable store from which the next batch is taken largest first."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Units:
    """A batch of units: bounds (N, n), partition index, open-value mask (N, V), depth, and the
    float number of integer points over the free features (scheduling only; counts are exact)."""

    lo: np.ndarray
    hi: np.ndarray
    part: np.ndarray
    open: np.ndarray
    depth: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.part)

    def take(self, idx: np.ndarray) -> "Units":
        return Units(*(a[idx] for a in self.astuple()))

    def astuple(self) -> tuple[np.ndarray, ...]:
        return self.lo, self.hi, self.part, self.open, self.depth, self.size

    def volume(self) -> np.ndarray:
        """Open individuals per unit (float)."""
        return self.size * self.open.sum(1)


class UnitPool:
    """Growable arrays of open units with tombstones: ``add`` appends, ``pop`` removes and returns
    the ``k`` largest (or smallest) by open volume; compacted when half the slots are dead."""

    def __init__(self) -> None:
        self.buf: list[np.ndarray] | None = None
        self.n = 0
        self.alive = np.zeros(0, dtype=bool)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, u: Units) -> None:
        if len(u) == 0:
            return
        arrs = u.astuple()
        if self.buf is None:
            self.buf = [np.empty((0, *a.shape[1:]), a.dtype) for a in arrs]
        need = self.n + len(u)
        if need > len(self.alive):
            cap = max(need, 2 * len(self.alive), 1024)
            self.buf = [np.concatenate([b[:self.n], np.empty((cap - self.n, *b.shape[1:]), b.dtype)]) for b in self.buf]
            self.alive = np.concatenate([self.alive[:self.n], np.zeros(cap - self.n, dtype=bool)])
        for b, a in zip(self.buf, arrs):
            b[self.n:need] = a
        self.alive[self.n:need] = True
        self.n, self.count = need, self.count + len(u)

    def volume_sum(self) -> float:
        if self.count == 0:
            return 0.0
        idx = np.flatnonzero(self.alive[:self.n])
        return float((self.buf[5][idx] * self.buf[3][idx].sum(1)).sum())

    def pop(self, k: int, drain: bool = False) -> Units:
        """Remove and return up to ``k`` units: those with the largest open volume, or (``drain``)
        half the largest and half the smallest, so that enumerated small units shrink the pool
        while the large ones keep being refined."""
        idx = np.flatnonzero(self.alive[:self.n])
        if len(idx) > k:
            vol = self.buf[5][idx] * self.buf[3][idx].sum(1)
            if drain:
                order = np.argsort(vol)
                idx = idx[np.concatenate([order[-(k - k // 2):], order[:k // 2]])]
            else:
                idx = idx[np.argpartition(-vol, k - 1)[:k]]
        out = Units(*(b[idx].copy() for b in self.buf))
        self.alive[idx] = False
        self.count -= len(idx)
        if self.n > 10000 and self.count < self.n // 2:
            keep = np.flatnonzero(self.alive[:self.n])
            self.buf = [b[keep] for b in self.buf]
            self.alive = np.ones(len(keep), dtype=bool)
            self.n = len(keep)
        return out
