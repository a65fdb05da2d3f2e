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
    """A loaded model: ``module`` (eval mode, float32) and ``info``. Calling it runs ``module``."""

    def __init__(self, module: nn.Module, info: ModelInfo):
        super().__init__()
        self.module = module.eval()
        self.info = info
        check_finite_parameters(self.module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def run_float32(self, x: np.ndarray) -> np.ndarray:
        """Evaluate on a batch ``(N, *input_shape)`` (or one input) in float32; returns ``(N, n_out)``."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape == self.info.input_shape:
            x = x[None]
        if tuple(x.shape[1:]) != self.info.input_shape:
            raise ShapeMismatchError(
                f"input of shape {tuple(x.shape[1:])} given to a model expecting {self.info.input_shape}")
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
               architecture: str | None = None) -> Network:
    """Load ONNX / Keras HDF5 / PyTorch files into a :class:`Network` (see module doc).

    PyTorch pickles are only unpickled when ``trust_pickle=True``; otherwise a TorchScript file or
    a state dict (loaded with ``weights_only=True``) plus ``architecture`` is required.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"model file not found: {p}")
    name = p.name.lower()
    if name.endswith((".onnx", ".onnx.gz")):
        from certprune.io.onnx_loader import load_onnx
        return load_onnx(p)
    if name.endswith((".h5", ".hdf5", ".keras")):
        from certprune.io.keras_loader import load_keras_h5
        return load_keras_h5(p)
    if name.endswith((".pt", ".pth", ".ts", ".torchscript")):
        from certprune.io.torch_loader import load_torch
        return load_torch(p, trust_pickle=trust_pickle, input_shape=input_shape, architecture=architecture)
    raise ModelLoadError(f"unknown model format for {p.name}: expected .onnx, .onnx.gz, .h5 or .pt")
