"""Exact counts of integer points of a box on each side of a hyperplane, for the individual-counting
search (:mod:`fairness_bab`) on boxes where the network is linear.

Where every ReLU of both twin copies is stable over a box and both copies share one activation
pattern, the decision logit is one affine function ``s(x) = a . x + c`` of the box (the copies
differ only in the protected value, so ``s(x') = s(x) + delta``), and an individual (binary
protected attribute, no relaxed ones) is unfair iff ``s(x)`` lies between ``-delta`` and 0.
:func:`count_between` counts the integer points with ``t0 < s(x) <= t1`` by meet in the middle
(the free features split into two groups, the searched one ~4x the other in point counts; all partial sums of one
group are sorted and each of the other's is located in them by binary search), in time about
``sqrt(points) log(points)``. The float64 count is that of real arithmetic except for points whose
computed ``s(x)`` lies within ``eps`` of a threshold (``eps`` bounds the float64 error, plus under
the float32 semantics its rounding margin); those band points are listed, and the caller decides
each of them exactly and corrects the count."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


def collapse(weights, biases, active: list[np.ndarray]) -> tuple[np.ndarray, float, np.ndarray, float]:
    """The affine map of a ReLU MLP with a fixed activation pattern: ``(a, c, a_abs, c_abs)`` with
    ``s(x) = a . x + c`` (float64 from the float32 weights) and the same chain of absolute values
    (for the error bound). ``active[k]`` (h_k,) bool: hidden layer k's ReLUs that pass their input."""
    A = np.asarray(weights[0], dtype=np.float64)
    c = np.asarray(biases[0], dtype=np.float64)
    Aa, ca = np.abs(A), np.abs(c)
    for W, b, m in zip(weights[1:], biases[1:], active):
        W = np.asarray(W, dtype=np.float64)
        Wm = W[:, m]
        A, c = Wm @ A[m], Wm @ c[m] + np.asarray(b, dtype=np.float64)
        Aa, ca = np.abs(Wm) @ Aa[m], np.abs(Wm) @ ca[m] + np.abs(np.asarray(b, dtype=np.float64))
    return A[0], float(c[0]), Aa[0], float(ca[0])


def error_bound(a_abs: np.ndarray, c_abs, xmax: np.ndarray, depth: int, width: int):
    """A bound on |computed s(x) - real s(x)| where every term of the computed sums is at most
    ``a_abs_i xmax_i`` in magnitude (the caller passes ``xmax = |lo| + (hi - lo)``, which bounds
    the offsets of :func:`count_between`'s partial sums and the base point alike): each of the ``depth``
    products of the collapse (inner dimension <= ``width``) and the at most ``2 n + 8`` additions of
    a point's sum (n features) add at most ``k 2^-53`` relative to the absolute chain
    ``a_abs . xmax + c_abs`` (Higham's gamma_k, first order); doubled, plus 1e-300, for safety.
    Row-wise for stacked inputs (features on the last axis; ``c_abs`` one per row)."""
    k = depth * width + 2 * np.shape(xmax)[-1] + 8
    return 2.0 * k * 2.0 ** -53 * ((np.asarray(a_abs) * xmax).sum(-1) + c_abs) + 1e-300


QUERY_RATIO = 4.0  # the searched group ~4x the query group: measured 20 % faster than equal halves


def _groups(widths: np.ndarray, ratio: float = QUERY_RATIO) -> tuple[list[int], list[int]]:
    """Split feature indices (largest width first) into the query group and the searched group,
    the searched one's product of widths about ``QUERY_RATIO`` times the other's: per query a
    binary search and the band tests cost more than sorting one more value (run merging, see
    :func:`_sorted_sums`), so fewer queries than searched values is faster."""
    ga, gb, pa, pb = [], [], 1.0, 1.0
    for i in np.argsort(-widths, kind="stable"):
        if pa * ratio <= pb:
            ga.append(int(i))
            pa *= widths[i]
        else:
            gb.append(int(i))
            pb *= widths[i]
    return ga, gb


def _sums(a: np.ndarray, widths: np.ndarray, idx: list[int]) -> np.ndarray:
    """All partial sums ``sum_i a_i k_i`` over ``k_i in 0..w_i-1``, i in ``idx``, in C order of
    ``widths[idx]`` (the first feature of ``idx`` slowest)."""
    s = np.zeros(1)
    for i in idx:
        s = (s[:, None] + a[i] * np.arange(int(widths[i]))[None]).ravel()
    return s


