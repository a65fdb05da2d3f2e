"""Exact back end for small stalled domains: a big-M MILP of the whole graph (scipy ``milp``,
HiGHS branch and cut) over the domain's box, its split constraints and its sound
pre-activation bounds, built by the one exact encoder (``certprune.graph.encode``: chains,
residual adds, concats, convolutions, twin graphs).

Variables (the lifted encoding): inputs ``x`` (integral where the region says so), per ReLU
input ``z`` in ``[l, u]`` (the domain's clamped bounds, which also encode its split
constraints), per unstable neuron ``a`` in ``[0, u]`` and a binary ``d`` with ``a >= z``,
``a <= z - l (1 - d)``, ``a <= u d``; stable neurons are exact (``a = z`` or ``a = 0``). The
objective is ``min t`` with ``A y - b <= t`` for one disjunct, and ``t`` is capped at the
refutation threshold (below): only points that could violate are searched for, so HiGHS prunes
every node whose relaxation lies above it and an infeasible model is a refutation (on mnist_fc
256x2 the uncapped MILPs spent most of their time closing the gap above the threshold).

Tolerances: HiGHS works with feasibility/integrality tolerances around 1e-6, so this back end
does not re-derive its refutations the way ``lp_leaf`` does. A disjunct is refuted only when
the solver's *dual* bound exceeds ``margin + 1e-5 * (1 + |b|)``; anything in between, a time
limit or a solver failure sends the domain back to branching. An infeasible MILP (no point of
the domain with ``t`` at or below that threshold, or split constraints that contradict each
other) refutes the disjunct on the domain. A violation is only a candidate
point that the caller re-checks in float32 on the original model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from certprune.graph import Graph

SOLVER_SLACK = 1e-5


@dataclass(frozen=True)
class MilpOutcome:
    """``status``: 'refuted', 'candidate' (``x`` set) or 'open' (undecided: keep branching)."""

    status: str
    x: np.ndarray | None = None
    bound: float = float("nan")


def solve_milp(graph: Graph, lo: np.ndarray, hi: np.ndarray, pre: list[tuple[np.ndarray, np.ndarray]],
               A: np.ndarray, b: np.ndarray, margin: float, time_limit: float,
               int_mask: np.ndarray | None = None, splits: list[np.ndarray] | None = None) -> MilpOutcome:
    """Decide one disjunct ``A y <= b`` on the domain: box ``lo``/``hi``, flat bounds ``pre`` of
    every ReLU node's input (sound on the domain), ``splits`` the domain's split vectors."""
    import scipy.sparse as sp
    from scipy.optimize import LinearConstraint, milp

    from certprune.graph.encode import encode

    enc = encode(graph, pre, splits, lifted=True)
    n = enc.n_vars + 1  # the last variable is t
    slack = margin + SOLVER_SLACK * (1 + float(np.abs(b).max()))
    vlo, vhi = np.r_[enc.var_lo, -np.inf], np.r_[enc.var_hi, slack]
    vlo[:enc.n_in], vhi[:enc.n_in] = lo, hi
    integ = np.r_[enc.integrality, 0.0]
    if int_mask is not None:
        integ[:enc.n_in] = np.maximum(integ[:enc.n_in], int_mask)

    def widen(M):
        return sp.hstack([M, sp.csr_matrix((M.shape[0], 1))], format="csr")

    R, rlo, rhi = enc.rows
    P, p = enc.split_rows
    P = sp.csr_matrix(P)
    G = sp.csr_matrix(sp.csr_matrix(A) @ enc.out.M)
    g = A @ enc.out.c - b
    out = sp.hstack([G, sp.csr_matrix(-np.ones((G.shape[0], 1)))], format="csr")
    cons = LinearConstraint(sp.vstack([widen(R), widen(P), out], format="csr"),
                            np.concatenate([rlo, np.full(len(p), -np.inf), np.full(len(g), -np.inf)]),
                            np.concatenate([rhi, -p, -g]))
    cost = np.zeros(n)
    cost[-1] = 1.0
    res = milp(cost, constraints=cons, integrality=integ, bounds=(vlo, vhi),
               options={"time_limit": max(time_limit, 0.05), "mip_rel_gap": 1e-6})
    if res.status == 2:  # HiGHS: no point with t <= slack (or the domain itself is empty)
        return MilpOutcome("refuted", bound=float("inf"))
    dual = getattr(res, "mip_dual_bound", None)
    if dual is not None and np.isfinite(dual) and dual > slack:
        return MilpOutcome("refuted", bound=float(dual))
    if res.x is not None and res.fun is not None and res.fun <= margin:
        x = np.clip(res.x[:lo.size], lo, hi)
        if int_mask is not None:
            x = np.where(int_mask, np.round(x), x)
        return MilpOutcome("candidate", x, float(res.fun))
    return MilpOutcome("open", bound=float("nan") if dual is None else float(dual))
