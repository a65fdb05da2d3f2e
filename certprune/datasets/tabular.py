"""Registry of the tabular data sets: ``load_tabular(name)`` and ``get_schema(name)``.

Conventions: features are int64 in schema (model input) order, labels are 0/1 with 1 the
favourable outcome as each data set defines it (see ``TabularSchema.favourable_label``).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np

from certprune.datasets.schema import TabularSchema
from certprune.errors import DatasetError

TABULAR_NAMES = ("adult", "german", "bank", "compas")


@dataclass(frozen=True, eq=False)
class TabularData:
    """Train/test split: X int64 (N, num_features) in schema order, y int64 (N,) in {0, 1}."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    schema: TabularSchema


def _module(name: str):
    key = str(name).strip().lower()
    if key not in TABULAR_NAMES:
        raise DatasetError(f"unknown tabular data set {name!r}; known: {', '.join(TABULAR_NAMES)}")
    return import_module(f"certprune.datasets.{key}")


def get_schema(name: str) -> TabularSchema:
    """Feature schema (verification domain, labels, protected attributes) of data set ``name``."""
    return _module(name).SCHEMA


def load_tabular(name: str, data_dir: str | Path | None = None) -> TabularData:
    """Load and encode data set ``name`` from the data root (DatasetError naming a missing file)."""
    return _module(name).load(data_dir)
