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
``min_box sum_i lam_i rows_i(x) <= t*``, recomputed here; the disjunct is refuted only
when that recomputed bound exceeds the caller's certification margin. The recomputation does
not trust the float64 affine piece either (its products of weights round: far off on
ill-conditioned nets): the multipliers ``lam`` combine the *real* functions ``A y(x) - b`` and
``f_k z_k(x)`` (split row k is ``f_k z_k``, ``f_k`` of its sign), whose minimum over the domain
is bounded by the rigorous backward sweep of ``certprune.bounds.crown`` on the domain's bounds
(every ReLU stable: the sweep is exact up to its rounding margin), less the rounding of
``lam @ A`` and ``lam @ b`` (:func:`dual_certificate`).
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

    H, h, P, p, _ = _pieces(graph, pre, splits)
    return H, h, P, p


def _pieces(graph: Graph, pre, splits):
    from certprune.graph.encode import encode  # scipy.sparse: imported on the first leaf only

    enc = encode(graph, pre, splits)
    if enc.n_vars != enc.n_in:
        raise ValueError("affine_pieces needs every ReLU stable on the domain")
    P, p = enc.split_rows
    return np.asarray(enc.out.M), enc.out.c, np.asarray(P), p, enc.split_f


def dual_certificate(graph: Graph, lo: np.ndarray, hi: np.ndarray, pre, splits, A: np.ndarray, b: np.ndarray,
                     lam_a: np.ndarray, lam_p: np.ndarray, f: np.ndarray) -> float:
    """A rigorous lower bound (real arithmetic) of ``lam_a . (A y(x) - b) + sum_k lam_p[k] f[k]
    z_k(x)`` over the domain (box, every ReLU stable under ``pre``): split row k belongs to the
    k-th nonzero split in ReLU-node then neuron order (the encoder's order). On the domain's
    points that violate the disjunct the function is <= 0, so a bound > 0 refutes it."""
    import torch

    from certprune.bounds import crown
    from certprune.semantics import U64, gamma64

    tl, th = torch.as_tensor(lo, dtype=torch.float64)[None], torch.as_tensor(hi, dtype=torch.float64)[None]
    st = crown.domain_state(graph, tl, th, [(torch.as_tensor(l)[None], torch.as_tensor(u)[None]) for l, u in pre])
    out = graph.nodes[graph.output]
    w = lam_a @ A
    acc = {graph.output: torch.as_tensor(w, dtype=torch.float64).reshape(1, 1, *out.shape)}
    k = 0
    for j, s in zip(graph.relu_nodes, splits):
        idx = np.flatnonzero(s)
        if not len(idx):
            continue
        z = graph.nodes[j].inputs[0]
        c = np.zeros(graph.nodes[z].size)
        c[idx] = lam_p[k:k + len(idx)] * f[k:k + len(idx)]  # the multiplier of z: any sign-correct value
        k += len(idx)
        ct = torch.as_tensor(c).reshape(1, 1, *graph.nodes[z].shape)
        acc[z] = ct if z not in acc else acc[z] + ct  # (exact: disjoint entries or a node's own sum, bounded below)
    lower = float(crown.sweep(graph, graph.output, acc, torch.zeros(1, 1, dtype=torch.float64), st,
                              keep_lam=False).lower[0, 0])
    # w is lam_a @ A rounded (inner length len(b)): the real combination differs by |dw| . |y|
    m_y = torch.maximum(st.bounds[graph.output][0].abs(), st.bounds[graph.output][1].abs()).reshape(-1).numpy()
    g = gamma64(2 * (len(b) + 4))
    slack = g * float((np.abs(lam_a) @ np.abs(A)) @ m_y + np.abs(lam_a) @ np.abs(b))
    val = lower - float(lam_a @ b) - slack
    return val - 4 * U64 * abs(val)


def solve_leaf(graph: Graph, lo: np.ndarray, hi: np.ndarray, pre: list[tuple[np.ndarray, np.ndarray]],
               splits: list[np.ndarray], A: np.ndarray, b: np.ndarray, margin: float,
               time_limit: float, int_mask: np.ndarray | None = None) -> LeafOutcome:
    """Decide one disjunct ``A y <= b`` on a domain whose ReLUs are all stable under its sound
    bounds ``pre`` (flat (l, u) per ReLU node; ``splits`` its split vectors; see module doc)."""
    from scipy.optimize import linprog

    H, h, P, p, f = _pieces(graph, pre, splits)
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
        if bound > margin:  # the float64 affine piece agrees: check it rigorously
            bound = dual_certificate(graph, lo, hi, pre, splits, A, b, lam[:len(A)], lam[len(A):], f)
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
