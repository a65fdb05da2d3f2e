"""CIFAR-10: the first 100 test images (ERAN's ``cifar10_test.csv`` under ``images/cifar10_test100``),
and the default CIFAR-10 model for certification: the OVAL21 "base" convnet of VNN-COMP 2021/22.

The default model is a public network, referenced by path in the shared data (not bundled):
``vnncomp/oval21/onnx/cifar_base_kw.onnx.gz`` (2 conv + 2 linear layers, ReLU, trained by the
Oxford OVAL group with the Kolter-Wong robust loss). It expects *normalised* inputs
``(x - OVAL21_MEAN[c]) / OVAL21_STD[c]`` with ``x`` in [0, 1]: the benchmark's VNN-LIB boxes have
width ``2 eps / 0.225`` per pixel, and with this normalisation the net classifies 73 of the 100
images correctly (8 without it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from certprune.datasets.paths import data_root, require_file
from certprune.errors import DatasetError

_CSV = ("images", "cifar10_test100", "cifar10_test.csv")
DEFAULT_MODEL = ("vnncomp", "oval21", "onnx", "cifar_base_kw.onnx.gz")
OVAL21_MEAN = (0.485, 0.456, 0.406)
OVAL21_STD = (0.225, 0.225, 0.225)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_cifar10(data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: X float32 (100, 3, 32, 32) in [0, 1] (channels R, G, B); y int64 labels 0..9."""
    path = require_file(data_root(data_dir), *_CSV)
    a = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    if a.shape[1] != 1 + 32 * 32 * 3 or a.min() < 0 or a[:, 1:].max() > 255 or a[:, 0].max() > 9:
        raise DatasetError(f"{path} is not a CIFAR-10 CSV (label, 3072 pixels 0..255 in H-W-C order)")
    x = a[:, 1:].reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2)
    return (x.astype(np.float32) / 255.0), a[:, 0].copy()


def default_model_path(data_dir: str | Path | None = None) -> Path:
    """Path of the OVAL21 base net in the shared data (DatasetError if it is not there)."""
    return require_file(data_root(data_dir), *DEFAULT_MODEL)
