"""Fairness bounds of the twin graph (:func:`certprune.verifiers.twin.twin_graph`) over
batches of z boxes, plus the float32 rounding margin -- all from the one graph engine:

- the forward symbolic pass (:mod:`certprune.bounds.forward`) gives every node's bounds and the
  outputs [y, y'] as linear functions of the shared input z, so y - y' is bounded by the
  difference of those functions (the two copies are related through z);
- backward CROWN (:mod:`certprune.bounds.crown`) on the same relaxations bounds y, y' and
  y - y' once more (both copies propagated back to z), and the tighter of the two is kept;
- the interval of each pair difference v' - v of the two copies' nodes, propagated over the
  pairs (ReluDiff-style, :func:`pair_differences`), bounds y - y' a third way;
- ``tau`` is the graph float32 rounding-error bound (:mod:`certprune.bounds.float32`) of each
  copy's output: Higham's ``gamma_{k+1} (|W| |h| + |b|)`` propagated through the layers (any
  summation order, FMA or not), with x and x' given exactly (integer inputs).

Soundness: float64 arithmetic on the float32 weights (widened exactly) and the standard ReLU
relaxations; every bound is rigorous for the exact-arithmetic network despite the float64
rounding of computing it: the forward pass carries its rounding bound (``err`` / ``mag``,
:mod:`certprune.bounds.forward`), the difference of the two copies' functions adds one
rounding per coefficient to it, the backward pass runs on a state with every node's residual
(:meth:`~certprune.bounds.forward.Forward.state`), and the pair differences use rounded interval
images and outward-rounded subtractions (:func:`pair_differences`).
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from certprune.bounds import crown
from certprune.bounds.crown import MARGIN_SAFETY, TINY, add_rounded, rounded_interval
from certprune.bounds.float32 import output_error
from certprune.bounds.forward import MAG_SAFETY, concretize, concretize_gamma, forward_pass, widened
from certprune.graph.op import LinFn
from certprune.graph.relu import Relaxation
from certprune.semantics import Semantics
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.twin import TwinGraph, TwinLayout, twin_graph


@dataclass(frozen=True, eq=False)
class TwinBounds:
    """Per box (N,): bounds on y, y', y - y' (exact arithmetic), float32 margins of y and y',
    a split score per z dimension (N, dz), two attack vertices (N, dz) per box, and the number
    of unstable ReLUs (both copies) per box; ``crowned`` the indices of the boxes the backward
    CROWN pass bounded (with ``skip_closed``: those the forward and pair-difference bounds left
    open) and ``crown_seconds`` its time."""

    y: tuple[torch.Tensor, torch.Tensor]
    yp: tuple[torch.Tensor, torch.Tensor]
    diff: tuple[torch.Tensor, torch.Tensor]
    tau: tuple[torch.Tensor, torch.Tensor]
    score: torch.Tensor
    vertices: tuple[torch.Tensor, torch.Tensor]
    unstable: torch.Tensor
    pre: list[tuple[torch.Tensor, torch.Tensor]] | None
    crowned: torch.Tensor | None = None
    crown_seconds: float = 0.0
    # with keep_fns: (lower, upper) functions of [y, y'] over z (LinFn, A (K, dz, 2)) and their
    # rounding bounds err, mag (N, 2) (bounds.forward doc): for every z of box i,
    # L(z) - err <= y(z) <= U(z) + err with L, U the computed coefficients taken as exact
    fns: tuple | None = None

    def _tight(self):
        """y and y' bounds intersected with what the difference bound implies."""
        (yl, yu), (pl, pu), (dl, du) = self.y, self.yp, self.diff
        return (torch.maximum(yl, pl + dl), torch.minimum(yu, pu + du),
                torch.maximum(pl, yl - du), torch.minimum(pu, yu - dl))

    def closed(self, semantics: Semantics = Semantics.FLOAT32) -> torch.Tensor:
        """True where no decision flip is possible on the box (both disjuncts refuted), each bound
        clearing zero by ``semantics.slack`` (float32: flip y>0>=y' needs y > -tau and y' <= tau';
        exact: the margin 1e-7 (1 + |b|) of the real-arithmetic network)."""
        yl, yu, pl, pu = self._tight()
        (dl, du), (t, tp) = self.diff, self.tau
        s = semantics.slack
        d1 = (yu + s(yu, t) <= 0) | (pl - s(pl, tp) > 0) | (du + s(du, t + tp) < 0)
        d2 = (pu + s(pu, tp) <= 0) | (yl - s(yl, t) > 0) | (dl - s(dl, t + tp) > 0)
        return d1 & d2

    def signs(self, semantics: Semantics = Semantics.FLOAT32) -> tuple[torch.Tensor, torch.Tensor]:
        """Per box, the decision of each copy where the bounds fix it: +1 (yes on the whole box),
        -1 (no on the whole box), 0 (not fixed); (sign of y, sign of y')."""
        yl, yu, pl, pu = self._tight()
        t, tp = self.tau
        s = semantics.slack

        def sign(lo, hi, tau):
            return (lo - s(lo, tau) > 0).to(torch.int8) - (hi + s(hi, tau) <= 0).to(torch.int8)
        return sign(yl, yu, t), sign(pl, pu, tp)


