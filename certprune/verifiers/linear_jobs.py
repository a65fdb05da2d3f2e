"""Queued exact counts of the individual-counting search (:mod:`fairness_bab`), and their merging.

A :class:`LinearJob` is one unit whose twin boxes are all linear with one activation pattern,
waiting for :func:`linear_count.count_between`. Bisection leaves many such units side by side: on
GC-4 the final drain held 9,124 jobs of one partition with one and the same affine map, each a
few hundred microseconds of fixed cost (the sorts and searches of a count are ~20 numpy calls).
:class:`JobQueue` joins two jobs whose boxes differ in one free feature only, where they touch
(``hi + 1 == lo``), and whose counts are of the same function (same partition, open values,
map, flip interval): the union's integer points are exactly those of the two boxes, on each of
which ``s(x) = a . x + c``, so one count of the union is the sum of the two. It joins them as
they arrive, the union again where it touches another job, greedily (GC-4's final drain: ~6,150
jobs instead of 9,124; re-joining every leaf in another order gives ~5,950). A
merged job keeps its leaves: where its count's error band is too wide the leaves are counted
one by one, as before."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from certprune.verifiers.unit_pool import Units


@dataclass
class LinearJob:
    """A unit (one row) queued for an exact count on its linear twin boxes, for one of its open
    protected values v: ``s(x) = base + a . k`` over the free offsets k < ``widths`` from the
    unit's low corner (x with the value v), each partner value w's decision ``s + delta_w``. The
    individual flips iff ``t0 < s <= t1``, ``t0 = min(0, -max_w delta_w)``, ``t1 = max(0, -min_w
    delta_w)``: the union over w of the flip intervals ``(min(0, -delta_w), max(0, -delta_w)]``,
    which all have 0 as an end. ``eps`` the error band; ``x0`` the low corner with the value v,
    ``partners`` (W, n_prot) the partner values; the count stands for ``mult`` open values of the
    unit (binary attribute: both, the pair's flips being the same points). ``aa``, ``ca``, ``tau``:
    the absolute chain of the map and the float32 margin, from which the band of a merged box is
    recomputed (:class:`JobQueue`); ``leaves``: the jobs a merged one stands for (None: itself)."""

    unit: Units
    a: np.ndarray
    base: float
    widths: np.ndarray
    t0: float
    t1: float
    eps: float
    x0: np.ndarray
    partners: np.ndarray
    mult: int
    aa: np.ndarray | None = None
    ca: float = 0.0
    tau: float = 0.0
    leaves: list["LinearJob"] | None = None

    @property
    def size(self) -> float:
        return float(self.unit.size[0])

    @property
    def n_units(self) -> int:
        """The queued units this job stands for."""
        return 1 if self.leaves is None else len(self.leaves)


def _fkey(j: LinearJob) -> tuple:
    """Jobs with equal keys count the same function: same partition, cell (a union stays inside
    one cell: its count is tallied there), open values, map, flip interval, partners and
    multiplicity."""
    u = j.unit
    return (int(u.part[0]), int(u.cell[0]), u.open.tobytes(), j.a.tobytes(), j.aa.tobytes(), j.ca, j.t0, j.t1,
            j.partners.tobytes(), j.mult)


class JobQueue:
    """The jobs waiting for a count, joined as they arrive (module doc). ``eps_of(job, lo, hi)``:
    the float64 error band of ``job``'s function on the box lo/hi (it grows with the box's
    magnitudes; the float32 margin ``tau`` is added to it); ``fits(a, widths, eps)``: whether a
    box of those widths is still one count (its band small and its size within the count
    limit): pairs that do not fit stay apart. A neighbour is found by a 64-bit hash of the
    function, the box with one feature left out, that feature and one end of its range (a
    collision is caught by comparing the boxes, and only ever costs a join). ``volume``: the
    open individuals queued."""

    MAX_FEATURES = 1 << 12

    def __init__(self, free: list[int], eps_of: Callable[[LinearJob, np.ndarray, np.ndarray], float],
                 fits: Callable[[np.ndarray, np.ndarray, float], bool]):
        self.free, self.eps_of, self.fits = np.asarray(free, dtype=np.int64), eps_of, fits
        self._free = [int(d) for d in free]
        self.jobs: dict[int, LinearJob] = {}
        self.volume = 0.0
        self._ends: dict[int, LinearJob] = {}
        self._keys: dict[int, list[int]] = {}
        self._fk: dict[tuple, int] = {}
        m = np.random.default_rng(0).integers(1, 2 ** 63, size=(5, self.MAX_FEATURES), dtype=np.int64)
        self._m = m.view(np.uint64) | np.uint64(1)  # per feature: lo, hi, feature, end, function multipliers

    def __len__(self) -> int:
        return len(self.jobs)

    def __bool__(self) -> bool:
        return bool(self.jobs)

    def __iter__(self):
        return iter(self.jobs.values())

    def values(self):
        return self.jobs.values()

    def _hashes(self, lo: np.ndarray, hi: np.ndarray, f: np.ndarray):
        """For boxes lo/hi (M, n) of functions f (M,): (own low-end keys, own high-end keys, keys
        of a neighbour below, of one above), (M, free) each: a neighbour below ends at ``lo - 1``
        (its high end), one above starts at ``hi + 1``."""
        lo, hi = lo.astype(np.int64).view(np.uint64), hi.astype(np.int64).view(np.uint64)
        m, d = self._m, self.free
        n = lo.shape[1]
        with np.errstate(over="ignore"):
            terms = lo * m[0, :n] + hi * m[1, :n]
            rest = terms.sum(1, dtype=np.uint64)[:, None] - terms[:, d] + m[2, d] + f.astype(np.uint64)[:, None] * m[4, d]
            one = np.uint64(1)
            lo_d, hi_d = lo[:, d], hi[:, d]
            own_lo = rest + lo_d * m[3, d]
            own_hi = (rest + hi_d * m[3, d]) ^ m[4, d]
            below = (rest + (lo_d - one) * m[3, d]) ^ m[4, d]
            above = rest + (hi_d + one) * m[3, d]
        return own_lo, own_hi, below, above

    def add(self, job: LinearJob) -> None:
        """Queue ``job`` (see :meth:`add_many`)."""
        self.add_many([job])

    def add_many(self, jobs: list[LinearJob]) -> None:
        """Queue ``jobs``, each joined with every queued job of its function that its box touches
        (the round's jobs are hashed at once; a job with no neighbour costs two dict probes per
        free feature). Jobs without ``aa`` (or beyond ``MAX_FEATURES``) are queued as they are."""
        for j in jobs:
            self.volume += float(j.unit.volume()[0])
        joinable = len(self.free) > 0
        plain = [not joinable or j.aa is None or len(j.unit.lo[0]) > self.MAX_FEATURES for j in jobs]
        for j, p in zip(jobs, plain):
            if p:
                self.jobs[id(j)] = j
        jobs = [j for j, p in zip(jobs, plain) if not p]
        if not jobs:
            return
        f = np.array([self._fk.setdefault(_fkey(j), len(self._fk)) for j in jobs], dtype=np.int64)
        hashes = self._hashes(np.stack([j.unit.lo[0] for j in jobs]), np.stack([j.unit.hi[0] for j in jobs]), f)
        own_lo, own_hi, below, above = (h.tolist() for h in hashes)
        ends = self._ends
        for i, job in enumerate(jobs):
            keys = own_lo[i] + own_hi[i]
            if any(map(ends.__contains__, below[i])) or any(map(ends.__contains__, above[i])):
                job, keys = self._join_all(job, int(f[i]), below[i], above[i], keys)
            self.jobs[id(job)] = job
            self._keys[id(job)] = (int(f[i]), keys)
            ends.update(dict.fromkeys(keys, job))

    def _join_all(self, job: LinearJob, f: int, below: list[int], above: list[int], keys: list[int]):
        """``job`` joined with its touching neighbours, one after another (the union's own keys
        recomputed after each join); returns the job to queue and its keys."""
        get = self._ends.get
        free = self._free
        while True:
            joined = None
            for k, d in enumerate(free):
                other = get(below[k])
                if other is not None and self._joinable(other, job, d, f):
                    joined = self._join(other, job, d)
                if joined is None:
                    other = get(above[k])
                    if other is not None and self._joinable(job, other, d, f):
                        joined = self._join(job, other, d)
                if joined is not None:
                    break
            if joined is None:
                return job, keys
            self._drop(other)
            job = joined
            h = self._hashes(job.unit.lo, job.unit.hi, np.array([f]))
            own_lo, own_hi, b, a = (x[0].tolist() for x in h)
            keys, below, above = own_lo + own_hi, b, a

    def _drop(self, job: LinearJob) -> bool:
        """Remove ``job`` and its keys (joined into another, or taken); whether it was queued."""
        queued = self.jobs.pop(id(job), None) is not None
        for k in self._keys.pop(id(job), (None, []))[1]:
            if self._ends.get(k) is job:
                del self._ends[k]
        return queued

    def discard(self, job: LinearJob) -> None:
        """Remove a queued job taken for its count (its individuals leave ``volume``)."""
        if self._drop(job):
            self.volume = max(0.0, self.volume - float(job.unit.volume()[0])) if self.jobs else 0.0

    def clear(self) -> None:
        self.jobs.clear()
        self._ends.clear()
        self._keys.clear()
        self.volume = 0.0

    def _joinable(self, lower: LinearJob, upper: LinearJob, d: int, f: int) -> bool:
        """The two boxes differ in feature d only, where ``lower`` ends just below ``upper``, and
        are of one function f (the function numbers of ``_fk`` are exact; only the boxes' hash
        can collide)."""
        if lower is upper:
            return False
        queued = upper if id(lower) not in self._keys else lower  # the one already queued
        if self._keys.get(id(queued), (None,))[0] != f:
            return False
        lo1, hi1, lo2, hi2 = lower.unit.lo[0], lower.unit.hi[0], upper.unit.lo[0], upper.unit.hi[0]
        if hi1[d] + 1 != lo2[d]:
            return False
        m = np.ones(len(lo1), dtype=bool)
        m[d] = False
        return bool((lo1[m] == lo2[m]).all() and (hi1[m] == hi2[m]).all())

    def _join(self, lower: LinearJob, upper: LinearJob, d: int) -> LinearJob | None:
        """The job of the union of two touching boxes, or None where it does not fit one count.
        The lower box's corner and base are the union's."""
        free = self.free
        lo, hi = lower.unit.lo[0], lower.unit.hi[0].copy()
        hi[d] = upper.unit.hi[0, d]
        widths = (hi[free] - lo[free] + 1).astype(np.int64)
        tau = max(lower.tau, upper.tau)
        eps = self.eps_of(lower, lo, hi) + tau
        if not self.fits(lower.a, widths, eps):
            return None
        leaves = (lower.leaves or [lower]) + (upper.leaves or [upper])
        u = lower.unit
        unit = Units(lo[None].copy(), hi[None], u.part.copy(), u.open.copy(),
                     np.minimum(u.depth, upper.unit.depth), np.array([float(np.prod(widths.astype(np.float64)))]),
                     u.weight.copy(), u.cell.copy())
        return LinearJob(unit, lower.a, lower.base, widths, lower.t0, lower.t1, eps, lower.x0, lower.partners,
                         lower.mult, lower.aa, lower.ca, tau, leaves)
