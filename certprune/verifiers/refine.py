"""Intermediate-bound refinement at the root: tighter pre-activation bounds of the first hidden
layers by LP, computed once and then kept by every branch-and-bound domain as fixed prior bounds.

Why: on MNIST MLPs (784 inputs, 256-wide layers) CROWN's bounds of the second and third hidden
layers are loose because every unstable neuron of the layers below is relaxed independently; a
branch-and-bound domain re-derives the same loose bounds after each split. The LP over the
triangle relaxation of all layers below (the lifted encoding of ``certprune.graph.encode``, the
one exact encoder, with ``target`` = the layer's pre-activation node) is tighter, and so is each
later layer's CROWN bound once the earlier layers' bounds are the refined ones (the idea of
alpha-beta-CROWN's ``refine``/``mip`` intermediate bounds on these nets; their code uses MILP on a
GPU host with many solver processes, here one LP per neuron bound on one CPU core).

:func:`refine_bounds` walks the ReLU nodes in topological order up to ``layers``; for each node
it first recomputes the node's CROWN bounds on the box with the refined bounds below as priors
(``crown.intermediate(prior=...)``), then, for every neuron still unstable, solves
``min z_i`` and ``max z_i`` over the relaxation. Soundness does not rest on the solver's
tolerances: each bound is recomputed in float64 from the LP's dual multipliers by weak duality
(every variable of the lifted encoding has a finite box: inputs in the region, ``z`` in its
bounds, ``a`` in ``[0, u]``, ``d`` in ``[0, 1]``), and a bound only ever replaces a looser one.
Out of time (``deadline``), the bounds computed so far are returned (still sound).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from certprune.graph import Graph
from certprune.graph.encode import rows_copied
from certprune.semantics import gamma64

SLACK = 1e-9  # relative float64 slack subtracted from every recomputed dual bound (at least the
# rigorous 2 gamma_k of its k <= rows + columns terms: 2e-9 only past 10^7)


def _highs(enc, vlo: np.ndarray, vhi: np.ndarray, integral: bool):
    """A HiGHS model of the encoding (rows ``rlo <= R v <= rhi``, box ``vlo``/``vhi``, zero cost),
    kept between solves so that each neuron bound warm-starts from the last basis (measured
    ~10 ms per LP on mnist_fc 256x4 layer 2 against ~85 ms for a fresh ``linprog``)."""
    import scipy.sparse as sp
    from scipy.optimize._highspy import _core  # scipy's bundled HiGHS bindings (see applies())

    R, rlo, rhi = enc.rows
    Rc = sp.csc_matrix(R)
    lp = _core.HighsLp()
    lp.num_col_, lp.num_row_ = enc.n_vars, R.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = np.zeros(enc.n_vars), vlo, vhi
    lp.row_lower_, lp.row_upper_ = rlo, rhi
    a = lp.a_matrix_
    a.format_ = _core.MatrixFormat.kColwise
    a.start_, a.index_, a.value_ = Rc.indptr, Rc.indices, Rc.data
    a.num_col_, a.num_row_ = enc.n_vars, R.shape[0]
    if integral:
        lp.integrality_ = [_core.HighsVarType.kInteger if v else _core.HighsVarType.kContinuous
                           for v in enc.integrality]
    h = _core._Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    return h, _core


def neuron_bounds(graph: Graph, lo: np.ndarray, hi: np.ndarray, pre: list[tuple[np.ndarray, np.ndarray]],
                  target: int, neurons: np.ndarray, sides: np.ndarray, deadline: float | None = None,
                  milp_limit: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of entries ``neurons`` of node ``target`` over the graph below it (box
    ``lo``/``hi``, ``pre`` sound flat bounds of every ReLU node below ``target``); only the side
    ``sides[k]`` (+1: the lower bound, -1: the upper bound, 0: both) of neuron k is asked;
    -inf / +inf where not asked or no solver answered before ``deadline``. Each bound is the LP
    relaxation's, recomputed from its duals (:func:`dual_bound`); with ``milp_limit`` > 0 the
    MILP (binaries integral, that many seconds) is asked too, and its dual bound less
    ``milp_leaf.SOLVER_SLACK`` (the tolerance the MILP leaf allows HiGHS) counts where it is tighter."""
    import scipy.sparse as sp

    from certprune.graph.encode import encode
    from certprune.verifiers.milp_leaf import SOLVER_SLACK

    enc = encode(graph, pre, None, lifted=True, target=target)
    vlo, vhi = enc.var_lo.copy(), enc.var_hi.copy()
    vlo[:enc.n_in], vhi[:enc.n_in] = lo, hi
    R, rlo, rhi = enc.rows
    R = sp.csr_matrix(R)
    M, c0 = sp.csr_matrix(enc.out.M), enc.out.c
    h, core = _highs(enc, vlo, vhi, False)
    hm = _highs(enc, vlo, vhi, True)[0] if milp_limit > 0 else None
    cols = np.arange(enc.n_vars, dtype=np.int32)
    low = np.full(len(neurons), -np.inf)
    upp = np.full(len(neurons), np.inf)
    for k, i in enumerate(neurons):
        for sign in (1.0, -1.0):
            if sides[k] == -sign:
                continue
            if deadline is not None and time.monotonic() > deadline:
                return low, upp
            cost = sign * M[i].toarray().ravel()
            val = -np.inf
            if hm is not None:
                left = milp_limit if deadline is None else min(milp_limit, deadline - time.monotonic())
                hm.setOptionValue("time_limit", max(left, 0.05))
                hm.changeColsCost(enc.n_vars, cols, cost)
                hm.run()
                dual = float(hm.getInfo().mip_dual_bound)
                if np.isfinite(dual) and abs(dual) < 1e30:
                    val = dual - SOLVER_SLACK * (1 + abs(dual))
            h.changeColsCost(enc.n_vars, cols, cost)
            h.run()
            if h.getModelStatus() == core.HighsModelStatus.kOptimal:
                y = np.asarray(h.getSolution().row_dual, dtype=np.float64)
                b = dual_bound(cost, R, rlo, rhi, vlo, vhi, y)
                if np.isfinite(b):  # a NaN (0 * inf in a degenerate box) or inf says nothing
                    val = max(val, b)
            val += sign * c0[i]
            if sign > 0:
                low[k] = val
            else:
                upp[k] = -val
    return low, upp


