"""One model type for every back end: :class:`Network`, a torch module in eval mode plus metadata.

``load_model(path)`` reads ONNX (``.onnx``, ``.onnx.gz``), Keras HDF5 (``.h5``/``.hdf5``) and
PyTorch (TorchScript, or a state dict with a known architecture) into a ``Network`` whose
``module`` is (where the file allows) a plain ``torch.nn.Sequential`` of Linear / Conv2d /
BatchNorm / Flatten / ReLU / affine constant ops, which is what the native bound engine needs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from certprune.errors import ModelLoadError, ShapeMismatchError


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of a loaded model. ``input_shape`` excludes the batch dimension.

    ``output_activation`` names a final monotone activation the loader stripped (``"sigmoid"``,
    ``"softmax"``) so that ``module`` outputs logits; decisions are unchanged by stripping it
    (sigmoid(z) > 0.5 iff z > 0; argmax is invariant under softmax).
    """

    input_shape: tuple[int, ...]
    num_outputs: int
    sha256: str = ""
    source_format: str = "torch"
    path: str = ""
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    output_activation: str | None = None
    extra: dict = field(default_factory=dict)


class Network(nn.Module):
    """A loaded model: ``module`` (eval mode, float32) and ``info``. Calling it runs ``module``.

    ``net(x)`` takes a batch ``(N, *info.input_shape)``; a flat batch ``(N, prod(input_shape))``
    is accepted too and reshaped row-major (C order, the VNN-LIB convention). Any other shape
    raises :class:`~certprune.errors.ShapeMismatchError` naming both shapes.
    """

    def __init__(self, module: nn.Module, info: ModelInfo):
        super().__init__()
        self.module = module.eval()
        self.info = info
        check_finite_parameters(self.module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(self.batch_shaped(x))

    def batch_shaped(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``(N, *input_shape)``: unchanged if it has that shape, reshaped if flat
        ``(N, prod(input_shape))``; otherwise ShapeMismatchError."""
        shape = tuple(self.info.input_shape)
        got = tuple(x.shape)
        if got[1:] == shape and len(got) == len(shape) + 1:
            return x
        if len(got) == 2 and got[1] == int(np.prod(shape)):
            return x.reshape(got[0], *shape)
        raise ShapeMismatchError(
            f"input batch of shape {got} given to a model expecting (N, {', '.join(map(str, shape))}) "
            f"(or flat (N, {int(np.prod(shape))}))")

    def run_float32(self, x: np.ndarray) -> np.ndarray:
        """Evaluate on a batch ``(N, *input_shape)`` or ``(N, prod(input_shape))`` (or one input of
        ``input_shape``) in float32; returns ``(N, n_out)``."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape == self.info.input_shape:
            x = x[None]
        x = self.batch_shaped(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        with torch.no_grad():
            y = self.module.float()(torch.from_numpy(np.ascontiguousarray(x)))
        return y.reshape(len(x), -1).numpy()


def check_finite_parameters(module: nn.Module) -> None:
    """Raise :class:`ModelLoadError` naming every parameter/buffer that holds NaN or inf."""
    bad = [name for name, t in list(module.named_parameters()) + list(module.named_buffers())
           if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ModelLoadError(f"model has NaN or infinite values in: {', '.join(bad)}")


def file_sha256(path: str | Path) -> str:
    """Content hash of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def as_network(model: nn.Module | Network, input_shape: tuple[int, ...] | None = None) -> Network:
    """Wrap a plain module as a :class:`Network` (input shape given, or read off a first Linear)."""
    if isinstance(model, Network):
        return model
    if input_shape is None:
        first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
        if not isinstance(first, nn.Linear):
            raise ShapeMismatchError("cannot infer the input shape of this model; pass input_shape")
        input_shape = (first.in_features,)
    with torch.no_grad():
        n_out = int(model.eval()(torch.zeros(1, *input_shape)).numel())
    return Network(model, ModelInfo(tuple(input_shape), n_out))


def load_model(path: str | Path, *, trust_pickle: bool = False, input_shape: tuple[int, ...] | None = None,
               architecture: str | None = None, max_inflate: int | None = None) -> Network:
    """Load ONNX / Keras HDF5 / PyTorch files into a :class:`Network` (see module doc).

    PyTorch pickles are only unpickled when ``trust_pickle=True``; otherwise a TorchScript file or
    a state dict (loaded with ``weights_only=True``) plus ``architecture`` is required.
    ``max_inflate`` caps the inflated size of a ``.onnx.gz`` (or a PyTorch zip archive) in bytes (default
    ``$CERTPRUNE_MAX_INFLATE`` or 1 GiB; see :mod:`certprune.io.inflate`).
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"model file not found: {p}")
    name = p.name.lower()
    if name.endswith((".onnx", ".onnx.gz")):
        from certprune.io.onnx_loader import load_onnx
        return load_onnx(p, max_inflate=max_inflate)
    if name.endswith((".h5", ".hdf5", ".keras")):
        from certprune.io.keras_loader import load_keras_h5
        return load_keras_h5(p)
    if name.endswith((".pt", ".pth", ".ts", ".torchscript")):
        from certprune.io.torch_loader import load_torch
        return load_torch(p, trust_pickle=trust_pickle, input_shape=input_shape, architecture=architecture,
                          max_inflate=max_inflate)
    raise ModelLoadError(f"unknown model format for {p.name}: expected .onnx, .onnx.gz, .h5 or .pt")
