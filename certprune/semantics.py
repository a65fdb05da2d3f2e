"""The one soundness policy: what a certificate is a certificate *of*.

Two semantics, named in every output that certifies:

- ``exact`` (the default): the real-arithmetic network. Bounds are computed in float64 and a
  bound only decides when it clears zero by the outward margin ``1e-7 * (1 + |b|)`` (what
  ``verify`` does, and what Fairify, FairQuant, Marabou and alpha-beta-CROWN certify).
- ``float32``: the certificate also holds for the model executed in float32; a bound only decides
  when it clears zero by a rigorous float32 rounding-error bound ``tau`` of the quantity (for the
  fairness engine: :mod:`certprune.verifiers.twin_bounds`' ``tau``).

Counterexamples are re-run in float32 on the original model under both semantics.

API: :class:`Semantics`, :data:`DEFAULT`, :func:`parse_semantics`, :meth:`Semantics.slack`.
"""
from __future__ import annotations

from enum import Enum

from certprune.errors import ConfigError

REL_MARGIN = 1e-7  # exact semantics: a bound b decides only beyond REL_MARGIN * (1 + |b|)


class Semantics(str, Enum):
    """``exact`` | ``float32`` (see module doc); the value is the word written into outputs."""

    EXACT = "exact"
    FLOAT32 = "float32"

    def slack(self, bound, float32_error):
        """Margin by which ``bound`` must clear zero to decide a sign: ``1e-7 (1 + |bound|)`` for
        exact, ``float32_error`` (a rigorous bound on |float32 - exact|) for float32. Works on
        floats, numpy arrays and torch tensors alike (elementwise)."""
        if self is Semantics.EXACT:
            return REL_MARGIN * (1 + abs(bound))
        return float32_error + 0 * bound


DEFAULT = Semantics.EXACT
CHOICES = tuple(s.value for s in Semantics)


def parse_semantics(value: "str | Semantics | None") -> Semantics:
    """A Semantics from its name (None = :data:`DEFAULT`); unknown names raise ConfigError."""
    if value is None:
        return DEFAULT
    if isinstance(value, Semantics):
        return value
    try:
        return Semantics(str(value).strip().lower())
    except ValueError:
        raise ConfigError(f"unknown semantics {value!r}; choose one of: {', '.join(CHOICES)}") from None


# --- the rigorous float32 rounding-error bound (one copy; used by twin_bounds and verify) ---------

U32 = 2.0 ** -24   # unit roundoff of float32
SAFETY = 1.25      # room for the float64 rounding of the bound computation itself


def gamma(k: int) -> float:
    """Higham's ``gamma_k = k u / (1 - k u)`` for float32."""
    return (k * U32) / (1 - k * U32)


def float32_error_step(e, m, aw, ab):
    """One affine layer of the error recurrence: given ``e`` >= |float32 h - exact h| and ``m`` >=
    |float32 h| of the layer input, a bound on |float32 (W h + b) - exact (W h + b)| is
    ``e |W|^T + gamma_{n+1} (m |W|^T + |b|)`` (Higham Thm 3.5: any summation order, FMA or not)."""
    return e @ aw.T + gamma(aw.shape[1] + 1) * (m @ aw.T + ab)


def float32_error_finish(e):
    """The final margin from the propagated bound ``e`` (safety factor plus an absolute 1e-9)."""
    return SAFETY * e + 1e-9


def chain_float32_error(weights, biases, input_abs, pre_upper):
    """Rigorous bound (n_out,) on |float32 output - exact output| of the ReLU chain ``weights``,
    ``biases`` (float64 tensors holding float32 values) over a region where |x| <= ``input_abs``
    and each hidden pre-activation is <= ``pre_upper[k]`` (exact arithmetic). ReLU is exact in
    float32 and 1-Lipschitz, so the hidden error passes through it unchanged."""
    m = input_abs.reshape(1, -1)
    e = 0 * m
    for k, (w, b) in enumerate(zip(weights, biases)):
        e = float32_error_step(e, m, w.abs(), b.abs())
        if k < len(weights) - 1:
            m = pre_upper[k].reshape(1, -1).clamp(min=0) + e
    return float32_error_finish(e)[0]