def dual_bound(cost, R, rlo, rhi, vlo, vhi, y) -> float:
    """A lower bound of ``min cost v`` s.t. ``rlo <= R v <= rhi``, ``vlo <= v <= vhi`` (finite box)
    for any row multipliers ``y``, by weak duality, in float64 minus a small slack: on the feasible
    set ``cost v = (cost - R' y) v + y R v`` and ``y_i (R v)_i >= y_i rlo_i`` (y_i > 0) or
    ``y_i rhi_i`` (y_i < 0); a multiplier whose side is infinite is dropped."""
    y = np.where(((y > 0) & ~np.isfinite(rlo)) | ((y < 0) & ~np.isfinite(rhi)), 0.0, y)
    side = np.where(y > 0, rlo, np.where(y < 0, rhi, 0.0))
    g = cost - R.T @ y
    val = float(np.minimum(g * vlo, g * vhi).sum() + (y * side).sum())
    # the rounding of g = cost - R'y is relative to |cost| + |R|'|y|, not to |g|: where the terms
    # cancel (g ~ 0 from large ones) a scale built on |g| misses it (a review found claimed
    # lower bounds of +1e-7 on values identically 0 with weights ~1e4); so the slack is relative
    # to the absolute terms of every product and sum, and SLACK >> n 2^-53 for n < 10^6 terms
    gabs = np.abs(cost) + np.asarray(abs(R).T @ np.abs(y)).ravel()  # R: ndarray or scipy sparse
    scale = float(gabs @ np.maximum(np.abs(vlo), np.abs(vhi)) + np.abs(y * side).sum())
    # rigorous: each term's rounding is within gamma_k of the absolute terms, k <= rows + columns
    return val - max(SLACK, 2 * gamma64(R.shape[0] + len(vlo) + 8)) * (1.0 + scale)


