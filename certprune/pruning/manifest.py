"""The pruning manifest: what was removed, by which criterion, at which step; JSON, replayable.

Unit steps store, per layer name, the ``kept`` and ``removed`` unit indices *of the model as it
was at that step*; mask steps store the keep-mask as packed bits (base64, row-major). Replaying
(:func:`apply_manifest`) redoes the removals and masks in order; it reproduces the pruned
architecture and sparsity pattern, and the exact pruned model when no fine-tuning happened.
"""
from __future__ import annotations

import base64
import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from certprune.errors import ConfigError

VERSION = 1


@dataclass
class PruneStep:
    """One pruning step: ``units[layer] = {"kept": [...], "removed": [...]}`` or
    ``masks[layer] = {"shape": [...], "keep_bits": base64}``."""

    step: int
    criterion: str
    granularity: str
    amount: float
    units: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    masks: dict[str, dict] = field(default_factory=dict)


@dataclass
class Manifest:
    """Everything needed to replay a pruning run on the original model."""

    method: str
    granularity: str
    amount: float
    input_shape: list[int]
    seed: int = 0
    epsilon: float | None = None
    config: dict = field(default_factory=dict)
    steps: list[PruneStep] = field(default_factory=list)
    version: int = VERSION

    def to_json(self) -> str:
        """JSON text (stable key order)."""
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        """Parse JSON text; ConfigError if it is not a certprune manifest."""
        try:
            d = json.loads(text)
            steps = [PruneStep(**s) for s in d.pop("steps")]
            return cls(steps=steps, **d)
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"not a certprune pruning manifest: {e}") from None

    def save(self, path: str | Path) -> Path:
        """Write the JSON to ``path``."""
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        """Read a manifest written by :meth:`save`."""
        return cls.from_json(Path(path).read_text())

    def removed_units(self) -> int:
        """Total number of units removed over all steps."""
        return sum(len(v["removed"]) for s in self.steps for v in s.units.values())


def manifest_path(onnx_path: str | Path) -> Path:
    """Where the manifest lives next to an exported model: ``NAME.onnx`` -> ``NAME.manifest.json``."""
    p = Path(onnx_path)
    stem = p.name[:-5] if p.name.endswith(".onnx") else p.name
    return p.with_name(stem + ".manifest.json")


def encode_mask(mask: torch.Tensor) -> dict:
    """Keep-mask -> {"shape", "keep_bits"} (numpy packbits, base64)."""
    bits = np.packbits(mask.detach().cpu().numpy().astype(bool).reshape(-1))
    return {"shape": list(mask.shape), "keep_bits": base64.b64encode(bits.tobytes()).decode("ascii")}


def decode_mask(entry: dict) -> torch.Tensor:
    """Inverse of :func:`encode_mask`."""
    n = int(np.prod(entry["shape"]))
    bits = np.unpackbits(np.frombuffer(base64.b64decode(entry["keep_bits"]), np.uint8))[:n]
    return torch.from_numpy(bits.astype(bool)).reshape(entry["shape"])


def unit_entry(removed: list[int], width: int) -> dict[str, list[int]]:
    """{"kept": ..., "removed": ...} for a layer of ``width`` units."""
    gone = set(int(i) for i in removed)
    return {"kept": [i for i in range(width) if i not in gone], "removed": sorted(gone)}


def apply_manifest(model: nn.Module, manifest: Manifest) -> nn.Module:
    """A pruned copy of ``model`` (a module or Network): every step of ``manifest`` replayed."""
    from certprune.pruning.api import rewrap
    from certprune.pruning.layers import base_module
    from certprune.pruning.masks import apply_masks
    from certprune.pruning.structural import remove_units

    work = copy.deepcopy(base_module(model)).eval()
    example = torch.zeros(1, *manifest.input_shape)
    for step in manifest.steps:
        if step.units:
            remove_units(work, {k: v["removed"] for k, v in step.units.items()}, example)
        if step.masks:
            apply_masks(dict(work.named_modules()), {k: decode_mask(v) for k, v in step.masks.items()})
    return rewrap(model, work)
