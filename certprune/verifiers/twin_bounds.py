"""Batched forward symbolic bounds on the twin network, plus the float32 rounding margin.

Hand-written rather than calling ``compute_bounds`` because the twin input is low-dimensional
(n + a few) while its hidden layers are wide: propagating linear bounds *forward* in terms of z
costs O(N h^2 dz) and yields every layer's bounds in one pass, and the two copies share weights,
so they run as one batch of 2N instead of a block-diagonal net of twice the width.

Soundness: all arithmetic is float64 on the float32 weights (widened exactly), and the ReLU
relaxations are the standard ones (lower ``alpha z`` with alpha in {0, 1}, upper chord), so the
bounds enclose the exact-arithmetic network; float64 rounding inside the bound computation is
covered by the margin ``tau`` (it is orders of magnitude below the float32 term). ``tau`` bounds
``|float32 logit - exact logit|`` per box with the classical inner-product error bound
``gamma_{k+1} (|W| |h| + |b|)`` (Higham, Thm 3.5; any summation order, FMA or not), propagated
through the layers, times 1.25 (room for the float64 rounding of the bound computation itself).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from certprune.semantics import Semantics, float32_error_finish, float32_error_step
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.native_bounds import relu_relaxation
from certprune.verifiers.twin import TwinLayout

@dataclass(frozen=True, eq=False)
class TwinBounds:
    """Per box (N,): bounds on y, y', y - y' (exact arithmetic), float32 margins of y and y',
    a split score per z dimension (N, dz), two attack vertices (N, dz) per box, and the number
    of unstable ReLUs (both copies) per box."""

    y: tuple[torch.Tensor, torch.Tensor]
    yp: tuple[torch.Tensor, torch.Tensor]
    diff: tuple[torch.Tensor, torch.Tensor]
    tau: tuple[torch.Tensor, torch.Tensor]
    score: torch.Tensor
    vertices: tuple[torch.Tensor, torch.Tensor]
    unstable: torch.Tensor
    pre: list[tuple[torch.Tensor, torch.Tensor]] | None

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


def _concretize(G: torch.Tensor, g: torch.Tensor, c: torch.Tensor, r: torch.Tensor):
    """Lower and upper value of ``G z + g`` over the box (center c, radius r); G (B, h, dz)."""
    mid = g + (G @ c.unsqueeze(-1)).squeeze(-1)
    rad = (G.abs() @ r.unsqueeze(-1)).squeeze(-1)
    return mid - rad, mid + rad


def _concretize_lower(G: torch.Tensor, g: torch.Tensor, c: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Lower value of ``G z + g`` over the box (see :func:`_concretize`)."""
    return g + (G @ c.unsqueeze(-1)).squeeze(-1) - (G.abs() @ r.unsqueeze(-1)).squeeze(-1)


