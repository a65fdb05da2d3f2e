"""Torch modules for the ONNX operators that have no exact ``torch.nn`` counterpart.

Conventions: every module acts on a batch (dim 0 is the batch); constants are float32 buffers
(so ``.double()`` widens them with the model). Modules whose output is an affine function of
their single tensor input set the class attribute ``is_affine = True``, which lets the native
bound engine densify them (see ``certprune.verifiers.affine``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ConstBinary(nn.Module):
    """``x (op) c`` or ``c (op) x`` for op in add/sub/mul/div with a constant ``c`` (broadcast).

    Affine unless it divides by ``x``; :func:`const_binary` refuses that case.
    """

    is_affine = True

    def __init__(self, op: str, const: np.ndarray, const_first: bool):
        super().__init__()
        self.op, self.const_first = op, const_first
        self.register_buffer("const", torch.as_tensor(np.asarray(const, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = (self.const, x) if self.const_first else (x, self.const)
        if self.op == "Add":
            return a + b
        if self.op == "Sub":
            return a - b
        if self.op == "Mul":
            return a * b
        return a / b

    def extra_repr(self) -> str:
        side = "c {} x" if self.const_first else "x {} c"
        return side.format(self.op) + f", c shape {tuple(self.const.shape)}"


class MatMulConst(nn.Module):
    """``x @ W`` for a constant ``W`` (ONNX MatMul on tensors of rank > 2; 2-D uses nn.Linear)."""

    is_affine = True

    def __init__(self, weight: np.ndarray):
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(np.asarray(weight, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight)


class Reshape(nn.Module):
    """Row-major reshape of each sample to ``shape`` (batch dim kept)."""

    is_affine = True

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Select(nn.Module):
    """Pick fixed entries of each flattened sample: ``x.reshape(N, -1)[:, index]`` shaped ``shape``
    (ONNX Slice / Gather with constant indices)."""

    is_affine = True

    def __init__(self, index: np.ndarray, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("index", torch.as_tensor(np.asarray(index, dtype=np.int64)))
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)[:, self.index].reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"{self.index.numel()} entries, shape={self.shape}"


class Permute(nn.Module):
    """Transpose of the non-batch dims; ``perm`` indexes the full tensor and keeps dim 0 first."""

    is_affine = True

    def __init__(self, perm: tuple[int, ...]):
        super().__init__()
        self.perm = tuple(int(p) for p in perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.perm)

    def extra_repr(self) -> str:
        return f"perm={self.perm}"


class ConstantPad(nn.Module):
    """Zero padding (ONNX Pad in constant mode with value 0, or asymmetric Conv pads)."""

    is_affine = True

    def __init__(self, pad: tuple[int, ...]):
        super().__init__()
        self.pad = tuple(int(p) for p in pad)  # torch order: last dim first, (before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(x, self.pad)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class TensorBinary(nn.Module):
    """Elementwise add/sub/mul of two tensors (graph modules only; Mul is not affine)."""

    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.op == "Add":
            return a + b
        if self.op == "Sub":
            return a - b
        return a * b

    def extra_repr(self) -> str:
        return self.op


class Concat(nn.Module):
    """Concatenation of tensors along ``dim`` (graph modules only)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class OnnxGraph(nn.Module):
    """A non-chain ONNX graph (e.g. residual connections): runs ``nodes`` in order.

    ``wiring[i]`` lists the value names node i reads, ``outputs[i]`` the name it writes; the
    model input is ``"__input__"``. The native engine rejects this module (it is not a chain);
    the auto_LiRPA engine can bound it.
    """

    def __init__(self, nodes: list[nn.Module], wiring: list[tuple[str, ...]], outputs: list[str], result: str):
        super().__init__()
        self.nodes = nn.ModuleList(nodes)
        self.wiring, self.outputs, self.result = [tuple(w) for w in wiring], list(outputs), result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {"__input__": x}
        for node, names, out in zip(self.nodes, self.wiring, self.outputs):
            env[out] = node(*[env[n] for n in names])
        return env[self.result]
