"""MNIST test split (10,000 images) from the original IDX files under ``images/mnist_test``."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from certprune.datasets.paths import data_root, require_file
from certprune.errors import DatasetError

_IMAGES = "t10k-images-idx3-ubyte.gz"
_LABELS = "t10k-labels-idx1-ubyte.gz"


def _read_idx(path: Path, magic: int, offset: int) -> np.ndarray:
    raw = gzip.open(path).read()
    if int.from_bytes(raw[:4], "big") != magic:
        raise DatasetError(f"{path} is not an IDX file with magic {magic}")
    return np.frombuffer(raw, np.uint8, offset=offset)


def load_mnist(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: X float32 (10000, 1, 28, 28) scaled to [0, 1]; y int64 labels 0..9."""
    folder = data_root(data_dir) / "images" / "mnist_test"
    x = _read_idx(require_file(folder, _IMAGES), 2051, 16).reshape(-1, 1, 28, 28)
    y = _read_idx(require_file(folder, _LABELS), 2049, 8)
    if len(x) != len(y):
        raise DatasetError(f"MNIST images ({len(x)}) and labels ({len(y)}) differ in count")
    return (x.astype(np.float32) / 255.0), y.astype(np.int64)
