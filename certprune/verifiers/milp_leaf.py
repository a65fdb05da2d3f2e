"""Exact back end for small stalled domains: a big-M MILP of the whole network (scipy ``milp``,
HiGHS branch and cut) over the domain's box and its sound pre-activation bounds.

Variables: inputs ``x`` (integral where the region says so), per ReLU layer ``z`` in ``[l, u]``
(the domain's clamped bounds, which also encode its split constraints), ``a`` in
``[0, max(u, 0)]``, and a binary ``d`` per unstable neuron with ``a >= z``, ``a <= z - l (1 - d)``,
``a <= u d``; stable neurons are exact (``a = z`` or ``a = 0``). The objective is
``min t`` with ``A y - b <= t`` for one disjunct.

Tolerances: HiGHS works with feasibility/integrality tolerances around 1e-6, so this back end
does not re-derive its refutations the way ``lp_leaf`` does. A disjunct is refuted only when
the solver's *dual* bound exceeds ``margin + 1e-5 * (1 + |b|)``; anything in between, a time
limit or a solver failure sends the domain back to branching. An infeasible MILP (the split
constraints contradict each other) refutes the domain. A violation is only a candidate
point that the caller re-checks in float32 on the original model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from certprune.verifiers.affine import AffineReluNet

SOLVER_SLACK = 1e-5


@dataclass(frozen=True)
class MilpOutcome:
    """``status``: 'refuted', 'candidate' (``x`` set) or 'open' (undecided: keep branching)."""

    status: str
    x: np.ndarray | None = None
    bound: float = float("nan")


def _encode(net: AffineReluNet, lo: np.ndarray, hi: np.ndarray, pre, int_mask):
    """Constraint rows (dense), row bounds, variable bounds, integrality; last variable is t."""
    n_in = lo.size
    sizes = [len(l) for l, _ in pre]
    n = n_in + 3 * sum(sizes) + 1
    vlo, vhi, integ = np.full(n, -np.inf), np.full(n, np.inf), np.zeros(n)
    vlo[:n_in], vhi[:n_in] = lo, hi
    if int_mask is not None:
        integ[:n_in] = int_mask
    rows, rlo, rhi = [], [], []
    h, off = np.arange(n_in), n_in
    for j, (l, u) in enumerate(pre):
        W, b = net.weights[j].numpy(), net.biases[j].numpy()
        k = len(l)
        z, a, d = off + np.arange(k), off + k + np.arange(k), off + 2 * k + np.arange(k)
        vlo[z], vhi[z] = l, u
        vlo[a], vhi[a] = 0.0, np.maximum(u, 0.0)
        vlo[d], vhi[d] = 0.0, 0.0
        eq = np.zeros((k, n))
        eq[np.arange(k), z] = 1.0
        eq[:, h] = -W
        rows.append(eq), rlo.append(b), rhi.append(b)
        act, unst = l >= 0, (l < 0) & (u > 0)
        ia = np.flatnonzero(act)
        r = np.zeros((len(ia), n))
        r[np.arange(len(ia)), a[ia]], r[np.arange(len(ia)), z[ia]] = 1.0, -1.0
        rows.append(r), rlo.append(np.zeros(len(ia))), rhi.append(np.zeros(len(ia)))
        iu = np.flatnonzero(unst)
        vhi[d[iu]], integ[d[iu]] = 1.0, 1
        m = len(iu)
        r1, r2, r3 = np.zeros((m, n)), np.zeros((m, n)), np.zeros((m, n))
        ar = np.arange(m)
        r1[ar, a[iu]], r1[ar, z[iu]] = 1.0, -1.0                                      # a - z >= 0
        r2[ar, a[iu]], r2[ar, z[iu]], r2[ar, d[iu]] = 1.0, -1.0, -l[iu]              # a - z - l d <= -l
        r3[ar, a[iu]], r3[ar, d[iu]] = 1.0, -u[iu]                                    # a - u d <= 0
        rows += [r1, r2, r3]
        rlo += [np.zeros(m), np.full(m, -np.inf), np.full(m, -np.inf)]
        rhi += [np.full(m, np.inf), -l[iu], np.zeros(m)]
        h, off = a, off + 3 * k
    return rows, rlo, rhi, vlo, vhi, integ, h, n


def solve_milp(net: AffineReluNet, lo: np.ndarray, hi: np.ndarray, pre: list[tuple[np.ndarray, np.ndarray]],
               A: np.ndarray, b: np.ndarray, margin: float, time_limit: float,
               int_mask: np.ndarray | None = None) -> MilpOutcome:
    """Decide one disjunct ``A y <= b`` on the domain (see module doc)."""
    from scipy.optimize import LinearConstraint, milp

    rows, rlo, rhi, vlo, vhi, integ, h, n = _encode(net, lo, hi, pre, int_mask)
    W, bb = net.weights[-1].numpy(), net.biases[-1].numpy()
    G, g = A @ W, A @ bb - b
    out = np.zeros((len(G), n))
    out[:, h] = G
    out[:, -1] = -1.0
    cons = LinearConstraint(np.vstack(rows + [out]), np.concatenate(rlo + [np.full(len(G), -np.inf)]),
                            np.concatenate(rhi + [-g]))
    cost = np.zeros(n)
    cost[-1] = 1.0
    res = milp(cost, constraints=cons, integrality=integ, bounds=(vlo, vhi),
               options={"time_limit": max(time_limit, 0.05), "mip_rel_gap": 1e-6})
    if res.status == 2:  # HiGHS: the domain itself is empty (split constraints contradict)
        return MilpOutcome("refuted", bound=float("inf"))
    dual = getattr(res, "mip_dual_bound", None)
    slack = margin + SOLVER_SLACK * (1 + float(np.abs(b).max()))
    if dual is not None and np.isfinite(dual) and dual > slack:
        return MilpOutcome("refuted", bound=float(dual))
    if res.x is not None and res.fun is not None and res.fun <= margin:
        x = np.clip(res.x[:lo.size], lo, hi)
        if int_mask is not None:
            x = np.where(int_mask, np.round(x), x)
        return MilpOutcome("candidate", x, float(res.fun))
    return MilpOutcome("open", bound=float("nan") if dual is None else float(dual))