_SPECS = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 1.0]],
                      dtype=torch.float64).unsqueeze(0)  # rows: y, -y, y', -y', y - y', y' - y
_TWINS: "weakref.WeakKeyDictionary[AffineReluNet, list]" = weakref.WeakKeyDictionary()


_GRAPHS: "weakref.WeakKeyDictionary[AffineReluNet, list]" = weakref.WeakKeyDictionary()


def decision_graph(net: AffineReluNet, last_abs=None):
    """The graph of ``net`` whose last Linear rounds like the original two-logit layer, built once
    per net and ``last_abs`` (the point logits and every twin graph of the net share it)."""
    from certprune.graph import build_graph
    hits = _GRAPHS.setdefault(net, [])
    for la, g in hits:
        if la is last_abs:
            return g
    g = build_graph(net)
    if last_abs is not None:
        g.nodes[g.output].op.rounding_abs = last_abs
    hits.append((last_abs, g))
    return g


def cached_twin(net: AffineReluNet, layout: TwinLayout, last_abs=None) -> TwinGraph:
    """The twin graph of the one-logit ``net`` (built once per net, layout and ``last_abs``)."""
    hits = _TWINS.setdefault(net, [])
    for lay, la, tg in hits:
        if lay is layout and la is last_abs:
            return tg
    tg = twin_graph(decision_graph(net, last_abs), layout)
    hits.append((layout, last_abs, tg))
    return tg


