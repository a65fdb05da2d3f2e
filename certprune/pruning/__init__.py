"""Pruning: criteria -> masks (unstructured, N:M) or physical removal of neurons/channels ->
fine-tuning, recorded in a replayable manifest. Entry point: :func:`prune` (imported lazily)."""
from __future__ import annotations

import importlib

_LAZY = {
    "prune": "certprune.pruning.api",
    "PruneOptions": "certprune.pruning.api",
    "Manifest": "certprune.pruning.manifest",
    "apply_manifest": "certprune.pruning.manifest",
    "manifest_path": "certprune.pruning.manifest",
    "save_pruned": "certprune.pruning.export",
    "stability_loss": "certprune.pruning.stability",
    "stability_scores": "certprune.pruning.stability",
    "pruning_metrics": "certprune.pruning.metrics",
    "remove_units": "certprune.pruning.structural",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'certprune.pruning' has no attribute {name!r}")