SUMS_CACHE_BYTES = 1 << 27  # sorted partial sums kept for reuse (least recently used dropped beyond this)
_SUMS_CACHE: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_SUMS_HELD = [0]


def _sorted_sums(a: np.ndarray, widths: np.ndarray, idx: list[int]) -> np.ndarray:
    """``np.sort(_sums(a, widths, idx))``, bit for bit, built feature by feature: the sums so far,
    sorted, plus ``a_i k`` for each k are ``w_i`` sorted runs (adding a constant is monotone in
    floating point), and merging runs (numpy's stable sort) is 3-5x faster than sorting the final
    sums from scratch (measured on 10^6-5 10^6 sums: the sorts were half of a count's time). Each
    value is the same floating-point sum as in :func:`_sums` (same operands, same order).
    The result depends on ``a[idx]`` and ``widths[idx]`` only, and the counts of one audit share
    them often (one activation pattern, boxes of equal widths: 84 % of GC-3's calls in 30 s
    repeat an earlier one), so results are kept (read-only, ``SUMS_CACHE_BYTES`` in all)."""
    key = (np.asarray(a, dtype=np.float64)[idx].tobytes(), np.asarray(widths, dtype=np.int64)[idx].tobytes())
    hit = _SUMS_CACHE.get(key)
    if hit is not None:
        _SUMS_CACHE.move_to_end(key)
        return hit
    s = np.zeros(1)
    for i in idx:
        s = (s[None, :] + a[i] * np.arange(int(widths[i]))[:, None]).ravel()
        s.sort(kind="stable")
    if s.nbytes <= SUMS_CACHE_BYTES // 4:
        s.flags.writeable = False
        _SUMS_CACHE[key] = s
        _SUMS_HELD[0] += s.nbytes
        while _SUMS_HELD[0] > SUMS_CACHE_BYTES:
            _, old = _SUMS_CACHE.popitem(last=False)
            _SUMS_HELD[0] -= old.nbytes
    return s


def band_size(a: np.ndarray, widths: np.ndarray, eps):
    """Expected number of points within ``eps`` of one threshold if the values ``a . k`` were spread
    evenly over their range (a cheap test before a count: a large band is not worth resolving).
    Row-wise for stacked inputs (features on the last axis)."""
    span = (np.abs(a) * (np.asarray(widths) - 1)).sum(-1)
    pts = np.prod(np.asarray(widths, dtype=np.float64), axis=-1)
    return np.where(span <= 0, pts, pts * np.minimum(1.0, 2 * np.asarray(eps) / np.where(span > 0, span, 1.0)))