def refine_bounds(graph: Graph, lo: np.ndarray, hi: np.ndarray, layers: int, deadline: float | None = None,
                  milp_limit: float = 0.0, samples: np.ndarray | None = None, both: bool = False
                  ) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], dict]:
    """Refined pre-activation bounds of the first ``layers`` ReLU nodes on the box ``lo``/``hi``
    (flat float64): ``{ReLU input node: (lower, upper) (1, *shape)}``, the ``prior`` of
    ``crown.intermediate``, and stats. ``samples`` (K, n_in) points of the box choose what is
    asked: a neuron that takes both signs on them is unstable, its bounds are left (unless
    ``both``); one never negative on them gets only its lower bound asked (it may be stable
    active), one never positive its upper bound. The samples steer the work only: every bound
    is a solver's bound. See module doc."""
    from certprune.bounds import crown
    from certprune.bounds.engine import _flat

    tlo, thi = torch.as_tensor(lo, dtype=torch.float64)[None], torch.as_tensor(hi, dtype=torch.float64)[None]
    relus = graph.relu_nodes
    vals = None
    if samples is not None and len(samples):
        with torch.no_grad():
            vals = graph.forward(torch.as_tensor(samples, dtype=torch.float64), keep=True)
    prior: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    stats = {"refine_solves": 0, "refine_unstable_before": [], "refine_unstable_after": []}
    for j, r in enumerate(relus[:layers]):
        st = crown.intermediate(graph, tlo, thi, intersect=True, sparse=True, prior=prior)
        pre = [tuple(t[0].numpy() for t in _flat(st.pre[i])) for i in relus[:j + 1]]
        p = graph.nodes[r].inputs[0]
        l, u = (t.copy() for t in pre[j])
        unst = np.flatnonzero((l < 0) & (u > 0))
        stats["refine_unstable_before"].append(len(unst))
        sides = np.zeros(len(unst), np.int64)
        if vals is not None:
            z = vals[p].reshape(len(samples), -1)[:, unst].numpy()
            neg, pos = (z < 0).any(0), (z > 0).any(0)
            sides = np.where(neg & ~pos, -1, np.where(pos & ~neg, 1, 0))
            if not both:
                keep = sides != 0
                unst, sides = unst[keep], sides[keep]
        if j > 0 and len(unst) and not crown.interval_exact(graph, p):
            below = graph.ancestors(p)  # parallel branches: only the ReLU nodes p depends on
            pre_below = [b for i, b in zip(relus[:j], pre[:j]) if i in below]
            nl, nu = neuron_bounds(graph, lo, hi, pre_below, p, unst, sides, deadline, milp_limit)
            stats["refine_solves"] += int(np.where(sides == 0, 2, 1).sum())
            l[unst], u[unst] = np.maximum(l[unst], nl), np.minimum(u[unst], nu)
        stats["refine_unstable_after"].append(int(((l < 0) & (u > 0)).sum()))
        shape = graph.nodes[p].shape
        prior[p] = (torch.from_numpy(l).reshape(1, *shape), torch.from_numpy(u).reshape(1, *shape))
        if deadline is not None and time.monotonic() > deadline:
            break
    return prior, stats


REFINE_SAMPLES = 2048  # uniform points of the box, and as many random corners, that steer refine_bounds


def applies(graph: Graph, layers: int) -> bool:
    """Refinement is used on MLP-like graphs: at least two ReLU nodes, and the first ``layers``
    of them with 1-D inputs (a convolutional layer's LPs would be far too many and too large),
    each the output of one Linear on a ReLU or the input (``graph.encode.rows_copied``), and scipy's
    HiGHS bindings importable."""
    try:
        from scipy.optimize._highspy import _core  # noqa: F401  (scipy >= 1.15 bundles these bindings)
    except ImportError:
        return False
    relus = graph.relu_nodes[:layers]
    return (layers >= 2 and len(relus) >= 2
            and all(len(graph.nodes[graph.nodes[r].inputs[0]].shape) == 1 for r in relus)
            and all(rows_copied(graph, graph.nodes[r].inputs[0]) for r in relus))


def root_refinement(graph: Graph, lo: np.ndarray, hi: np.ndarray, cfg, deadline: float | None
                    ) -> tuple[dict | None, dict]:
    """The refined priors of ``cfg.refine_layers`` layers on the root box within
    ``cfg.refine_time_fraction`` of the time left (None where :func:`applies` says no), and stats
    (``time_refine`` included)."""
    if not applies(graph, cfg.refine_layers):
        return None, {}
    t0 = time.monotonic()
    until = None if deadline is None else t0 + cfg.refine_time_fraction * max(deadline - t0, 0.0)
    pts = None
    if cfg.refine_milp_limit > 0:  # MILPs are costly: ask only the sides the samples leave open
        rng = np.random.default_rng(cfg.seed + 3)
        n = len(lo)
        pts = np.concatenate([lo + rng.random((REFINE_SAMPLES, n)) * (hi - lo),
                              np.where(rng.random((REFINE_SAMPLES, n)) < 0.5, lo, hi)])
    prior, stats = refine_bounds(graph, lo, hi, cfg.refine_layers, until, cfg.refine_milp_limit, pts)
    stats["time_refine"] = time.monotonic() - t0
    return prior, stats
