"""A simulated approximate multiplier: unsigned ``bits``-bit operands, sign-magnitude products,
the ``t`` lowest columns of the partial-product array truncated (``p -> (p >> t) << t``).

Error model (exact, by enumeration): for operand codes ``a, b`` uniform on ``[0, 2^bits)`` the
truncation error ``u = p mod 2^t`` of the magnitude has the mean and standard deviation returned by
:func:`truncation_stats`; its worst case is ``2^t - 1``. The signed product's error is
``-sign(w) * u`` (in units of the product LSB ``dw * dx``). Energy model: the share of
partial-product cells (AND gates + adder cells, one per bit of the ``bits x bits`` array) that
truncation removes; columns ``c < t`` hold ``min(c, 2 bits - 2 - c) + 1`` cells. This is an
estimate of multiplication energy (cells switched), not a circuit-level figure.
"""
from __future__ import annotations

import functools

import torch

from certprune.errors import ConfigError


def _check(t: int, bits: int) -> None:
    if not (isinstance(t, int) and isinstance(bits, int)) or bits < 2 or not 0 <= t <= 2 * bits:
        raise ConfigError(f"truncation needs integers 0 <= t <= 2*bits and bits >= 2, got t={t!r}, bits={bits!r}")


@functools.lru_cache(maxsize=None)
def truncation_stats(t: int, bits: int = 8) -> tuple[float, float]:
    """(mean, std) of ``(a*b) mod 2^t`` over all operand pairs ``a, b`` in ``[0, 2^bits)``."""
    _check(t, bits)
    a = torch.arange(2 ** bits, dtype=torch.int64)
    u = ((a[:, None] * a[None, :]) % (2 ** t)).double()
    return float(u.mean()), float(u.std(unbiased=False))


def worst_error(t: int) -> int:
    """Largest truncation error of one product magnitude, in product LSBs."""
    return 2 ** t - 1


def energy_factor(t: int, bits: int = 8) -> float:
    """Relative energy of one truncated multiplication (1.0 = exact multiplier)."""
    _check(t, bits)
    cells = [min(c, 2 * bits - 2 - c) + 1 for c in range(2 * bits - 1)]
    return 1.0 - sum(cells[:t]) / sum(cells)


def truncated_product(a: torch.Tensor, b: torch.Tensor, t: int) -> torch.Tensor:
    """Magnitudes ``(a * b)`` with the ``t`` lowest bits cleared (int64 codes)."""
    return ((a * b) >> t) << t