def _raw_index(raw: np.ndarray, srt: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Indices into ``raw`` of the positions ``pos`` of ``srt = sort(raw)``, distinct for distinct
    positions: within a run of equal values any one-to-one assignment serves, since the counts
    compare values only and a band range (``searchsorted`` on values) holds whole runs."""
    uv = np.unique(srt[pos])
    k = np.minimum(np.searchsorted(uv, raw), len(uv) - 1)
    hits = np.flatnonzero(uv[k] == raw)  # every raw index holding one of the values
    hits = hits[np.argsort(raw[hits], kind="stable")]
    hv = raw[hits]
    v = srt[pos]
    rank = pos - np.searchsorted(srt, v, side="left")  # position within its run of equal values
    return hits[np.searchsorted(hv, v, side="left") + rank]


BAND_CANDIDATES_MAX = 1 << 20  # candidate points _band_match recomputes (beyond: the raw sums are built)


def _band_index(a: np.ndarray, widths: np.ndarray, idx: list[int], srt: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``_raw_index(_sums(a, widths, idx), srt, pos)``, the same indices, without building all the
    group's sums where :func:`_band_match` finds them: a count's band holds a handful of points,
    but the raw sums of a group (GC-1: 5 10^6) and the search for their values in them took 80 %
    of GC-1's count time."""
    got = _band_match(a, widths, idx, srt, pos) if len(idx) >= 2 else None
    return _raw_index(_sums(a, widths, idx), srt, pos) if got is None else got


def _band_match(a: np.ndarray, widths: np.ndarray, idx: list[int], srt: np.ndarray, pos: np.ndarray):
    """:func:`_band_index` by meet in the middle once more: the group's features (two or more)
    split in two halves whose sums (about the square root as many) are sorted; the pairs whose real
    sum lies within the float64 error bound of a band value are the candidates; each candidate's
    sum is recomputed exactly as :func:`_sums` computes it (same operands, same order) and kept
    where it equals the value. None where a value's run in ``srt`` is not matched in full (a bound
    too tight) or there are more than ``BAND_CANDIDATES_MAX`` candidates, so the caller's result
    never depends on the bound."""
    w = np.asarray(widths, dtype=np.int64)[idx]
    m = len(idx)
    vals = np.unique(srt[pos])
    left = np.searchsorted(srt, vals, side="left")
    runs = np.searchsorted(srt, vals, side="right") - left
    ai = np.asarray(a, dtype=np.float64)[idx]
    h1, h2 = _groups(w.astype(np.float64), 1.0)
    s1, s2 = _sums(ai, w, h1), _sums(ai, w, h2)
    o2 = np.argsort(s2, kind="stable")
    s2o = s2[o2]
    # |computed - real| <= (m + 1) u sum |a_i| (w_i - 1) for each of the three sums (the group's
    # and its halves'), and one more rounding in s1 + s2: 8x that is the window
    err = 8.0 * (m + 2) * 2.0 ** -53 * float((np.abs(ai) * (w - 1)).sum()) + 1e-300
    q = vals[:, None] - s1[None]  # (values, half-1 sums)
    l2 = np.searchsorted(s2o, (q - err).ravel(), side="left")
    n = np.searchsorted(s2o, (q + err).ravel(), side="right") - l2
    total = int(n.sum())
    if total > BAND_CANDIDATES_MAX:
        return None
    rows = np.repeat(np.arange(len(n)), n)
    j2 = np.repeat(l2, n) + (np.arange(total) - np.repeat(np.cumsum(n) - n, n))
    cv, c1, c2 = rows // len(s1), rows % len(s1), o2[j2]
    ks = np.zeros((total, m), dtype=np.int64)
    for h, c in ((h1, c1), (h2, c2)):
        if h:  # (a half is empty where the other holds every feature wider than 1)
            ks[:, h] = np.stack(np.unravel_index(c, tuple(w[h])), 1)
    sv = np.zeros(total)
    for t in range(m):  # as _sums: s + a_i * k_i, features in idx order
        sv = sv + ai[t] * ks[:, t].astype(np.float64)
    hit = sv == vals[cv]
    cv, raw = cv[hit], np.ravel_multi_index(tuple(ks[hit].T), tuple(w))
    if not np.array_equal(np.bincount(cv, minlength=len(vals)), runs):
        return None
    order = np.lexsort((raw, cv))  # by value, then C order within a value (as _raw_index)
    raw, starts = raw[order], np.cumsum(runs) - runs
    v = np.searchsorted(vals, srt[pos])
    return raw[starts[v] + pos - left[v]]


@dataclass
class Count:
    """``inside``: points k with ``t0 < base + a . k <= t1`` as computed in float64; ``band`` (m, F)
    the offset vectors of the points computed within ``eps`` of ``t0`` or ``t1`` (whose real value may
    lie on the other side), ``band_inside`` (m,) whether each was counted in ``inside``."""

    inside: int
    band: np.ndarray
    band_inside: np.ndarray


def count_between(a: np.ndarray, base: float, widths: np.ndarray, t0: float, t1: float,
                  eps: float, max_band: int) -> Count | None:
    """Count the offset vectors k (0 <= k_i < widths_i) with ``t0 < base + a . k <= t1`` (see
    :class:`Count`), or None when more than ``max_band`` points lie in the bands. ``a``, ``widths``
    over the free features; threshold and ``eps`` in units of ``s``."""
    widths = np.asarray(widths, dtype=np.int64)
    ga, gb = _groups(widths)
    sa, sb = _sorted_sums(a, widths, ga), _sorted_sums(a, widths, gb)  # values only; the raw
    # sums' order (C order, for the band points' offsets) is recovered only where a band holds points
    r = base + sa[::-1]  # descending, so every query t - r below is ascending (fast search)

    n = len(sb)

    def band(t, p):
        """[l, h): the positions j with t - eps - r <= sb_j <= t + eps - r per row (as
        searchsorted computes them), given p = #(sb <= t - r): l <= p <= h, and l < p (h > p)
        only where sb[p - 1] (sb[p]) lies in the band, so only those rows are searched."""
        qlo, qhi = (t - eps) - r, (t + eps) - r
        l, h = p.copy(), p.copy()
        rows = np.flatnonzero(((p > 0) & (sb[np.maximum(p - 1, 0)] >= qlo)) | ((p < n) & (sb[np.minimum(p, n - 1)] <= qhi)))
        l[rows] = np.searchsorted(sb, qlo[rows], side="left")
        h[rows] = np.searchsorted(sb, qhi[rows], side="right")
        return l, h
    p0, p1 = (np.searchsorted(sb, t - r, side="right") for t in (t0, t1))
    inside = int(p1.sum() - p0.sum()) if t1 > t0 else 0
    (l0, h0), (l1, h1) = band(t0, p0), band(t1, p1)
    lo, hi = [l0, l1], [h0, h1]
    if sum(int((h - l).sum()) for l, h in zip(lo, hi)) > max_band:
        return None
    pairs = set()
    for l, h in zip(lo, hi):
        for i in np.flatnonzero(h > l):
            pairs.update((int(i), int(j)) for j in range(int(l[i]), int(h[i])))
    pairs = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    band = np.zeros((len(pairs), len(widths)), dtype=np.int64)
    inside_b = np.zeros(len(pairs), dtype=bool)
    if len(pairs):
        ia = _band_index(a, widths, ga, sa, len(sa) - 1 - pairs[:, 0])  # r[i] = base + sa[n - 1 - i]
        ib = _band_index(a, widths, gb, sb, pairs[:, 1])
        if ga:
            band[:, ga] = np.stack(np.unravel_index(ia, tuple(widths[ga])), 1)
        if gb:
            band[:, gb] = np.stack(np.unravel_index(ib, tuple(widths[gb])), 1)
        # the very comparisons `inside` counted with (sb[j] <= fl(t - r[i])), not fl(r[i] + sb[j])
        # against t: the two can differ by one rounding, and the caller's correction
        # `inside - band_inside + exact` must remove exactly what `inside` counted
        ri, sj = r[pairs[:, 0]], sb[pairs[:, 1]]
        inside_b[:] = (t1 > t0) & (t0 - ri < sj) & (sj <= t1 - ri)
    return Count(inside, band, inside_b)


# ----- sound lower bounds of counts under linear bounds (boxes where the network is not linear) -----
TAIL_BINS = 4096  # bins per group's sums: a count loses at most ~4 bins of h ~ (span / 2 TAIL_BINS) of points


@dataclass
class TailCounts:
    """Sound lower bounds on how many integer points of one box lie above / below thresholds of
    each of R linear functions ``f_r(k) = base_r + a_r . k`` (offsets 0 <= k_i < widths_i), where
    the caller's computed coefficients are taken as exact reals and ``eps_r`` bounds the float64
    error of evaluating ``f_r`` at a point (any order of its partial sums). Built by
    :func:`tail_counts`: integer points of a box counted by a linear function (no library does
    this; exact counting is #P-hard in general), here bracketed by binned meet in the middle."""

    base: np.ndarray   # (R,)
    eps: np.ndarray    # (R,)
    h: np.ndarray      # (R,) bin width, a power of two (so bins are exact: s / h is exact)
    lo_sum: np.ndarray  # (R,) the smallest bin index sum
    hist_a: np.ndarray  # (R, LA) points of group A per bin (offset by its smallest bin)
    tail_b: np.ndarray  # (R, LB + 1) points of group B at or above each bin (offset), 0 past the end
    total: int
    drop: tuple[np.ndarray, np.ndarray]  # (R,) each: bounds of the dropped features' sum
    mult: int  # points of the dropped features (each kept point stands for this many)
    spread: int = 2  # a kept sum with bin index sum S lies in [h S, h (S + spread))

    def _at_least(self, r: int, J) -> np.ndarray:
        """Kept points whose bins' index sum is >= J (an array of thresholds), times ``mult``."""
        J = np.clip(np.atleast_1d(np.asarray(J, dtype=np.float64)), -2.0 ** 62, 2.0 ** 62)  # huge q: all or none
        J = J.astype(np.int64) - self.lo_sum[r]
        ha, tb = self.hist_a[r], self.tail_b[r]
        jb = np.clip(J[:, None] - np.arange(len(ha))[None], 0, len(tb) - 1)
        return (ha[None] * tb[jb]).sum(1) * self.mult

    def _q(self, r: int, t, above: bool) -> np.ndarray:
        """Thresholds in bins: f > t where the kept sum's bins say ``> (t - dlo + eps - base) / h``
        (f <= t where ``<= (t - dhi - eps - base) / h``), the dropped sum in [dlo, dhi]."""
        t = np.asarray(t, dtype=np.float64)
        if above:
            return (t - self.drop[0][r] + self.eps[r] - self.base[r]) / self.h[r]
        return (t - self.drop[1][r] - self.eps[r] - self.base[r]) / self.h[r]

    def above(self, r: int, t) -> np.ndarray:
        """Points with ``f_r > t`` (lower bound, exact integers), thresholds ``t`` (T,)."""
        return self._at_least(r, np.floor(self._q(r, t, True)) + 2)  # kept >= base + h S; +1 for rounding q

    def at_most(self, r: int, t) -> np.ndarray:
        """Points with ``f_r <= t`` (lower bound), thresholds ``t`` (T,)."""
        return self.total - self._at_least(r, np.floor(self._q(r, t, False)) - self.spread)  # kept < h (S + spread)

    def between(self, r: int, t0: float, t1: float) -> int:
        """Points with ``t0 < f_r <= t1`` (lower bound)."""
        j0, j1 = np.floor(self._q(r, t0, True)) + 2, np.floor(self._q(r, t1, False)) - self.spread - 1
        if not (j1 >= j0):  # also NaN
            return 0
        c = self._at_least(r, [j0, j1 + 1])
        return int(c[0] - c[1])


DROP_SHARE = 2.0 ** -9  # features whose spans add up to at most this share of a function's span are held as an interval


def tail_counts(a: np.ndarray, base: np.ndarray, widths: np.ndarray, eps: np.ndarray,
                bins: int = TAIL_BINS, drop_share: float = DROP_SHARE) -> TailCounts:
    """:class:`TailCounts` of R functions (``a`` (R, F), ``base``, ``eps`` (R,)) over one box of
    ``widths`` (F,). Meet in the middle as :func:`count_between`, but binned instead of sorted: the
    partial sums of two feature groups (about sqrt(points) each) go into ``bins`` bins of width h
    (a power of two, so ``floor(s / h)`` is exact), then a count is one product of group A's
    histogram with group B's tail counts. A sum's bin fixes it within 2 h (one h per group), so the
    counts are exact integers and lower bounds; they miss the points within ~4 h + eps of a
    threshold. The features of smallest span (``|a_i| (w_i - 1)``), up to ``drop_share`` of every
    function's span in all, are not enumerated: their sum is held as an interval (each kept point
    stands for all their values), which widens that band by the dropped span and divides the
    points to enumerate by theirs. Cost: O(sqrt(kept points) + bins) per function and one
    histogram product per query."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    widths = np.asarray(widths, dtype=np.int64)
    R = len(a)
    spans = np.abs(a) * (widths - 1)
    share = spans / np.maximum(spans.sum(1, keepdims=True), 2.0 ** -600)
    order = np.argsort(share.max(0), kind="stable")
    cum = np.cumsum(share[:, order], axis=1).max(0)
    dropped = order[cum <= drop_share]
    dropped = dropped[widths[dropped] > 1]
    keep = np.ones(len(widths), dtype=bool)
    keep[dropped] = False
    ad = a[:, dropped] * (widths[dropped] - 1)
    dlo, dhi = np.minimum(ad, 0).sum(1), np.maximum(ad, 0).sum(1)
    slack = 2.0 ** -50 * (np.abs(dlo) + np.abs(dhi)) + 2.0 ** -900  # their rounding
    kept = np.flatnonzero(keep)
    ga, gb = (kept[g] for g in _groups(widths[kept], 1.0))  # both groups are built: equal sizes
    span = np.maximum(spans[:, kept].sum(1) / 2, 2.0 ** -600)
    h = np.exp2(np.ceil(np.log2(span / bins)))
    hists, mins, spread = [], [], 0
    for g in (ga, gb):
        hist, m, sp = _group_histogram(a, widths, g, h)
        hists.append(hist)
        mins.append(m)
        spread += sp
    hb = hists[1]
    tail = np.zeros((R, hb.shape[1] + 1), dtype=np.int64)
    tail[:, :-1] = np.cumsum(hb[:, ::-1], axis=1)[:, ::-1]
    return TailCounts(np.asarray(base, dtype=np.float64), np.asarray(eps, dtype=np.float64), h, mins[0] + mins[1],
                      hists[0], tail, int(np.prod(widths.astype(object))), (dlo - slack, dhi + slack),
                      int(np.prod(widths[dropped].astype(object))), spread)


# a group's sums are enumerated while there are at most ENUMERATE_RATIO x (its DP's shifts x (bins
# + DP_SHIFT_COST)) of them, or at most ENUMERATE_MIN: measured, one enumerated sum costs ~8 ns in
# all its passes, one shift of the DP ~1.5 us plus ~1 ns per bin (cells of GC-2, ~10^12 points:
# 52 ms per count enumerated, 7 ms by the DP, the same counts within 0.2 %)
ENUMERATE_RATIO = 0.125
DP_SHIFT_COST = 1500
ENUMERATE_MIN = 4096


def _group_histogram(a: np.ndarray, widths: np.ndarray, g, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(hist (R, L), m (R,), spread)``: points of the features ``g`` per bin of their sum, bin
    index ``m + j`` (width h, a power of two), each sum within ``[h (m + j), h (m + j + spread))``.
    Small groups enumerate their sums (``floor(s / h)``, spread 1); large ones build the histogram
    feature by feature (a dynamic program over bins, each value of a feature shifting the histogram
    by ``floor(a_i k / h)``: spread one bin per feature, cost sum(w_i) x bins instead of the
    group's product of widths, what makes boxes of 10^12 or more points countable)."""
    R = len(a)
    if len(g) == 0:
        return np.ones((R, 1), dtype=np.int64), np.zeros(R, dtype=np.int64), 0
    pts = float(np.prod(widths[g].astype(np.float64)))
    span = (np.abs(a[:, g]) * (widths[g] - 1)).sum(1) / h
    wg = widths[g].astype(np.float64)
    dp_work = (wg.sum() - wg.max()) * (float(span.max()) + 1 + DP_SHIFT_COST) + wg.max()  # widest: a bincount
    if pts <= ENUMERATE_RATIO * dp_work or pts <= ENUMERATE_MIN:
        s = np.zeros((R, 1))
        for i in g:
            s = (s[:, :, None] + (a[:, i] / h)[:, None, None] * np.arange(int(widths[i]))[None, None, :]).reshape(R, -1)
        b = np.floor(s).astype(np.int64)  # s is in units of h (scaled by a power of two: exact)
        m = b.min(1)
        b -= m[:, None]
        L = int(b.max()) + 1
        return np.bincount((b + (np.arange(R) * L)[:, None]).ravel(), minlength=R * L).reshape(R, L), m, 1
    g = sorted(g, key=lambda i: -int(widths[i]))  # the widest first: its histogram is one bincount
    q = [np.floor((a[:, i] / h)[:, None] * np.arange(int(widths[i]))[None]).astype(np.int64) for i in g]
    m = sum(qi.min(1) for qi in q)
    q = [qi - qi.min(1, keepdims=True) for qi in q]
    L = int(sum(qi.max(1) for qi in q).max()) + 1
    hist = np.zeros((R, L), dtype=np.int64)
    for r in range(R):
        hist[r, :int(q[0][r].max()) + 1] = np.bincount(q[0][r])
    top = q[0].max(1)  # highest occupied bin per row
    for qi in q[1:]:
        new = np.zeros_like(hist)
        for r in range(R):
            n = int(top[r]) + 1
            for shift in qi[r]:
                new[r, shift:shift + n] += hist[r, :n]
        top += qi.max(1)
        hist = new
    return hist, m, int((widths[g] > 1).sum())
