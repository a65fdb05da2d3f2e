"""The open units of the individual-counting search (:mod:`fairness_bab`): a batch type and a
growable store from which the next batch is taken largest first."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Units:
    """A batch of units: bounds (N, n), partition index, open-value mask (N, V), depth, the
    float number of integer points over the free features (scheduling only; counts are exact), a
    scheduling weight and the cell (a box of the search tree whose decided individuals are tallied,
    :meth:`TwinBab._sweep_cells`)."""

    lo: np.ndarray
    hi: np.ndarray
    part: np.ndarray
    open: np.ndarray
    depth: np.ndarray
    size: np.ndarray
    weight: np.ndarray | None = None  # scheduling weight in (0, 1] (None: ones); pop order is volume x weight
    cell: np.ndarray | None = None  # the search's cell each unit lies in (-1: none; TwinBab cells; None: -1s)

    def __post_init__(self) -> None:
        if self.weight is None:
            self.weight = np.ones(len(self.part))
        if self.cell is None:
            self.cell = np.full(len(self.part), -1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.part)

    @staticmethod
    def concat(parts: "list[Units]") -> "Units":
        """The units of ``parts`` (at least one) in one batch, in order."""
        return Units(*(np.concatenate(a) for a in zip(*(u.astuple() for u in parts))))

    def take(self, idx: np.ndarray) -> "Units":
        return Units(*(a[idx] for a in self.astuple()))

    def astuple(self) -> tuple[np.ndarray, ...]:
        return self.lo, self.hi, self.part, self.open, self.depth, self.size, self.weight, self.cell

    def volume(self) -> np.ndarray:
        """Open individuals per unit (float)."""
        return self.size * self.open.sum(1)


class UnitPool:
    """Growable arrays of open units with tombstones: ``add`` appends, ``pop`` removes and returns
    the ``k`` largest (or smallest) by open volume; compacted when half the slots are dead. The
    open volume of each slot is computed once, on ``add`` (a unit in the pool does not change).
    Integer bounds are held as int32 when they fit (half the memory of float64; ``pop`` returns
    float64 again)."""

    def __init__(self) -> None:
        self.buf: list[np.ndarray] | None = None
        self.n = 0
        self.alive = np.zeros(0, dtype=bool)
        self.vol = np.zeros(0)
        self.key = np.zeros(0)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, u: Units) -> None:
        if len(u) == 0:
            return
        arrs = u.astuple()
        if self.buf is None:
            small = all(np.array_equal(a, np.round(a)) and np.abs(a).max(initial=0) < 2 ** 31 for a in arrs[:2])
            self.buf = [np.empty((0, *a.shape[1:]), np.int32 if small and i < 2 else a.dtype)
                        for i, a in enumerate(arrs)]
        need = self.n + len(u)
        if need > len(self.alive):
            cap = max(need, 2 * len(self.alive), 1024)
            self.buf = [_grown(b, self.n, cap) for b in self.buf]
            self.alive, self.vol = _grown(self.alive, self.n, cap), _grown(self.vol, self.n, cap)
            self.key = _grown(self.key, self.n, cap)
        for b, a in zip(self.buf, arrs):
            b[self.n:need] = a
        self.alive[self.n:need] = True
        self.vol[self.n:need] = u.volume()
        self.key[self.n:need] = self.vol[self.n:need] * u.weight
        self.n, self.count = need, self.count + len(u)

    def volume_sum(self) -> float:
        if self.count == 0:
            return 0.0
        return float(self.vol[:self.n][self.alive[:self.n]].sum())

    def _units(self, idx: np.ndarray) -> Units:
        """The units in slots ``idx`` (bounds as float64 again)."""
        return Units(*(b[idx].astype(np.float64) if i < 2 else b[idx] for i, b in enumerate(self.buf)))

    def peek_chunks(self, rows: int = 1 << 16):
        """Every unit in the pool, left in it, ``rows`` at a time: the float64 copies of a whole
        pool's bounds are large (GC-1 at 60 s: 450,000 units, 4 arrays of 72 MB), and on this
        project's machines fresh pages are slow to fault in (0.8 s of the sweep's 2.2 s), while
        small chunks reuse the same memory."""
        idx = np.flatnonzero(self.alive[:self.n]) if self.buf is not None else np.zeros(0, np.int64)
        for c in range(0, len(idx), rows):
            yield self._units(idx[c:c + rows])

    def pop(self, k: int, drain: bool = False) -> Units:
        """Remove and return up to ``k`` units: those with the largest open volume, or (``drain``)
        half the largest and half the smallest, so that enumerated small units shrink the pool
        while the large ones keep being refined."""
        idx = np.flatnonzero(self.alive[:self.n])
        if len(idx) > k:
            vol = self.key[idx]
            if drain:  # the k - k//2 largest and the k//2 smallest (partitions, not a full sort)
                big = np.argpartition(-vol, k - k // 2 - 1)[:k - k // 2]
                rest = np.ones(len(vol), dtype=bool)
                rest[big] = False
                rest = np.flatnonzero(rest)
                small = rest[np.argpartition(vol[rest], k // 2 - 1)[:k // 2]] if k // 2 else rest[:0]
                idx = idx[np.concatenate([big, small])]
            else:
                idx = idx[np.argpartition(-vol, k - 1)[:k]]
        out = self._units(idx)
        self.alive[idx] = False
        self.count -= len(idx)
        if self.n > 10000 and self.count < self.n // 2:
            keep = np.flatnonzero(self.alive[:self.n])
            self.buf = [b[keep] for b in self.buf]
            self.vol, self.key = self.vol[keep], self.key[keep]
            self.alive = np.ones(len(keep), dtype=bool)
            self.n = len(keep)
        return out


def _grown(a: np.ndarray, n: int, cap: int) -> np.ndarray:
    """A new array of ``cap`` rows whose first ``n`` are those of ``a`` (the rest uninitialised)."""
    out = np.empty((cap, *a.shape[1:]), a.dtype)
    out[:n] = a[:n]
    return out
