"""ReLU: forward, interval, and the CROWN linear relaxation with optimisable lower slopes.

On pre-activation bounds ``[l, u]``: stable active (l >= 0) is the identity, stable inactive
(u <= 0) is zero; an unstable neuron has the upper chord ``s z + t`` (``s = u/(u-l)``,
``t = -s l``) and the lower line ``alpha z`` for any alpha in [0, 1] (CROWN's adaptive default:
1 if u > -l else 0). The backward step for a lower bound of ``sum(A * relu(z))`` uses alpha on
positive and the chord on negative coefficients; the intercept loss ``-min(A, 0) * t`` per
neuron is what branch and bound scores (BaBSR-style).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from certprune.graph.op import FnPair, Interval, LinFn, Op
from certprune.graph.windows import Windows
from certprune.graph.ops_linear import batched_mv
from certprune.semantics import gamma64


@dataclass
class Relaxation:
    """Per neuron, batched (N, *shape): default lower slope, chord slope and chord intercept,
    and the unstable mask (where an optimised alpha may replace the default)."""

    alpha: torch.Tensor
    slope: torch.Tensor
    intercept: torch.Tensor
    unstable: torch.Tensor


def relu_relaxation(l: torch.Tensor, u: torch.Tensor, lower_slope: torch.Tensor | None = None):
    """Linear relaxation of ReLU on [l, u]: returns (lower slope, upper slope, upper intercept).

    Lower line ``alpha * z`` (alpha in [0, 1]; CROWN's adaptive choice 1 if u > -l else 0 unless
    ``lower_slope`` is given for unstable neurons); upper line ``s * z + t`` with the chord
    ``s = u / (u - l)``, ``t = -s * l``. Stable neurons get exact slopes 1 or 0.
    """
    active, inactive = l >= 0, u <= 0
    unstable = ~(active | inactive)
    denom = torch.where(unstable, u - l, torch.ones_like(u))
    s = torch.where(unstable, u / denom, active.to(u.dtype))
    t = torch.where(unstable, -s * l, torch.zeros_like(l))
    if lower_slope is None:
        lower_slope = (u > -l).to(u.dtype)
    alpha = torch.where(unstable, lower_slope, active.to(u.dtype))
    return alpha, s, t


class ReLU(Op):
    """Elementwise max(x, 0)."""

    kind = "relu"
    nonlinear = True

    def forward(self, x):
        return torch.relu(x)

    def interval(self, b: Interval) -> Interval:
        return b[0].clamp(min=0), b[1].clamp(min=0)

    def encode(self, enc, z):
        """Exact encoding on the encoder's current domain (``certprune.graph.encode``)."""
        return enc.relu(z)

    @staticmethod
    def forward_relaxed(f: FnPair, r: Relaxation) -> FnPair:
        """Forward symbolic step: lower ``alpha L(x)``, upper ``s U(x) + t`` (valid because
        alpha, s >= 0); ``r`` holds (N, *shape) slopes."""
        a, s = r.alpha.unsqueeze(1), r.slope.unsqueeze(1)
        lo, up = f
        return LinFn(lo.A * a, lo.b * r.alpha), LinFn(up.A * s, up.b * r.slope + r.intercept)

    def float32_error(self, es, ms):
        return es[0]  # ReLU is exact in float32 and 1-Lipschitz: the input error passes unchanged

    def float64_residual(self, ms):
        return None  # the interval image (clamp) is exact; the relaxed step: relaxation_residual

    def abs_map(self, es):
        return es[0]  # 1-Lipschitz, slopes in [0, 1] (the forward pass adds the relaxation's own terms)

    @staticmethod
    def relaxation_residual(l: torch.Tensor, u: torch.Tensor) -> torch.Tensor | None:
        """``r`` (N, *shape) for the backward step of :meth:`backward_relaxed` on the relaxation
        built from ``[l, u]`` (None where no neuron is unstable: stable neurons are exact, slopes
        0 / 1 and no intercept). Per unstable neuron, with ``m = max(|l|, |u|)``, n = the node's
        size: the float chord ``s z + t`` (``s = fl(u / fl(u - l))``, ``t = -fl(s l)``) can miss
        relu on [l, u] by at most ``3.01 u m`` (at the ends: ``s l - fl(s l)`` and ``s (u - l) >=
        u (1 - 2.01 u)``; relu minus a line is convex), while ``alpha z <= relu(z)`` holds exactly for
        every float alpha in [0, 1]; the coefficients ``A a + min(A, 0) (s - a)`` carry at most
        ``7.1 u |A|`` and the intercept product ``min(A, 0) @ t`` (inner length n, |t| <= m (1 + u))
        ``gamma_n |A| m``: all within ``gamma_{n + 12} |A| m``, doubled for the rounding of r."""
        unstable = ~((l >= 0) | (u <= 0))
        if not bool(unstable.any()):
            return None
        n = l[0].numel()
        return torch.where(unstable, gamma64(2 * (n + 12)) * torch.maximum(l.abs(), u.abs()), 0.0)

    @staticmethod
    def relax(l: torch.Tensor, u: torch.Tensor) -> Relaxation:
        """The relaxation on ``[l, u]`` (see module doc)."""
        alpha, s, t = relu_relaxation(l, u)
        return Relaxation(alpha, s, t, ~((l >= 0) | (u <= 0)))

    def window_geo(self, g):
        return g

    @staticmethod
    def _backward_windows(A: Windows, r: Relaxation) -> tuple[Windows, torch.Tensor, None]:
        """The step of :meth:`backward_relaxed` on windows: the relaxation's slopes and
        intercepts are unfolded once per pass into the same windows (zero outside the node)."""
        a = A.of(r, "alpha", lambda: r.alpha)
        gap = A.of(r, "gap", lambda: r.slope - r.alpha)  # chord slope - lower slope
        Pf = A.flat()
        neg = Pf.clamp(max=0)
        bias = (neg @ A.of(r, "intercept", lambda: r.intercept).transpose(-1, -2)).reshape(-1, A.rows)
        new = (Pf * a).addcmul_(neg, gap)  # alpha on positive, chord on negative coefficients
        return A.moved(new.reshape(new.shape[0], *A.P.shape[1:]), A.geo, A.shape), bias, None

    @staticmethod
    def backward_relaxed(A: torch.Tensor, r: Relaxation, alpha: torch.Tensor | None = None, record: bool = False,
                         beta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(coefficients of z, bias (K, m), per-neuron intercept loss (K, m, *shape) if ``record``)
        for the lower bound of ``sum(A * relu(z))``; ``alpha`` (N, m, *shape) replaces the
        unstable lower slopes. Computed as ``A * a + min(A, 0) * (s - a)`` (alpha on positive,
        chord slope on negative coefficients) with the intercept term as one matrix product.

        ``beta`` (N, m, *shape): signed split multipliers ``beta * split`` (beta >= 0, split +1
        for z >= 0, -1 for z <= 0, 0 free) of beta-CROWN (Wang et al. 2021). The result then
        bounds ``sum(A * relu(z)) - sum(beta * split * z)``, which is <= the original function
        on every point of the split domain (``split * z >= 0`` there), so the bound stays sound
        for any such multipliers and optimising them only tightens it.

        ``A`` may be :class:`~certprune.graph.windows.Windows` (identity-spec passes: no
        ``alpha``, ``beta`` or ``record``)."""
        return ReLU.backward_margin(A, r, alpha, record, beta)[:3]

    @staticmethod
    def backward_margin(A, r: Relaxation, alpha: torch.Tensor | None = None, record: bool = False,
                        beta: torch.Tensor | None = None, resid: torch.Tensor | None = None):
        """:meth:`backward_relaxed` and, for a residual ``resid`` (N, *shape) >= 0 (dense ``A``
        only), ``sum(|A| * resid)`` per row (K', m), else None, as ``sum(A r) - 2 sum(min(A, 0) r)``
        from the step's own ``min(A, 0)`` (two products, no |A| tensor: the rounding margin of
        ``certprune.bounds.crown``); returns (new, bias, loss, margin). Without autograd the margin
        is folded into the bias instead (``bias - margin`` as ``neg . (t + 2 r) - A . r``, one
        product more than the plain step; margin None): the rounding of both products is within
        ``gamma_n`` of ``|A| . (|t| + 3 r)``, covered by the residual's own slack and the sweep's
        safety factor."""
        if isinstance(A, Windows):
            if alpha is not None or beta is not None or record:
                raise ValueError("windows carry the identity-spec pass only (no alpha, beta or scores)")
            return ReLU._backward_windows(A, r) + (None,)
        a = r.alpha.unsqueeze(1)
        if alpha is not None:
            a = torch.where(r.unstable.unsqueeze(1), alpha, a)
        neg = A.clamp(max=0)
        new = A * a
        new = new.addcmul(neg, r.slope.unsqueeze(1) - a) if new.requires_grad else new.addcmul_(neg, r.slope.unsqueeze(1) - a)
        if beta is not None:
            new = new - beta
        K, m = neg.shape[:2]
        t = r.intercept.reshape(r.intercept.shape[0], -1)
        loss = -(neg * r.intercept.unsqueeze(1)) if record else None
        if resid is None or neg.requires_grad:
            # <= 0: the chord intercepts on negative coefficients
            bias = batched_mv(neg.reshape(K, m, -1), t)
            margin = None
            if resid is not None:
                with torch.no_grad():
                    R = resid.reshape(resid.shape[0], -1)
                    margin = batched_mv(A.detach().reshape(K, m, -1), R) - 2 * batched_mv(neg.detach().reshape(K, m, -1), R)
            return new, bias, loss, margin
        # bias - margin = neg . t - (A . r - 2 neg . r) = neg . (t + 2 r) - A . r: one product more
        # than the plain step; the bias returned is then already less the margin (margin None)
        R = resid.reshape(resid.shape[0], -1)
        bias = batched_mv(neg.reshape(K, m, -1), t + 2 * R) - batched_mv(A.reshape(K, m, -1), R)
        return new, bias, loss, None
