"""Straight-through masks: ``w * step(m)`` with the identity straight-through estimator.

Forward: ``step(m) = 1[m > 0]`` (a binary keep-mask). Backward: ``d step / d m := 1`` (identity
STE), so ``dL/dm = dL/dw_eff * w`` for ``w_eff = w * step(m)``, also for pruned connections
(Tang et al. 2022, "Automatic Sparse Connectivity Learning for Neural Networks", sec. III: a
positive proxy gradient lets masks converge; Identity STE is the one SCL adopts).
"""
from __future__ import annotations

import torch
from torch import nn


class _IdentityStep(torch.autograd.Function):
    """step(m) forward, identity backward."""

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (m > 0).to(m.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def ste_step(m: torch.Tensor) -> torch.Tensor:
    """Binary ``1[m > 0]`` whose gradient is passed straight through (identity)."""
    return _IdentityStep.apply(m)


class StepMask(nn.Module):
    """A ``torch.nn.utils.parametrize`` parametrization ``w -> w * step(m)``.

    ``logits`` is shared between the weight and (structured masks) the bias of one layer; its
    shape broadcasts against the tensor it masks after :meth:`forward` reshapes it: unstructured
    masks have the weight's shape, unit masks one entry per output unit.
    """

    def __init__(self, logits: nn.Parameter, ndim: int):
        super().__init__()
        self.logits = logits
        self.ndim = ndim

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # noqa: D102
        gate = ste_step(self.logits)
        if gate.dim() < self.ndim:
            gate = gate.reshape(gate.shape + (1,) * (self.ndim - gate.dim()))
        return w * gate


class _SurgeryMask(torch.autograd.Function):
    """``w * T`` forward; the gradient reaches every ``w``, masked or not (``d(w*T)/dw := 1``)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return w * t

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return grad, None


class RecoverableMask(nn.Module):
    """Parametrization ``w -> w * T`` with a buffer ``T`` in {0, 1}; with ``recover`` the
    gradient of the effective weight is applied to pruned weights too (dynamic network surgery),
    without it pruned weights get no gradient (a fixed mask)."""

    def __init__(self, shape: torch.Size, recover: bool = True):
        super().__init__()
        self.register_buffer("t", torch.ones(shape))
        self.recover = recover

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _SurgeryMask.apply(w, self.t) if self.recover else w * self.t
