"""The canonical form every native back end works on: an :class:`AffineReluNet`.

A feed-forward ReLU network is a chain ``z_1 = W_1 x + b_1, a_1 = relu(z_1), ...,
y = W_L a_{L-1} + b_L``. Any run of affine modules between two ReLUs (Linear, Conv2d,
BatchNorm in eval mode, Flatten, Reshape, constant Add/Mul, ...) collapses into one dense
``(W, b)``, read off by evaluating that run on the unit basis in float64. Doing it this way
(instead of one hand-written rule per layer type) means BatchNorm folding, convolution
padding/stride, and the ONNX loader's constant ops all come out right by construction; a
random-point check confirms the run really is affine.

That evaluation rounds (a product of two layers, a convolution's sum, BatchNorm's folding), and
the bound passes' rigorous float64 margin (``Op.float64_residual``) does not see it: a run is
*exact* only where it is one ``nn.Linear`` on a flat input (with Flatten / Identity / Dropout
around it), whose (W, b) are its own parameters. ``AffineReluNet.exact`` says whether every run
was; :func:`certprune.verifiers.problem.model_forms` bounds a non-exact chain on its graph IR
(one operator per layer, each with its own rounding margin) instead.
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
    if _plain(model, nn.Sequential):
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
    exact: bool = True  # (W, b) are the model's own parameters, not a rounded product (module doc)

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
        weights, biases, shape = [], [], tuple(input_shape)
        for seg in _segments(mods):
            copied = _single_linear(seg, shape)
            w, b, shape = copied if copied is not None else _densify(seg, shape, deadline)
            weights.append(w)
            biases.append(b)
        return cls(tuple(weights), tuple(biases), tuple(input_shape), is_exact_chain(model, input_shape))


_PASSIVE = (nn.Flatten, nn.Identity, nn.Dropout)


def _global_hooks() -> bool:
    """Whether torch has global module forward hooks registered (they run on every module)."""
    from torch.nn.modules import module as mm
    return bool(mm._global_forward_hooks or mm._global_forward_pre_hooks)


def _plain(m: nn.Module, types) -> bool:
    """``m`` is one of ``types`` and computes what that type computes: its class is exactly
    that type (no subclass), no instance attribute replaces ``forward`` (or the helpers it calls)
    and no forward hook is registered on it. Bound forms read a module's parameters by its type; a module that
    overrides ``forward`` would be bounded as something it does not compute."""
    types = types if isinstance(types, tuple) else (types,)
    if type(m) not in types or m._forward_hooks or m._forward_pre_hooks:
        return False  # exact type: a subclass may override any helper (__call__, _conv_forward, ...)
    return not any(k in m.__dict__ for k in _OVERRIDES)  # nor an instance attribute shadow a method


_OVERRIDES = ("forward", "__call__", "_call_impl", "_conv_forward")


def _segments(mods: list[nn.Module]) -> list[list[nn.Module]]:
    """The affine runs between ReLUs."""
    segments: list[list[nn.Module]] = [[]]
    for m in mods:
        if isinstance(m, nn.ReLU):
            segments.append([])
        else:
            segments[-1].append(m)
    return segments


def is_exact_chain(model: nn.Module, input_shape: tuple[int, ...]) -> bool:
    """Whether :meth:`AffineReluNet.from_module` would copy every affine run of ``model`` from
    its one ``nn.Linear`` (``exact``), decided without densifying anything."""
    shape = tuple(input_shape)
    mods = flatten_modules(model)
    if any(not (_plain(m, nn.ReLU) or _plain(m, _PASSIVE + (nn.Linear,))) for m in mods) or _global_hooks():
        return False
    for seg in _segments(mods):
        if all(isinstance(m, _PASSIVE) for m in seg):  # shape moves only: follow it on a zero sample
            with torch.no_grad():
                try:
                    shape = tuple(nn.Sequential(*seg)(torch.zeros(1, *shape)).shape[1:])
                except RuntimeError:
                    return False
            continue
        copied = _single_linear(seg, shape)
        if copied is None:
            return False
        shape = copied[2]
    return True


def _single_linear(seg: list[nn.Module], in_shape: tuple[int, ...]):
    """(W, b, out shape) copied from the one ``nn.Linear`` of ``seg`` when ``seg`` is that Linear
    on a flat input with only Flatten / Identity / Dropout around it (no rounding at all), else None."""
    if _global_hooks() or any(not _plain(m, _PASSIVE + (nn.Linear,)) for m in seg):
        return None
    lin = [m for m in seg if not isinstance(m, _PASSIVE)]
    if len(lin) != 1 or not isinstance(lin[0], nn.Linear) or lin[0].in_features != int(np.prod(in_shape)):
        return None
    m = lin[0]
    k = seg.index(m)
    if any(isinstance(p, nn.Flatten) and (p.start_dim not in (1, -len(in_shape)) or p.end_dim != -1) for p in seg):
        return None
    if len(in_shape) != 1 and not any(isinstance(p, nn.Flatten) for p in seg[:k]):
        return None  # Linear on the last axis of a multi-axis input: not one matrix on the flat input
    w = m.weight.detach().to(torch.float64).clone()
    b = (m.bias.detach().to(torch.float64).clone() if m.bias is not None
         else torch.zeros(m.out_features, dtype=torch.float64))
    return w, b, (m.out_features,)


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


def exact_dense(m: nn.Module, in_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """Dense (W, b, out shape) of a transposed convolution, without rounding: W from a bias-free
    copy on the unit basis, where each output of ``e_j`` is ``1 * w`` for at most one kernel tap
    (an input position reaches an output position through one tap of each channel pair) plus
    exact zeros, and b the bias broadcast (the image of 0). Unlike :func:`_densify` (which scales
    and subtracts, rounding), so it may carry a proof under the exact semantics."""
    from certprune.graph.encode import jacobian  # the one unit-basis reader (chunked, sparse)

    f = copy.deepcopy(m).double().eval()
    bias = None if f.bias is None else f.bias.detach().clone()
    f.bias = None
    with torch.no_grad():
        try:
            out_shape = tuple(f(torch.zeros(1, *in_shape, dtype=torch.float64)).shape[1:])
        except RuntimeError as e:
            raise ShapeMismatchError(f"{type(m).__name__} rejects inputs of shape {in_shape}: "
                                     f"{str(e).splitlines()[0]}") from None
    J, _ = jacobian(f, tuple(in_shape))  # f(0) = 0 exactly: the columns are f(e_j) themselves
    w = torch.from_numpy(J.toarray())
    b = torch.zeros(out_shape, dtype=torch.float64)
    if bias is not None:
        b = b + bias.reshape((-1,) + (1,) * (len(out_shape) - 1))
    return w, b.reshape(-1), out_shape
