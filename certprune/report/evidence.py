"""PNG grid of adversarial examples: per falsified sample the clean input, the adversarial input
and their difference (scaled to the largest absolute change), for image inputs (C, H, W) with 1
or 3 channels, or (H, W)."""
from __future__ import annotations

import numpy as np

from certprune.report.plots import _png


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """(H, W), (1, H, W) or (3, H, W) with H, W >= 4."""
    if len(shape) == 2:
        return min(shape) >= 4
    return len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) >= 4


def _rgb(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = x if x.ndim == 2 else np.moveaxis(x, 0, -1)
    x = np.clip((x - lo) / (hi - lo), 0, 1)
    return x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x


def adversarial_grid(clean: list[np.ndarray], adv: list[np.ndarray], titles: list[str],
                     value_range: tuple[float, float] = (0.0, 1.0), max_rows: int = 16) -> bytes:
    """PNG bytes: one row per sample (first ``max_rows``): clean | adversarial | difference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = min(len(clean), max_rows)
    fig, axes = plt.subplots(n, 3, figsize=(4.5, 1.5 * n), squeeze=False)
    for r in range(n):
        d = adv[r] - clean[r]
        scale = float(np.abs(d).max()) or 1.0
        diff = d if d.ndim == 2 else np.moveaxis(d, 0, -1).mean(-1)
        gray = "gray" if clean[r].ndim == 2 or clean[r].shape[0] == 1 else None
        axes[r, 0].imshow(_rgb(clean[r], *value_range), cmap=gray, vmin=0, vmax=1)
        axes[r, 1].imshow(_rgb(adv[r], *value_range), cmap=gray, vmin=0, vmax=1)
        axes[r, 2].imshow(diff, cmap="seismic", vmin=-scale, vmax=scale)
        axes[r, 0].set_ylabel(titles[r], fontsize=7)
        axes[r, 2].set_title(f"max |d| {scale:.3g}", fontsize=6)
        for a in axes[r]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_title("clean", fontsize=8)
    axes[0, 1].set_title("adversarial", fontsize=8)
    return _png(fig)
