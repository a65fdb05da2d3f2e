"""Export a torch module (or a :class:`~certprune.network.Network`) to ONNX with a dynamic batch dim.

Uses torch's own TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): it works on
torch 2.13 without extra dependencies, whereas the dynamo exporter needs ``onnxscript``. The graph
input is named ``input`` with shape ``(batch, *input_shape)``; the output is ``output``.
Optional ``metadata`` (e.g. a pruning manifest) is stored as ONNX ``metadata_props`` strings.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from certprune.errors import ModelLoadError, ShapeMismatchError

OPSET = 17


def save_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...] | None = None,
              metadata: dict | None = None, opset: int = OPSET) -> Path:
    """Write ``model`` to ``path`` (ONNX, float32, batch dim ``batch`` dynamic); returns the path.

    ``input_shape`` excludes the batch dim; it defaults to a Network's ``info.input_shape`` or the
    first Linear's ``in_features``. ``metadata`` values that are not strings are JSON-encoded.
    """
    module, shape = _module_and_shape(model, input_shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if any(t.is_floating_point() and t.dtype != torch.float32 for t in list(module.parameters()) + list(module.buffers())):
        module = copy.deepcopy(module).float()  # export float32 without changing the caller's model
    was_training = module.training
    module = module.eval()
    dummy = torch.zeros(1, *shape, dtype=torch.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                module(dummy)
                torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                                  do_constant_folding=True)
    except RuntimeError as e:
        raise ShapeMismatchError(f"cannot export model with input shape {shape}: {str(e).splitlines()[0]}") from None
    finally:
        module.train(was_training)
    if metadata:
        _add_metadata(path, metadata)
    return path


def _module_and_shape(model: nn.Module, input_shape) -> tuple[nn.Module, tuple[int, ...]]:
    """Unwrap a Network and resolve the input shape (without batch dim)."""
    info = getattr(model, "info", None)
    module = model.module if info is not None and isinstance(getattr(model, "module", None), nn.Module) else model
    if input_shape is None and info is not None:
        input_shape = tuple(info.input_shape)
    if input_shape is None:
        first = next((m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
        if not isinstance(first, nn.Linear):
            raise ShapeMismatchError("cannot infer the model's input shape for ONNX export; pass input_shape")
        input_shape = (first.in_features,)
    return module, tuple(int(d) for d in input_shape)


def _add_metadata(path: Path, metadata: dict) -> None:
    """Store key/value strings in the model's ``metadata_props``."""
    import onnx
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError / OSError; name the file instead
        raise ModelLoadError(f"cannot re-read exported ONNX file {path}: {e}") from None
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(k), v if isinstance(v, str) else json.dumps(v)
    onnx.save(proto, str(path))
