"""scikit-learn's 8x8 digits (1,797 images, ships with scikit-learn, no download)."""
from __future__ import annotations

import numpy as np


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: X float32 (1797, 1, 8, 8) scaled to [0, 1] (pixel values 0..16 / 16); y int64."""
    from sklearn.datasets import load_digits as _sk

    d = _sk()
    return (d.images.astype(np.float32) / 16.0)[:, None], d.target.astype(np.int64)
