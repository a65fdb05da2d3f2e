"""Exact counts of integer points of a box on each side of a hyperplane, for the individual-counting
search (:mod:`fairness_bab`) on boxes where the network is linear.

Where every ReLU of both twin copies is stable over a box and both copies share one activation
pattern, the decision logit is one affine function ``s(x) = a . x + c`` of the box (the copies
differ only in the protected value, so ``s(x') = s(x) + delta``), and an individual (binary
protected attribute, no relaxed ones) is unfair iff ``s(x)`` lies between ``-delta`` and 0.
:func:`count_between` counts the integer points with ``t0 < s(x) <= t1`` by meet in the middle
(the free features split into two groups of about equal point counts; all partial sums of one
group are sorted and each of the other's is located in them by binary search), in time about
``sqrt(points) log(points)``. The counts are exact for real arithmetic as long as no point has
``s(x)`` within ``eps`` of a threshold (``eps`` bounds the float64 error of the computed sums); the
caller passes ``eps`` and the function says whether some point lies in such a band (then the count
is not used)."""
from __future__ import annotations

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


def error_bound(a_abs: np.ndarray, c_abs: float, xmax: np.ndarray) -> float:
    """A generous bound on |computed s(x) - real s(x)| over points with |x| <= xmax: the float64
    rounding of the collapse and of the sums is below 2^-40 of the absolute chain for any net of
    fewer than 2^10 layers and neurons; 1e-9 of it (plus 1e-12) leaves a wide safety factor."""
    return 1e-9 * (float(a_abs @ xmax) + c_abs) + 1e-12


def _groups(widths: np.ndarray) -> tuple[list[int], list[int]]:
    """Split feature indices into two groups of about equal products of widths (largest first)."""
    ga, gb, pa, pb = [], [], 1.0, 1.0
    for i in np.argsort(-widths, kind="stable"):
        if pa <= pb:
            ga.append(int(i))
            pa *= widths[i]
        else:
            gb.append(int(i))
            pb *= widths[i]
    return ga, gb


def _sums(a: np.ndarray, widths: np.ndarray, idx: list[int]) -> np.ndarray:
    """All partial sums ``sum_i a_i k_i`` over ``k_i in 0..w_i-1``, i in ``idx``."""
    s = np.zeros(1)
    for i in idx:
        s = (s[:, None] + a[i] * np.arange(int(widths[i]))[None]).ravel()
    return s


def count_between(a: np.ndarray, base: float, widths: np.ndarray, t0: float, t1: float,
                  eps: float) -> tuple[int, bool]:
    """Number of offset vectors k (0 <= k_i < widths_i) with ``t0 < base + a . k <= t1``, and
    whether some point has ``base + a . k`` within ``eps`` of ``t0`` or of ``t1`` (the count is then
    not exact for the real function). ``a``, ``widths`` over the free features."""
    ga, gb = _groups(widths)
    sa, sb = _sums(a, widths, ga), np.sort(_sums(a, widths, gb))
    r = base + sa

    def above(t):  # #{sb > t - r} summed
        return len(sb) * len(r) - int(np.searchsorted(sb, t - r, side="right").sum())

    def near(t):
        return int((np.searchsorted(sb, t + eps - r, side="right") - np.searchsorted(sb, t - eps - r, side="left")).sum())
    band = near(t0) > 0 or near(t1) > 0
    return above(t0) - above(t1), band
