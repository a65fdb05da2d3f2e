"""Exact leaves: with every ReLU phase fixed the network is affine, and one disjunct is an LP.

On a domain (box ``[lo, hi]``, a phase for every ReLU, split constraints for the neurons that
branch and bound fixed) the output is ``y = H x + h``, read off the graph IR by the one exact
encoder (``certprune.graph.encode``: chains, residual adds, concats, convolutions, twin
graphs). The LP (scipy ``linprog``, HiGHS)

    minimise t  s.t.  rows(x) <= t,  lo <= x <= hi

over the rows ``A (H x + h) - b`` of the disjunct and the split constraints (``-z_i`` for a
neuron forced active, ``z_i`` for one forced inactive, each scaled to unit max coefficient) has
optimum ``t* <= 0`` iff the disjunct holds somewhere in the domain. Refutation does not trust
the solver's tolerances: the LP duals ``lam`` (normalised to sum 1) give the weak-duality bound
``min_box sum_i lam_i rows_i(x) <= t*``, recomputed here in float64; the disjunct is refuted only
when that recomputed bound exceeds the caller's certification margin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from certprune.graph import Graph


@dataclass(frozen=True)
class LeafOutcome:
    """``status``: 'refuted' (bound > margin, sound), 'candidate' (x is an LP optimum with
    t* <= margin; check it in float32), 'fractional' (x has a non-integral integer input:
    branch on ``dim`` at ``value``), or 'failed' (solver gave no answer in time)."""

    status: str
    bound: float = float("nan")
    x: np.ndarray | None = None
    dim: int = -1
    value: float = float("nan")


def affine_pieces(graph: Graph, pre: list[tuple[np.ndarray, np.ndarray]], splits: list[np.ndarray]):
    """(H, h, P, p): output ``y = H x + h`` on the domain's linear piece (every ReLU stable under
    ``pre``) and split rows ``P x + p <= 0`` (one per split neuron), dense float64."""
    from certprune.graph.encode import encode  # scipy.sparse: imported on the first leaf only

    enc = encode(graph, pre, splits)
    if enc.n_vars != enc.n_in:
        raise ValueError("affine_pieces needs every ReLU stable on the domain")
    P, p = enc.split_rows
    return np.asarray(enc.out.M), enc.out.c, np.asarray(P), p


def solve_leaf(graph: Graph, lo: np.ndarray, hi: np.ndarray, pre: list[tuple[np.ndarray, np.ndarray]],
               splits: list[np.ndarray], A: np.ndarray, b: np.ndarray, margin: float,
               time_limit: float, int_mask: np.ndarray | None = None) -> LeafOutcome:
    """Decide one disjunct ``A y <= b`` on a domain whose ReLUs are all stable under its sound
    bounds ``pre`` (flat (l, u) per ReLU node; ``splits`` its split vectors; see module doc)."""
    from scipy.optimize import linprog

    H, h, P, p = affine_pieces(graph, pre, splits)
    M = np.vstack([A @ H, P])           # rows(x) = M x + m
    m = np.concatenate([A @ h - b, p])
    n = M.shape[1]
    scale = np.maximum(np.abs(M).max(axis=1), 1.0)  # row scaling for the solver only
    A_ub = np.hstack([M / scale[:, None], -1.0 / scale[:, None]])
    res = linprog(np.r_[np.zeros(n), 1.0], A_ub=A_ub, b_ub=-m / scale,
                  bounds=[*zip(lo, hi), (None, None)], method="highs",
                  options={"time_limit": max(time_limit, 0.01)})
    if res.status != 0:
        return LeafOutcome("failed")
    lam = np.clip(-res.ineqlin.marginals, 0, None) / scale
    if lam.sum() > 0:
        lam = lam / lam.sum()
        gx, c0 = lam @ M, lam @ m
        bound = float(c0 + np.minimum(gx * lo, gx * hi).sum())
        if bound > margin:
            return LeafOutcome("refuted", bound)
    x = np.clip(res.x[:n], lo, hi)
    if int_mask is not None and int_mask.any():
        frac = np.abs(x - np.round(x)) * int_mask
        i = int(np.argmax(frac))
        if frac[i] > 1e-9:
            return LeafOutcome("fractional", float(res.fun), x, i, float(x[i]))
        x = np.where(int_mask, np.round(x), x)
    return LeafOutcome("candidate", float(res.fun), x)
