"""Queued counts joined where their boxes touch (``linear_jobs.JobQueue``): the leaves of a
bisected box come back as one job whose count equals the sum of theirs and enumeration; boxes
of other functions, other partitions or with a gap stay apart, as do joins that do not fit one
count; and audits whose queued units are joined give the brute-force individual counts."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from certprune.fairness_spec import FairnessSpec
from certprune.verifiers import fairness_bab
from certprune.verifiers.fairness import audit_fairness
from certprune.verifiers.fairness_bab import BabConfig
from certprune.verifiers.linear_count import count_between
from certprune.verifiers.linear_jobs import JobQueue, LinearJob
from certprune.verifiers.unit_pool import Units
from test_fairness_exact import biased_mlp
from test_fairness_individuals import _check

FREE, PROT = [0, 1, 3], [2]
A_FULL = np.array([0.375, -1.125, 0.5, 0.75])  # s(x) = A_FULL . x + C on every box (dyadic: sums exact)
C = -2.25
T0, T1 = -0.5, 0.0


def _job(lo, hi, part=0, a=A_FULL, tau=0.0) -> LinearJob:
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    widths = (hi[FREE] - lo[FREE] + 1).astype(np.int64)
    unit = Units(lo[None], hi[None], np.array([part]), np.array([[True, True]]), np.array([3]),
                 np.array([float(np.prod(widths))]))
    return LinearJob(unit, a[FREE], float(a @ lo + C), widths, T0, T1, 1e-12 + tau, lo.copy(), np.array([[1.0]]), 2,
                     np.abs(a), abs(C), tau)


def _eps(job, lo, hi):
    return 1e-12


def _fits(a, widths, eps):
    return True


def _bisect(lo, hi, depth, rng):
    """Leaves of ``depth`` random halvings of the box lo/hi along its free features."""
    boxes = [(np.array(lo, float), np.array(hi, float))]
    for _ in range(depth):
        out = []
        for l, h in boxes:
            dims = [d for d in FREE if h[d] > l[d]]
            if not dims:
                out.append((l, h))
                continue
            d = int(rng.choice(dims))
            mid = np.floor((l[d] + h[d]) / 2)
            h1, l2 = h.copy(), l.copy()
            h1[d], l2[d] = mid, mid + 1
            out += [(l, h1), (l2, h)]
        boxes = out
    return boxes


def _brute(lo, hi):
    grid = np.array(list(itertools.product(*[np.arange(lo[d], hi[d] + 1) for d in range(4)])))
    s = grid @ A_FULL + C
    return int(((s > T0) & (s <= T1)).sum())


def _count(job):
    return count_between(job.a, job.base, job.widths, job.t0, job.t1, job.eps, 10 ** 6).inside


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_leaves_of_a_bisected_box_join_and_count_the_same(seed, batch):
    """Random bisection leaves in random order: joined greedily (a join across the bisection
    tree may block another, so not always back to one box), into fewer jobs whose boxes tile the
    original box and whose counts add up to enumeration; each leaf in exactly one job."""
    rng = np.random.default_rng(seed)
    lo, hi = [0, -3, 1, 2], [9, 6, 1, 12]
    jobs = [_job(l, h, tau=float(rng.uniform(0, 1e-9))) for l, h in _bisect(lo, hi, 6, rng)]
    rng.shuffle(jobs)
    q = JobQueue(FREE, _eps, _fits)
    for s in range(0, len(jobs), batch):
        q.add_many(jobs[s:s + batch])
    out = list(q)
    assert len(out) < len(jobs) / 2
    assert sorted(id(leaf) for j in out for leaf in (j.leaves or [j])) == sorted(map(id, jobs))
    assert sum(j.size for j in out) == float(np.prod(np.array(hi)[FREE] - np.array(lo)[FREE] + 1))
    for j in out:
        inner = j.leaves or [j]
        assert j.tau == max(leaf.tau for leaf in inner) and j.eps >= j.tau
        assert (j.unit.lo[0] <= np.min([leaf.unit.lo[0] for leaf in inner], 0)).all()
        assert j.size == sum(leaf.size for leaf in inner)
    assert sum(_count(j) for j in out) == sum(_count(j) for j in jobs) == _brute(lo, hi)
    assert q.volume == pytest.approx(2 * sum(j.size for j in out))
    for j in out:
        q.discard(j)
    assert len(q) == 0 and q.volume == 0.0 and not q._ends


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 0, 2, 1), (1, 2, 0, 3)])
def test_a_grid_of_four_joins_back_into_one_box(order):
    lo, hi = np.array([0, 0, 1, 0.0]), np.array([9, 5, 1, 7.0])
    cells = []
    for xs in ((0, 4), (5, 9)):
        for ys in ((0, 2), (3, 5)):
            l, h = lo.copy(), hi.copy()
            (l[0], h[0]), (l[1], h[1]) = xs, ys
            cells.append(_job(l, h))
    q = JobQueue(FREE, _eps, _fits)
    for i in order:
        q.add(cells[i])
    (job,) = list(q)
    assert job.n_units == 4 and np.array_equal(job.unit.lo[0], lo) and np.array_equal(job.unit.hi[0], hi)
    assert job.base == cells[0].base and np.array_equal(job.x0, lo)  # the union's low corner
    assert _count(job) == _brute(lo, hi)


def test_other_functions_partitions_gaps_and_misfits_stay_apart():
    lo, hi = np.array([0, 0, 1, 0.0]), np.array([3, 3, 1, 3.0])
    left, right = hi.copy(), lo.copy()
    left[0], right[0] = 1, 2
    cases = {
        "partition": [_job(lo, left, part=0), _job(right, hi, part=1)],
        "function": [_job(lo, left), _job(right, hi, a=A_FULL * 1.5)],
        "gap": [_job(lo, left - np.array([1, 0, 0, 0])), _job(right, hi)],
        "two features differ": [_job(lo, left), _job(right, hi - np.array([0, 1, 0, 0]))],
    }
    for name, jobs in cases.items():
        q = JobQueue(FREE, _eps, _fits)
        q.add_many(jobs)
        assert len(q) == 2 and all(j.leaves is None for j in q), name
    q = JobQueue(FREE, _eps, lambda a, w, e: False)  # a join that does not fit one count
    q.add_many([_job(lo, left), _job(right, hi)])
    assert len(q) == 2
    q = JobQueue(FREE, _eps, _fits)
    q.add_many([_job(lo, left), _job(right, hi)])
    assert len(q) == 1 and next(iter(q)).n_units == 2


def test_joined_boxes_get_the_band_of_the_union():
    """The error band grows with the box: a join asks ``eps_of`` for the union's band."""
    seen = []

    def eps_of(job, lo, hi):
        seen.append(hi.copy())
        return 1e-12 * float(np.abs(hi).sum())
    lo, hi = np.array([0, 0, 1, 0.0]), np.array([3, 3, 1, 3.0])
    left, right = hi.copy(), lo.copy()
    left[0], right[0] = 1, 2
    q = JobQueue(FREE, eps_of, _fits)
    q.add_many([_job(lo, left), _job(right, hi)])
    (job,) = list(q)
    assert np.array_equal(seen[-1], hi) and job.eps == pytest.approx(1e-12 * float(np.abs(hi).sum()))


