"""The cells of the individual-counting search (:mod:`fairness_bab`): boxes of its search tree,
each with the exact number of individuals inside it proven fair and proven unfair so far.

A unit that reaches the cell depth opens a cell (its box); its descendants carry the cell's index
and every individual they decide is tallied there as well as in its partition. At the deadline a
cell's box is counted as a whole from linear bounds (:meth:`TwinBab._sweep_cells`): with ``D``
its tally, the individuals still open in it hold at least ``count - D`` fair ones (the count is a
lower bound of all fair individuals of the box, ``D`` of them are the decided ones). That is only
valid when the tally holds every decided individual of the box, which the sweep checks
(tally + open individuals == the box's individuals) before it uses a cell."""
from __future__ import annotations

import numpy as np


class Cells:
    """Growable arrays: cell boxes (C, n), partition index, fair and unfair tallies (int64)."""

    def __init__(self) -> None:
        self.n = 0
        self.lo = np.zeros((0, 0))
        self.hi = np.zeros((0, 0))
        self.part = np.zeros(0, dtype=np.int64)
        self.fair = np.zeros(0, dtype=np.int64)
        self.unfair = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.n

    def new(self, lo: np.ndarray, hi: np.ndarray, part: np.ndarray) -> np.ndarray:
        """Open cells for boxes lo/hi (K, n) of partitions ``part``; returns their indices."""
        K = len(lo)
        if self.n + K > len(self.part):
            cap = max(self.n + K, 2 * len(self.part), 256)
            if self.lo.shape[1] != lo.shape[1]:
                self.lo, self.hi = np.zeros((0, lo.shape[1])), np.zeros((0, lo.shape[1]))
            self.lo, self.hi, self.part, self.fair, self.unfair = (
                np.concatenate([a[:self.n], np.zeros((cap - self.n, *a.shape[1:]), a.dtype)])
                for a in (self.lo, self.hi, self.part, self.fair, self.unfair))
        ids = np.arange(self.n, self.n + K)
        self.lo[ids], self.hi[ids], self.part[ids] = lo, hi, part
        self.n += K
        return ids

    def add(self, cell: int, fair: int, unfair: int) -> None:
        """Tally decided individuals of one unit of ``cell`` (-1: none)."""
        if cell >= 0:
            self.fair[cell] += fair
            self.unfair[cell] += unfair

    def add_many(self, cells: np.ndarray, fair: np.ndarray, unfair: np.ndarray) -> None:
        """Tally decided individuals of many units (int64 arrays; cells -1 are skipped)."""
        m = cells >= 0
        if m.any():
            np.add.at(self.fair, cells[m], fair[m])
            np.add.at(self.unfair, cells[m], unfair[m])
