"""Proven-fair and proven-unfair individuals of one twin box where the network is not linear,
counted from the linear bounds of both copies (a binary protected attribute, nothing relaxed).

The forward symbolic pass gives, over the twin box, real linear functions with
``Ly(x) - err_y <= y(x) <= Uy(x) + err_y`` and the same for the other copy y' (``Lp``, ``Up``;
:attr:`~certprune.verifiers.twin_bounds.TwinBounds.fns`), x ranging over the box's individuals.
With ``theta`` = err + the semantics' sign margin of each copy, an individual is proven

* fair (both yes): ``Ly(x) > max(theta_y, theta_p - c)``, ``c = min (Lp - Ly)`` over the box (then
  ``Lp(x) >= Ly(x) + c > theta_p``), or the same with the copies' roles swapped;
* fair (both no): ``Uy(x) <= min(-theta_y, -theta_p - C)``, ``C = max (Up - Uy)``, or swapped;
* unfair (yes, no): ``theta_y < Ly(x) <= -theta_p - D``, ``D = max (Up - Ly)``, or
  ``theta_y - d < Up(x) <= -theta_p``, ``d = min (Ly - Up)``;
* unfair (no, yes): the mirror image.

Each condition is one linear function against thresholds, so :func:`linear_count.tail_counts`
gives a sound lower bound of its count; the four classes are disjoint (they fix both decisions
differently), so the counts add up. On a box where both copies are linear (L = U) with one
pattern this is the exact count up to the bins near the thresholds; elsewhere the relaxation's
gap leaves the rest of the box undecided. The min / max over the box are rounded outward by
``gamma64(4 (dz + 8))`` of the functions' magnitude bounds (``mag``, :mod:`bounds.forward`), which
also bound the float64 error of evaluating a function at a point (every partial sum is a sum of
at most ``2 (dz + 8)`` of its terms, each at most 3 ``mag`` in all).
"""
from __future__ import annotations

import numpy as np

from certprune.bounds.crown import MARGIN_SAFETY, TINY
from certprune.semantics import gamma64
from certprune.verifiers.linear_count import tail_counts

BOTH_VIEWS = True  # also count with the other copy's functions (twice the histograms) and keep the larger


def _extreme(a: np.ndarray, b: float, lo: np.ndarray, hi: np.ndarray, rnd: float, upper: bool) -> float:
    """Min (max if ``upper``) of the real function ``a . z + b`` over the box, rounded outward by ``rnd``."""
    v = b + (np.maximum(a * lo, a * hi) if upper else np.minimum(a * lo, a * hi)).sum()
    return float(v + rnd) if upper else float(v - rnd)


def twin_box_counts(fl: tuple[np.ndarray, np.ndarray], fu: tuple[np.ndarray, np.ndarray], lo: np.ndarray,
                    hi: np.ndarray, err: np.ndarray, mag: np.ndarray, margin: np.ndarray) -> tuple[int, int]:
    """``(fair, unfair)``: lower bounds on the individuals of the integer box lo/hi (dz,) (its twin
    points, one per individual) proven fair / unfair (module doc). ``fl = (A (dz, 2), b (2,))``
    the lower functions of [y, y'], ``fu`` the upper ones; ``err``, ``mag`` (2,) their rounding
    bounds; ``margin`` (2,) the sign margin of each copy under the audit's semantics."""
    dz = len(lo)
    g = MARGIN_SAFETY * gamma64(4 * (dz + 8))
    ev = g * 3 * mag + TINY  # evaluating one function at a point
    rnd = g * (mag[0] + mag[1]) + TINY  # min / max of a difference of two functions
    th = err + margin
    (Al, bl), (Au, bu) = fl, fu
    fns = [(Al[:, 0], bl[0]), (Au[:, 0], bu[0]), (Al[:, 1], bl[1]), (Au[:, 1], bu[1])]  # Ly, Uy, Lp, Up
    widths = (hi - lo + 1).astype(np.int64)
    a = np.stack([f[0] for f in fns])
    base = np.array([f[1] + (f[0] * lo).sum() for f in fns])
    LY, UY, LP, UP = range(4)
    rows = 4 if BOTH_VIEWS else 2
    tc = tail_counts(a[:rows], base[:rows], widths, np.array([ev[0], ev[0], ev[1], ev[1]])[:rows])

    def ext(i, j, upper):  # min / max of f_i - f_j over the box
        return _extreme(a[i] - a[j], fns[i][1] - fns[j][1], lo, hi, rnd, upper)

    def gt(r, t):
        return int(tc.above(r, [t])[0])

    def le(r, t):
        return int(tc.at_most(r, [t])[0])
    ty, tp = float(th[0]), float(th[1])
    fair = gt(LY, max(ty, tp - ext(LP, LY, False))) + le(UY, min(-ty, -tp - ext(UP, UY, True)))
    unfair = tc.between(LY, ty, -tp - ext(UP, LY, True)) + tc.between(UY, tp - ext(LP, UY, False), -ty)
    if BOTH_VIEWS:  # the same conditions written with the other copy's functions
        fair = max(fair, gt(LP, max(tp, ty - ext(LY, LP, False))) + le(UP, min(-tp, -ty - ext(UY, UP, True))))
        unfair = max(unfair, tc.between(UP, ty - ext(LY, UP, False), -tp)
                     + tc.between(LP, tp, -ty - ext(UY, LP, True)))
    return fair, unfair


