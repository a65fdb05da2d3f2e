"""The one soundness policy: what a certificate is a certificate *of*.

Two semantics, named in every output that certifies:

- ``exact`` (the default): the real-arithmetic network. Bounds are computed in float64 and a
  bound only decides when it clears zero by the outward margin ``1e-7 * (1 + |b|)`` (what
  ``verify`` does, and what Fairify, FairQuant, Marabou and alpha-beta-CROWN certify). The
  robustness bound passes (IBP, CROWN / alpha / beta-CROWN, intermediate bounds, branch-and-bound
  domains, LP leaves' dual certificates) are themselves rigorous for real arithmetic: each
  carries its float64 rounding margin (``U64``, :func:`gamma64`; :mod:`certprune.bounds.crown`,
  "Rounding"), which comes *on top of* the relative margin; so do the forward symbolic pass and
  the fairness twin bounds (:mod:`certprune.bounds.forward`, "Rounding"). Not yet covered: the
  MILP leaves' solver dual bound (HiGHS, within its 1e-5 tolerance).
- ``float32``: the certificate also holds for the model executed in float32; a bound only decides
  when it clears zero by a rigorous float32 rounding-error bound ``tau`` of the quantity (for the
  fairness engine: :mod:`certprune.verifiers.twin_bounds`' ``tau``), computed over the graph
  IR by :mod:`certprune.bounds.float32`.

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


# --- constants of the rigorous float32 rounding-error bound (certprune.bounds.float32; per
#     operator in Op.float32_error) ---------------------------------------------------------------

U32 = 2.0 ** -24   # unit roundoff of float32
SAFETY = 1.25      # room for the float64 rounding of the bound computation itself


def gamma(k: int) -> float:
    """Higham's ``gamma_k = k u / (1 - k u)`` for float32."""
    return (k * U32) / (1 - k * U32)


def float32_error_finish(e):
    """The final margin from the propagated bound ``e`` (safety factor plus an absolute 1e-9)."""
    return SAFETY * e + 1e-9


# --- constants of the rigorous float64 rounding margin of the bound passes themselves
#     (certprune.bounds.crown's module doc; per operator in Op.float64_residual) --------------------

U64 = 2.0 ** -53   # unit roundoff of float64
TINY64 = 2.0 ** -1074  # the smallest float64: the absolute error of a rounding that underflows


def gamma64(k: int) -> float:
    """Higham's ``gamma_k = k u / (1 - k u)`` for float64 (``u = 2^-53``): ``|fl(sum of k
    products) - exact| <= gamma_k * sum |products|`` in any summation order, FMA or not."""
    return (k * U64) / (1 - k * U64)
