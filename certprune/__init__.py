"""certprune: prune ReLU networks for verifiability, then certify robustness and fairness.

Public API (imported lazily so that ``import certprune`` and the CLI start fast):
``load_model``, ``compute_bounds``, ``neuron_stability``, ``verify``, ``certify_robustness``,
``audit_fairness``, ``prune``, plus the spec and result types.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_model": "certprune.network",
    "Network": "certprune.network",
    "ModelInfo": "certprune.network",
    "compute_bounds": "certprune.verifiers.bounds",
    "neuron_stability": "certprune.verifiers.bounds",
    "Bounds": "certprune.verifiers.bounds",
    "verify": "certprune.verifiers.verify",
    "VerifyConfig": "certprune.verifiers.verify",
    "certify_robustness": "certprune.verifiers.robustness",
    "audit_fairness": "certprune.verifiers.fairness",
    "FairnessSpec": "certprune.fairness_spec",
    "prune": "certprune.pruning",
    "InputRegion": "certprune.specs",
    "Property": "certprune.specs",
    "LinearConstraints": "certprune.specs",
    "RobustnessSpec": "certprune.specs",
    "Verdict": "certprune.results",
    "Result": "certprune.results",
    "read_vnnlib": "certprune.vnnlib",
    "write_vnnlib": "certprune.vnnlib",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'certprune' has no attribute {name!r}")