def _concretize_upper(G: torch.Tensor, g: torch.Tensor, c: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Upper value of ``G z + g`` over the box (see :func:`_concretize`)."""
    return g + (G @ c.unsqueeze(-1)).squeeze(-1) + (G.abs() @ r.unsqueeze(-1)).squeeze(-1)


def _tighten_diff(l, u, Dl, Du):
    """Intersect the difference interval z' - z with [l' - u, u' - l] from the copies' own bounds."""
    N = len(Dl)
    return torch.maximum(Dl, l[N:] - u[:N]), torch.minimum(Du, u[N:] - l[:N])


def _relu_diff(l, u, Dl, Du):
    """Interval of relu(z') - relu(z) given z in [l, u] (first N rows), z' (last N) and z' - z in
    [Dl, Du] (ReluDiff-style): it lies between 0 and z' - z, and equals z' - z when both are active."""
    N = len(Dl)
    l1, u1, l2, u2 = l[:N], u[:N], l[N:], u[N:]
    lo = torch.maximum(torch.minimum(Dl, torch.zeros_like(Dl)), l2.clamp(min=0) - u1.clamp(min=0))
    hi = torch.minimum(torch.maximum(Du, torch.zeros_like(Du)), u2.clamp(min=0) - l1.clamp(min=0))
    both = (l1 >= 0) & (l2 >= 0)
    return torch.where(both, Dl, lo), torch.where(both, Du, hi)


_SPECS = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)


def _twin_crown(net: AffineReluNet, P: torch.Tensor, pre, c: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Backward CROWN lower bounds of ``a y + b y'`` for the six (a, b) rows of ``_SPECS``, both
    copies propagated back to the shared input z (this keeps their correlation). (N, 6)."""
    N = len(c)
    lamz = torch.zeros(N, len(_SPECS), c.shape[1], dtype=c.dtype)
    const = torch.zeros(N, len(_SPECS), dtype=c.dtype)
    for copy in range(2):
        rows = slice(copy * N, (copy + 1) * N)
        coef = _SPECS[:, copy]
        lam = (coef[:, None] * net.weights[-1][0]).expand(N, -1, -1)
        const = const + coef * net.biases[-1][0]
        for j in range(net.num_layers - 2, -1, -1):
            l, u = pre[j][0][rows], pre[j][1][rows]
            alpha, s, t = relu_relaxation(l, u)
            pos, neg = lam.clamp(min=0), lam.clamp(max=0)
            const = const + (neg * t.unsqueeze(1)).sum(-1)
            lam = pos * alpha.unsqueeze(1) + neg * s.unsqueeze(1)
            const = const + lam @ net.biases[j]
            lam = lam @ net.weights[j]
        lamz = lamz + lam @ P[copy]
    return const + (lamz @ c.unsqueeze(-1)).squeeze(-1) - (lamz.abs() @ r.unsqueeze(-1)).squeeze(-1)


def twin_bounds(net: AffineReluNet, layout: TwinLayout, zlo: torch.Tensor, zhi: torch.Tensor,
                last_abs: tuple[torch.Tensor, torch.Tensor] | None = None, keep_pre: bool = False) -> TwinBounds:
    """Bounds of the one-logit ``net`` on x = P z and x' = P' z over N boxes (N, dz).
    ``last_abs`` = (|W|, |b|) of the original last layer for the float32 margin when ``net``'s last
    layer is a difference of two logits."""
    N, dz = zlo.shape
    c2 = torch.cat([(zlo + zhi) / 2] * 2)
    r2 = torch.cat([(zhi - zlo) / 2] * 2)
    P = torch.from_numpy(np.stack([layout.P, layout.Pp]))  # (2, n, dz)
    mz = torch.maximum(zlo.abs(), zhi.abs())
    m = torch.cat([mz @ P[0].abs().T, mz @ P[1].abs().T])  # |x| bound per copy (2N, n)
    e = torch.zeros_like(m)
    W0 = net.weights[0]
    G2 = W0 @ P  # (2, h, dz): the first layer is the same linear function of z for every box of a copy
    LG = UG = G2.repeat_interleave(N, dim=0) if net.num_layers == 1 else None  # built lazily (k = 0)
    Lg = Ug = net.biases[0].expand(2 * N, -1)
    Dl, Du = _concretize((W0 @ (P[1] - P[0])).expand(N, -1, -1), torch.zeros(N, W0.shape[0], dtype=W0.dtype),
                         c2[:N], r2[:N])
    pre = []
    nunst = torch.zeros(2 * N, dtype=torch.int64)
    L = net.num_layers
    for k in range(L):
        w, b = net.weights[k], net.biases[k]
        if k > 0:
            wp, wn = w.clamp(min=0), w.clamp(max=0)
            LG, UG = wp @ LG + wn @ UG, wp @ UG + wn @ LG
            Lg, Ug = Lg @ wp.T + Ug @ wn.T + b, Ug @ wp.T + Lg @ wn.T + b
            Dl, Du = Dl @ wp.T + Du @ wn.T, Du @ wp.T + Dl @ wn.T
        aw, ab = (w.abs(), b.abs()) if (k < L - 1 or last_abs is None) else last_abs
        e = float32_error_step(e, m, aw, ab)
        if LG is None:  # k = 0: per copy, one (h, dz) matrix for all boxes
            mid = torch.cat([c2[:N] @ G2[0].T, c2[N:] @ G2[1].T]) + b
            rad = torch.cat([r2[:N] @ G2[0].abs().T, r2[N:] @ G2[1].abs().T])
            l, u = mid - rad, mid + rad
        else:
            l, u = _concretize_lower(LG, Lg, c2, r2), _concretize_upper(UG, Ug, c2, r2)
        Dl, Du = _tighten_diff(l, u, Dl, Du)
        if k == L - 1:
            break
        Dl, Du = _relu_diff(l, u, Dl, Du)
        pre.append((l, u))
        m = u.clamp(min=0) + e
        active, dead = l >= 0, u <= 0
        unstable = ~(active | dead)
        nunst += unstable.sum(1)
        s = torch.where(unstable, u / torch.where(unstable, u - l, torch.ones_like(u)), active.to(u.dtype))
        t = torch.where(unstable, -s * l, torch.zeros_like(l))
        alpha = torch.where(unstable, (u > -l).to(u.dtype), active.to(u.dtype))
        if LG is None:
            h = G2.shape[1]
            LG = (G2[:, None] * alpha.view(2, N, h, 1)).reshape(2 * N, h, dz)
            UG = (G2[:, None] * s.view(2, N, h, 1)).reshape(2 * N, h, dz)
        else:
            LG, UG = LG * alpha.unsqueeze(-1), UG * s.unsqueeze(-1)
        Lg, Ug = Lg * alpha, Ug * s + t
    c, r = c2[:N], r2[:N]
    cr = _twin_crown(net, P, pre, c, r)  # rows: y, -y, y', -y', y - y', y' - y (lower bounds)
    l = torch.cat([torch.maximum(l[:N, 0], cr[:, 0]), torch.maximum(l[N:, 0], cr[:, 2])])[:, None]
    u = torch.cat([torch.minimum(u[:N, 0], -cr[:, 1]), torch.minimum(u[N:, 0], -cr[:, 3])])[:, None]
    dLG, dLg = LG[:N, 0] - UG[N:, 0], Lg[:N, 0] - Ug[N:, 0]
    dUG, dUg = UG[:N, 0] - LG[N:, 0], Ug[:N, 0] - Lg[N:, 0]
    dl = torch.maximum(torch.maximum(dLg + (dLG * c).sum(-1) - (dLG.abs() * r).sum(-1), -Du[:, 0]), cr[:, 4])
    du = torch.minimum(torch.minimum(dUg + (dUG * c).sum(-1) + (dUG.abs() * r).sum(-1), -Dl[:, 0]), -cr[:, 5])
    tau = float32_error_finish(e[:, 0])
    gy = (LG[:N, 0] + UG[:N, 0]) / 2
    gp = (LG[N:, 0] + UG[N:, 0]) / 2
    score = (gy.abs() + gp.abs() + (gy - gp).abs()) * (zhi - zlo)
    v1 = torch.where(gy - gp > 0, zhi, zlo)  # pushes y up and y' down
    v2 = torch.where(gy - gp > 0, zlo, zhi)
    return TwinBounds((l[:N, 0], u[:N, 0]), (l[N:, 0], u[N:, 0]), (dl, du), (tau[:N], tau[N:]), score,
                      (v1, v2), nunst[:N] + nunst[N:], pre if keep_pre else None)


def point_logits(net: AffineReluNet, X: np.ndarray,
                 last_abs: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float64 decision logit of the one-logit ``net`` at integer points ``X`` (N, n) and a rigorous
    bound on |float32 logit - exact logit| for any summation order (the ``tau`` of a point box):
    where |logit| exceeds it, every float32 execution (batched or alone) has the exact sign."""
    h = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
    m, e = h.abs(), torch.zeros_like(h)
    L = net.num_layers
    for k in range(L):
        w, b = net.weights[k], net.biases[k]
        aw, ab = (w.abs(), b.abs()) if (k < L - 1 or last_abs is None) else last_abs
        e = float32_error_step(e, m, aw, ab)
        h = h @ w.T + b
        if k < L - 1:
            h = h.clamp(min=0)
            m = h + e
    return h[:, 0].numpy(), float32_error_finish(e[:, 0]).numpy()
