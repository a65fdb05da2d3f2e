"""Save a pruned model as ONNX with its manifest next to it (and inside its metadata)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from certprune.pruning.manifest import Manifest, manifest_path


def save_pruned(model: nn.Module, manifest: Manifest, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (ONNX) and ``NAME.manifest.json`` beside it; returns both paths."""
    from certprune.io.onnx_export import save_onnx

    onnx_path = save_onnx(model, path, tuple(manifest.input_shape),
                          metadata={"certprune_pruning_manifest": manifest.to_json()})
    return Path(onnx_path), manifest.save(manifest_path(path))
