"""What is left of the chain-only native engine: interval images of dense layers for the
forward-mode code (``native_forward``, ``twin_bounds``); backward CROWN, alpha/beta-CROWN and
IBP now run on the graph engine (``certprune.bounds``) for every model, chains included.

All arithmetic is float64 on the exact float32 weights widened to float64, so the bounds enclose
the real-arithmetic network up to float64 rounding (relative ~1e-15); callers that certify add
their own documented margin for float32 execution. Shapes: boxes are ``(N, n_in)``; bounds are
``(N, n)``; a specification matrix ``C`` is ``(m, n_out)`` or ``(N, m, n_out)`` and bounds are
then on ``C @ y``, shape ``(N, m)``.
"""
from __future__ import annotations

import torch

from certprune.graph.relu import relu_relaxation  # noqa: F401  (re-exported for native_forward, twin_bounds)

LayerBounds = tuple[torch.Tensor, torch.Tensor]
Relaxation = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def interval_affine(w: torch.Tensor, b: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> LayerBounds:
    """Exact interval image of ``w x + b`` over the box ``[lo, hi]`` (center/radius form)."""
    c, r = (lo + hi) / 2, (hi - lo) / 2
    zc = c @ w.T + b
    zr = r @ w.abs().T
    return zc - zr, zc + zr