def test_audits_with_joined_counts_equal_brute_force(monkeypatch):
    """Counting after a few rounds of bisection (enumeration off): queued linear units touch
    and are joined (checked), and the individual counts equal brute force; with every join
    refused the counts are the same."""
    joins = []
    orig = JobQueue._join

    def spy(self, lower, upper, d):
        r = orig(self, lower, upper, d)
        joins.append(r is not None)
        return r
    monkeypatch.setattr(JobQueue, "_join", spy)
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [31, 15, 1, 27], ("p",))
    cfg = BabConfig(enum_points=0, count_points=2 ** 32, count_after=0.0, count_stall_rounds=0, first_round=64)
    joined_any = False
    for seed in range(4):
        model = biased_mlp(seed)
        for sem in ("exact", "float32"):
            joins.clear()
            res = audit_fairness(model, spec, None, timeout=60, progress=False, config=cfg, semantics=sem, samples=0)
            _check(res, model, spec)
            joined_any |= any(joins)
    assert joined_any
    monkeypatch.setattr(fairness_bab.TwinBab, "_count_fits", lambda self, a, w, e: False)
    res = audit_fairness(biased_mlp(0), spec, None, timeout=60, progress=False, config=cfg, samples=0)
    _check(res, biased_mlp(0), spec)