def _down(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a - b`` rounded down: at most the exact difference (``crown.add_rounded``)."""
    return add_rounded(a, -b)


def _up(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a - b`` rounded up: at least the exact difference."""
    return -add_rounded(b, -a)


def _relu_diff(a, b, D):
    """Interval of relu(v') - relu(v) given v in a, v' in b and v' - v in D (ReluDiff-style): it
    lies between 0 and v' - v, and equals v' - v where both are active (the subtractions
    rounded outward)."""
    (l1, u1), (l2, u2), (Dl, Du) = a, b, D
    lo = torch.maximum(Dl.clamp(max=0), _down(l2.clamp(min=0), u1.clamp(min=0)))
    hi = torch.minimum(Du.clamp(min=0), _up(u2.clamp(min=0), l1.clamp(min=0)))
    both = (l1 >= 0) & (l2 >= 0)
    return torch.where(both, Dl, lo), torch.where(both, Du, hi)


def pair_differences(tg: TwinGraph, res, x_diff):
    """Interval of v' - v for every pair (v, v') of copies of a model node, in topological order
    (a relational interval domain over the twin graph): an operator's linear part maps the
    difference (its offset cancels), a ReLU maps it by :func:`_relu_diff`, and each difference is
    intersected with [l' - u, u' - l] from the copies' own bounds. ``x_diff`` = that of x' - x.
    Rigorous for real arithmetic: the linear images are ``crown.rounded_interval`` and every
    subtraction is rounded outward."""
    D = {0: x_diff}
    for j, node in enumerate(tg.model.nodes[1:], start=1):
        a, b = tg.pairs[j]
        if node.op.nonlinear:
            d = _relu_diff(res.pre[a], res.pre[b], D[node.inputs[0]])
        else:
            ins = [D[k] for k in node.inputs]
            dl, du = rounded_interval(node.op, ins)
            off = node.op.forward(*[t[0].new_zeros(1, *t[0].shape[1:]) for t in ins])
            d = (_down(dl, off), _up(du, off))
        (la, ua), (lb, ub) = res.bounds[a], res.bounds[b]
        D[j] = (torch.maximum(d[0], _down(lb, ua)), torch.minimum(d[1], _up(ub, la)))
    return D[tg.model.output]


def _diff(f: LinFn, h: LinFn) -> LinFn:
    """Output 0 of f minus output 1 of h: a linear function of z, (K, dz) and (K,)."""
    return LinFn(f.A[:, :, 0] - h.A[:, :, 1], f.b[:, 0] - h.b[:, 1])


def _take_state(st: crown.State, k: torch.Tensor) -> crown.State:
    """The CROWN state of boxes ``k`` only (rows of every per-box tensor)."""
    def rows(t):
        return t if t.shape[0] == 1 else t[k]
    return crown.State(st.lo[k], st.hi[k], {i: (rows(a), rows(b)) for i, (a, b) in st.bounds.items()},
                       {i: Relaxation(*(rows(f) for f in (r.alpha, r.slope, r.intercept, r.unstable)))
                        for i, r in st.relax.items()},
                       {i: (rows(a), rows(b)) for i, (a, b) in st.pre.items()}, st.infeasible[k],
                       resid={i: rows(r) for i, r in st.resid.items()})


def _crown_fns(g, st: crown.State, zlo: torch.Tensor, zhi: torch.Tensor, outputs: int = 2):
    """``(fl, fu, err, mag)`` as :attr:`TwinBounds.fns` from one backward CROWN pass of the rows
    y, -y (and y', -y' for ``outputs`` 2) (``lam`` (N, rows, dz), rigorous lower bounds ``lower``):
    row r gives the real function ``lam_r . z + c_r`` below it on the box with ``c_r = lower_r -
    min_box(lam_r . z)`` rounded down (the computed minimum's float64 error is at most
    ``gamma_{2 (dz + 8)}`` of its terms' magnitude, plus the rounding of the subtraction), so
    ``err`` is 0; the upper functions are the negated rows -y, -y'."""
    rows = _SPECS[:, :2 * outputs] if outputs == 2 else _ONE_ROW
    cr = crown.backward(g, g.output, rows, st, keep_lam=True)
    N, R = len(zlo), 2 * outputs
    lam = cr.lam_x.reshape(-1, R, zlo.shape[1]).expand(N, -1, -1)
    low = cr.lower.expand(N, R)
    lo, hi = zlo[:, None, :], zhi[:, None, :]
    mn = torch.minimum(lam * lo, lam * hi).sum(2)
    size = (lam.abs() * torch.maximum(lo.abs(), hi.abs())).sum(2)
    gc = concretize_gamma(zlo.shape[1])
    c = low - mn - (MARGIN_SAFETY * gc * size + 2.0 ** -50 * (low.abs() + mn.abs()) + TINY)
    lower, upper = list(range(0, R, 2)), list(range(1, R, 2))
    fl = LinFn(lam[:, lower].transpose(1, 2), c[:, lower])  # (N, dz, outputs)
    fu = LinFn(-lam[:, upper].transpose(1, 2), -c[:, upper])
    mag = MAG_SAFETY * (size + c.abs())
    return fl, fu, torch.zeros(N, outputs, dtype=zlo.dtype), torch.maximum(mag[:, lower], mag[:, upper])


def copy_fns(net: AffineReluNet, xlo: torch.Tensor, xhi: torch.Tensor,
             last_abs: tuple[torch.Tensor, torch.Tensor] | None = None):
    """``(fl, fu, err, mag, tau)``: linear functions of x below / above the one-logit ``net`` on
    each integer box xlo/xhi (N, n) (A (K, n, 1); the forward pass's for one ReLU layer, backward
    CROWN's for deeper nets, as :attr:`TwinBounds.fns`), their rounding bounds (N, 1) and the
    float32 margin (N,) of the box."""
    g = decision_graph(net, last_abs)
    res = forward_pass(g, xlo, xhi, keep=(g.output,))
    tau = output_error(g, res.bounds)[:, 0]
    if len(g.relu_nodes) > 1:
        return (*_crown_fns(g, res.state(), xlo, xhi, outputs=1), tau)
    return (*_forward_fns(res, g.output, len(xlo), 1), tau)


def _forward_fns(res, node: int, N: int, outputs: int):
    """``(fl, fu, err, mag)`` of the forward pass's kept ``node`` (zero rounding bounds when the
    pass ran without its margin, measurements only)."""
    fl, fu = res.fns[node]
    if not res.err:
        zero = torch.zeros(N, outputs, dtype=res.lo.dtype)
        return fl, fu, zero, zero
    return fl, fu, res.err[node].reshape(N, outputs), res.mag[node].reshape(N, outputs)


def twin_bounds(net: AffineReluNet, layout: TwinLayout, zlo: torch.Tensor, zhi: torch.Tensor,
                last_abs: tuple[torch.Tensor, torch.Tensor] | None = None, keep_pre: bool = False,
                skip_closed: Semantics | None = None, crown_pass: bool = True, keep_fns: bool = False) -> TwinBounds:
    """Bounds of the one-logit ``net`` on x = P z and x' = P' z over N boxes (N, dz).
    ``last_abs`` = (|W|, |b|) of the original last layer for the float32 margin when ``net``'s last
    layer is a difference of two logits. ``skip_closed``: the backward CROWN pass runs only on the
    boxes that the forward and pair-difference bounds do not already close under that semantics
    (a closed box stays closed under tighter bounds, and no bound of a closed box can prove a flip,
    so :meth:`TwinBounds.closed` and every proven flip are those of the full pass; the y / y'
    bounds of the skipped boxes are the forward ones, looser). A model with one ReLU layer gets no
    CROWN pass at all: its pre-activations are exact linear functions of z, so backward CROWN
    relaxes the same neurons with the same slopes as the forward pass and returns the same
    functions of z for y, y' and y - y' (checked to float64 rounding in the tests). ``crown_pass``
    False: no backward pass (the forward and pair-difference bounds only: sound, looser; the
    search turns it off where it closes few boxes, :meth:`TwinBab._crown_on`). ``keep_fns``: return
    linear functions of z below and above y and y' (:attr:`TwinBounds.fns`): the forward pass's for
    one ReLU layer, one more backward CROWN pass's for deeper nets (:func:`_crown_fns`)."""
    tg = cached_twin(net, layout, last_abs)
    g = tg.graph
    N = len(zlo)
    res = forward_pass(g, zlo, zhi, keep=(g.output, tg.x, tg.xp))
    fl, fu = res.fns[g.output]  # (K, dz, 2): [y, y'] as linear functions of z
    l, u = res.bounds[g.output]
    fx, fxp = res.fns[tg.x][0], res.fns[tg.xp][0]  # exact: x and x' are linear in z
    xd = LinFn(fxp.A - fx.A, fxp.b - fx.b)
    xdb = concretize(xd, zlo, zhi, False), concretize(xd, zlo, zhi, True)
    ydb = concretize(_diff(fl, fu), zlo, zhi, False), concretize(_diff(fu, fl), zlo, zhi, True)
    if res.err:  # the rounding bounds of both functions, plus one rounding per coefficient of the difference
        gc = concretize_gamma(g.input_dim + 2)
        ex, mx = (res.err[tg.x] + res.err[tg.xp]).reshape(N, -1), (res.mag[tg.x] + res.mag[tg.xp]).reshape(N, -1)
        xdb = widened(xdb, ex + gc * mx)
        ey, my = res.err[g.output].reshape(N, 2), res.mag[g.output].reshape(N, 2)
        ydb = widened(ydb, ey.sum(1) + gc * my.sum(1))
    Dl, Du = pair_differences(tg, res, xdb)
    dl = torch.maximum(ydb[0], -Du[:, 0])
    du = torch.minimum(ydb[1], -Dl[:, 0])
    tau = output_error(g, res.bounds, exact_nodes=(tg.x, tg.xp))
    y, yp = (l[:, 0], u[:, 0]), (l[:, 1], u[:, 1])
    todo = None  # boxes that get the CROWN pass (None: all)
    crowned, crown_seconds = torch.zeros(0, dtype=torch.int64), 0.0
    if len(tg.relus) <= 1 or not crown_pass:  # one ReLU layer: CROWN = the forward functions (see doc)
        todo = torch.zeros(0, dtype=torch.int64)
    elif skip_closed is not None:
        fwd = TwinBounds(y, yp, (dl, du), (tau[:, 0], tau[:, 1]), None, None, None, None)
        todo = torch.nonzero(~fwd.closed(skip_closed)).flatten()
        if len(todo) == N:
            todo = None
    if todo is None or len(todo):
        t0 = time.perf_counter()
        st = res.state() if todo is None else _take_state(res.state(), todo)
        M = N if todo is None else len(todo)
        cr = crown.backward(g, g.output, _SPECS, st).lower.expand(M, 6)
        sel = slice(None) if todo is None else todo

        def tighten(t, c, upper):
            t = t.clone()
            t[sel] = torch.minimum(t[sel], -c) if upper else torch.maximum(t[sel], c)
            return t
        y = (tighten(y[0], cr[:, 0], False), tighten(y[1], cr[:, 1], True))
        yp = (tighten(yp[0], cr[:, 2], False), tighten(yp[1], cr[:, 3], True))
        dl, du = tighten(dl, cr[:, 4], False), tighten(du, cr[:, 5], True)
        crowned = torch.arange(N) if todo is None else todo
        crown_seconds = time.perf_counter() - t0
    grad = ((fl.A + fu.A) / 2).expand(N, -1, -1)  # (N, dz, 2)
    gy, gp = grad[:, :, 0], grad[:, :, 1]
    score = (gy.abs() + gp.abs() + (gy - gp).abs()) * (zhi - zlo)
    v1 = torch.where(gy - gp > 0, zhi, zlo)  # pushes y up and y' down
    v2 = torch.where(gy - gp > 0, zlo, zhi)
    unstable = torch.zeros(N, dtype=torch.int64)
    for i in (i for pair in tg.relus for i in pair):
        unstable += res.relax[i].unstable.reshape(N, -1).sum(1)
    pre = None
    if keep_pre:
        pre = [tuple(torch.cat([res.pre[a][k].reshape(N, -1), res.pre[b][k].reshape(N, -1)]) for k in (0, 1))
               for a, b in tg.relus]
    fns = None
    if keep_fns and len(tg.relus) > 1:  # deeper nets: backward CROWN's functions (tighter than the forward ones)
        fns = _crown_fns(g, res.state(), zlo, zhi)
    elif keep_fns:
        fns = _forward_fns(res, g.output, N, 2)
    return TwinBounds(y, yp, (dl, du), (tau[:, 0], tau[:, 1]), score, (v1, v2), unstable, pre, crowned,
                      crown_seconds, fns)


def point_logits(net: AffineReluNet, X: np.ndarray,
                 last_abs: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float64 decision logit of the one-logit ``net`` at integer points ``X`` (N, n) and a rigorous
    bound on |float32 logit - exact logit| for any summation order (the ``tau`` of a point box,
    :mod:`certprune.bounds.float32` with the node values as bounds): where |logit| exceeds it,
    every float32 execution (batched or alone) has the exact sign."""
    g = decision_graph(net, last_abs)
    vals = g.forward(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64)), keep=True)
    err = output_error(g, [(v, v) for v in vals])
    return vals[g.output][:, 0].numpy(), err[:, 0].numpy()


@dataclass(frozen=True, eq=False)
class CopyBounds:
    """Per box (N,): bounds on the one-logit net's decision logit y (exact arithmetic, rigorous),
    its float32 margin ``tau``, and the mean gradient of the two forward functions (N, n)."""

    y: tuple[torch.Tensor, torch.Tensor]
    tau: torch.Tensor
    grad: torch.Tensor

    def signs(self, semantics: Semantics = Semantics.FLOAT32) -> torch.Tensor:
        """+1 (yes on the whole box), -1 (no on the whole box), 0 (not fixed), as
        :meth:`TwinBounds.signs` for one copy."""
        (lo, hi), s = self.y, semantics.slack
        return (lo - s(lo, self.tau) > 0).to(torch.int8) - (hi + s(hi, self.tau) <= 0).to(torch.int8)


_ONE_ROW = torch.tensor([[1.0], [-1.0]], dtype=torch.float64).unsqueeze(0)  # rows y, -y


def copy_bounds(net: AffineReluNet, xlo: torch.Tensor, xhi: torch.Tensor,
                last_abs: tuple[torch.Tensor, torch.Tensor] | None = None) -> CopyBounds:
    """Bounds of the one-logit ``net`` alone over N integer boxes xlo/xhi (N, n): the forward pass
    and a backward CROWN pass on its relaxations (the same composition as :func:`twin_bounds`, for
    one copy: one model evaluation per box instead of two per pair of protected values), and the
    float32 margin with x given exactly."""
    g = decision_graph(net, last_abs)
    res = forward_pass(g, xlo, xhi, keep=(g.output,))
    l, u = (t[:, 0] for t in res.bounds[g.output])
    if len(g.relu_nodes) > 1:  # one ReLU layer: CROWN returns the forward functions (twin_bounds doc)
        cr = crown.backward(g, g.output, _ONE_ROW, res.state()).lower.expand(len(xlo), 2)
        l, u = torch.maximum(l, cr[:, 0]), torch.minimum(u, -cr[:, 1])
    fl, fu = res.fns[g.output]
    grad = ((fl.A + fu.A) / 2)[:, :, 0].expand(len(xlo), -1)
    tau = output_error(g, res.bounds)[:, 0]
    return CopyBounds((l, u), tau, grad)