def copies_box_counts(fl: list[tuple[np.ndarray, float]], fu: list[tuple[np.ndarray, float]], lo: np.ndarray,
                      hi: np.ndarray, err: np.ndarray, mag: np.ndarray, margin: np.ndarray) -> tuple[int, int]:
    """``(same, differ)``: lower bounds on the points x of one integer box (lo / hi (V, n): the
    box with the protected features set to each of V values, nothing relaxed) whose V copies are
    proven to take one decision (every protected variant of x is then a fair individual), and
    proven not to (every variant is unfair: each decision differs from another value's). ``fl[v] =
    (a (n,), b)`` the lower function of copy v (``fu`` the upper), ``err``, ``mag``, ``margin``
    (V,) as in :func:`twin_box_counts`. Same: copy v's function beyond every other copy's
    threshold shifted by the box minimum of their difference (all yes, or all no), the largest
    over v; differ: the largest over ordered pairs (v, w) of the points with v yes and w no."""
    V, dz = len(fl), lo.shape[1]
    g = MARGIN_SAFETY * gamma64(4 * (dz + 8))
    ev = g * 3 * mag + TINY
    th = err + margin
    widths = (hi[0] - lo[0] + 1).astype(np.int64)
    fns = list(fl) + list(fu)  # rows 0..V-1 lower, V..2V-1 upper
    a = np.stack([f[0] for f in fns])
    lo2 = np.concatenate([lo, lo])
    base = np.array([f[1] + (f[0] * l).sum() for f, l in zip(fns, lo2)])  # each copy's own protected value
    tc = tail_counts(a, base, widths, np.concatenate([ev, ev]))
    def ext(i, j, upper):  # min / max over the box of f_i - f_j, each with its copy's protected values
        d = (np.maximum(a[i] - a[j], 0) if upper else np.minimum(a[i] - a[j], 0)) * (widths - 1)
        v = float(base[i] - base[j] + d.sum())
        rnd = float(g * 3 * (mag[i % V] + mag[j % V]) + TINY)  # the bases' and the sum's rounding
        return v + rnd if upper else v - rnd

    same = 0
    for v in range(V):
        yes = int(tc.above(v, [max([th[v]] + [th[w] - ext(w, v, False) for w in range(V) if w != v])])[0])
        no = int(tc.at_most(V + v, [min([-th[v]] + [-th[w] - ext(V + w, V + v, True) for w in range(V) if w != v])])[0])
        same = max(same, yes + no)
    differ = 0
    for v in range(V):
        for w in range(V):
            if w != v:
                differ = max(differ, tc.between(v, th[v], -th[w] - ext(V + w, v, True)),
                             tc.between(V + w, th[v] - ext(v, V + w, False), -th[w]))
    return same, differ
