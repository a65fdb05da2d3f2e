"""Proven-fair and proven-unfair individuals of one box where the network is not linear, counted
from linear bounds of its copies, one per protected value (nothing relaxed).

Each copy v (the box with the protected features set to value v) has real linear functions with
``L_v(x) - err_v <= y_v(x) <= U_v(x) + err_v`` over the box's points x (the forward pass's or
backward CROWN's, :attr:`~certprune.verifiers.twin_bounds.TwinBounds.fns`, ``twin_bounds.copy_fns``).
With ``theta_v`` = err_v + the semantics' sign margin, a point x is proven

* to take one decision under every value (every variant of x is a fair individual): all yes where
  ``L_v(x) > max(theta_v, max_w (theta_w - c_wv))``, ``c_wv = min (L_w - L_v)`` over the box (then
  ``L_w(x) >= L_v(x) + c_wv > theta_w``), all no where ``U_v(x) <= min(-theta_v, min_w (-theta_w -
  C_wv))``, ``C_wv = max (U_w - U_v)``; the best base value v is kept;
* to take different decisions (every variant is unfair: each decision differs from another
  value's): v yes and w no where ``theta_v < L_v(x) <= -theta_w - max (U_w - L_v)``, or
  ``theta_v - min (L_v - U_w) < U_w(x) <= -theta_w``; for two values the two orders are disjoint
  and add up, for more the best ordered pair is kept (their sets overlap).

Each condition is one linear function against thresholds, so :func:`linear_count.tail_counts`
gives a sound lower bound of its count; the two classes are disjoint. Where the copies are linear
(L = U) this is the exact count up to the bins near the thresholds; elsewhere the relaxation's gap
leaves the rest undecided. The min / max over the box and the evaluation of a function at a point
are rounded outward by ``gamma64(4 (dz + 8))`` of 3 x the functions' magnitude bounds (``mag``,
:mod:`bounds.forward`): every partial sum is a sum of at most ``2 (dz + 8)`` of a function's terms
(the offset from the box's corner included), each at most 3 ``mag`` in all.
"""
from __future__ import annotations

import numpy as np

from certprune.bounds.crown import MARGIN_SAFETY, TINY
from certprune.semantics import gamma64
from certprune.verifiers.linear_count import tail_counts


def box_counts(fl: list[tuple[np.ndarray, float]], fu: list[tuple[np.ndarray, float]], lo: np.ndarray,
               hi: np.ndarray, err: np.ndarray, mag: np.ndarray, margin: np.ndarray) -> tuple[int, int]:
    """``(same, differ)``: lower bounds on the points x of one integer box whose copies are proven
    to take one decision and proven not to (module doc). ``lo`` / ``hi`` (V, n): the box with the
    protected features set to each of V values (the same box for every row of a twin box, whose
    coordinates hold both values); ``fl[v] = (a (n,), b)`` the lower function of copy v, ``fu``
    the upper ones; ``err``, ``mag``, ``margin`` (V,) their rounding bounds and sign margins."""
    V, dz = len(fl), lo.shape[1]
    g = MARGIN_SAFETY * gamma64(4 * (dz + 8))
    ev = g * 3 * mag + TINY  # evaluating one function at a point
    th = err + margin
    widths = (hi[0] - lo[0] + 1).astype(np.int64)
    fns = list(fl) + list(fu)  # rows 0..V-1 lower, V..2V-1 upper
    a = np.stack([f[0] for f in fns])
    lo2 = np.concatenate([lo, lo])
    base = np.array([f[1] + (f[0] * c).sum() for f, c in zip(fns, lo2)])  # each copy at its own corner
    tc = tail_counts(a, base, widths, np.concatenate([ev, ev]))

    def ext(i, j, upper):  # min / max over the box of f_i - f_j (offsets from each copy's corner)
        d = (np.maximum(a[i] - a[j], 0) if upper else np.minimum(a[i] - a[j], 0)) * (widths - 1)
        v = float(base[i] - base[j] + d.sum())
        rnd = float(g * 3 * (mag[i % V] + mag[j % V]) + TINY)  # the bases' and the sum's rounding
        return v + rnd if upper else v - rnd

    others = [[w for w in range(V) if w != v] for v in range(V)]
    same = 0
    for v in range(V):
        yes = int(tc.above(v, [max([th[v]] + [th[w] - ext(w, v, False) for w in others[v]])])[0])
        no = int(tc.at_most(V + v, [min([-th[v]] + [-th[w] - ext(V + w, V + v, True) for w in others[v]])])[0])
        same = max(same, yes + no)
    pairs = [max(tc.between(v, th[v], -th[w] - ext(V + w, v, True)),
                 tc.between(V + w, th[v] - ext(v, V + w, False), -th[w])) for v in range(V) for w in others[v]]
    return same, (sum(pairs) if V == 2 else max(pairs))
