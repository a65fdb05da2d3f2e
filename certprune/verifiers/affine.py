"""The canonical form every native back end works on: an :class:`AffineReluNet`.

A feed-forward ReLU network is a chain ``z_1 = W_1 x + b_1, a_1 = relu(z_1), ...,
y = W_L a_{L-1} + b_L``. Any run of affine modules between two ReLUs (Linear, Conv2d,
BatchNorm in eval mode, Flatten, Reshape, constant Add/Mul, ...) collapses into one dense
``(W, b)``, read off by evaluating that run on the unit basis in float64. Doing it this way
(instead of one hand-written rule per layer type) means BatchNorm folding, convolution
padding/stride, and the ONNX loader's constant ops all come out right by construction; a
random-point check confirms the run really is affine.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from certprune.errors import ShapeMismatchError, UnsupportedModelError, check_deadline

AFFINE_TYPES: tuple[type, ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, nn.Identity,
    nn.Dropout, nn.Unflatten, nn.AvgPool2d, nn.ConvTranspose2d,
)


def is_affine_module(m: nn.Module) -> bool:
    """Known affine layer, or a module that declares ``is_affine = True`` (the ONNX loader's ops)."""
    return isinstance(m, AFFINE_TYPES) or bool(getattr(m, "is_affine", False))


def flatten_modules(model: nn.Module) -> list[nn.Module]:
    """Leaf modules of nested Sequentials (and of a Network's ``module``), in order."""
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module) and hasattr(model, "info"):
        model = inner
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for child in model:
            out.extend(flatten_modules(child))
        return out
    return [model]


@dataclass(frozen=True, eq=False)
class AffineReluNet:
    """``weights[i]`` is (n_{i+1}, n_i) float64, ``biases[i]`` (n_{i+1},); ReLU after every layer
    but the last. ``input_shape`` is the unflattened model input shape."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    input_shape: tuple[int, ...]

    @property
    def num_layers(self) -> int:
        return len(self.weights)

    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def output_dim(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def relu_sizes(self) -> list[int]:
        """Width of each ReLU layer (pre-activation sizes of layers 1..L-1)."""
        return [int(w.shape[0]) for w in self.weights[:-1]]

    def forward(self, x: torch.Tensor, return_preactivations: bool = False):
        """Exact float64 forward pass on flattened inputs ``(N, input_dim)``."""
        h = x.to(torch.float64).reshape(len(x), -1)
        pre = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + b
            if i < self.num_layers - 1:
                pre.append(h)
                h = torch.relu(h)
        return (h, pre) if return_preactivations else h

    @classmethod
    def from_module(cls, model: nn.Module, input_shape: tuple[int, ...] | None = None,
                    deadline: float | None = None) -> "AffineReluNet":
        """Convert a feed-forward ReLU module (see module doc); raises UnsupportedModelError
        listing every layer that is neither affine nor ReLU, DeadlineExceeded past ``deadline``
        (``time.monotonic()``; checked between chunks of the unit basis)."""
        if input_shape is None:
            info = getattr(model, "info", None)
            if info is None:
                raise ShapeMismatchError("input_shape is required for a plain torch module")
            input_shape = tuple(info.input_shape)
        mods = flatten_modules(model)
        bad = sorted({type(m).__name__ for m in mods if not (isinstance(m, nn.ReLU) or is_affine_module(m))})
        if bad:
            raise UnsupportedModelError(
                "the native engine supports feed-forward ReLU networks only; unsupported layers: " + ", ".join(bad))
        segments: list[list[nn.Module]] = [[]]
        for m in mods:
            if isinstance(m, nn.ReLU):
                segments.append([])
            else:
                segments[-1].append(m)
        weights, biases, shape = [], [], tuple(input_shape)
        for seg in segments:
            w, b, shape = _densify(seg, shape, deadline)
            weights.append(w)
            biases.append(b)
        return cls(tuple(weights), tuple(biases), tuple(input_shape))


DENSIFY_CHUNK = 512  # unit-basis rows per forward pass of _densify (deadline checked between chunks)


def _checked(f: nn.Module, chunk: torch.Tensor, deadline: float | None) -> torch.Tensor:
    """``f(chunk)`` flattened per row, after a deadline check."""
    check_deadline(deadline, "densifying the model")
    return f(chunk).reshape(len(chunk), -1)


def _densify(seg: list[nn.Module], in_shape: tuple[int, ...],
             deadline: float | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Dense (W, b) of an affine run of modules acting on inputs of shape ``in_shape``."""
    n_in = int(np.prod(in_shape))
    if not seg:
        return torch.eye(n_in, dtype=torch.float64), torch.zeros(n_in, dtype=torch.float64), in_shape
    f = nn.Sequential(*[copy.deepcopy(m) for m in seg]).double().eval()
    with torch.no_grad():
        try:
            zero = f(torch.zeros(1, *in_shape, dtype=torch.float64))
        except RuntimeError as e:
            raise ShapeMismatchError(f"layers {[type(m).__name__ for m in seg]} reject inputs of shape {in_shape}: "
                                     f"{str(e).splitlines()[0]}") from None
        out_shape = tuple(zero.shape[1:])
        b = zero.reshape(-1)
        # Columns from f(s * e_j) - f(0) with a large power-of-two s: the subtraction cancels the
        # bias, and scaling by s keeps weights far below |b| from vanishing in that cancellation
        # (the relative error drops from eps*|b|/|w| to eps*|b|/(s*|w|)); dividing by s is exact.
        s = 2.0 ** 40
        basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape) * s
        cols = (torch.cat([_checked(f, chunk, deadline) for chunk in basis.split(DENSIFY_CHUNK)]) - b) / s
        w = cols.T.contiguous()
        x = torch.randn(2, *in_shape, dtype=torch.float64)
        err = (f(x).reshape(2, -1) - (x.reshape(2, -1) @ w.T + b)).abs().max().item()
    scale = 1.0 + w.abs().max().item() * 10
    if err > 1e-8 * scale:
        names = ", ".join(type(m).__name__ for m in seg)
        raise UnsupportedModelError(f"layers [{names}] are not affine (error {err:.2e}); only ReLU may be nonlinear")
    return w, b.clone(), out_shape
