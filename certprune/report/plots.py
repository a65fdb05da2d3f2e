"""Matplotlib figures of an audit, returned as PNG bytes (Agg backend, no display needed)."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

COLORS = {"certified": "#2e7d32", "falsified": "#c62828", "undecided": "#9e9e9e"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return buf.getvalue()


def share_plot(summary: dict) -> bytes:
    """Horizontal bars: share of the individuals proven fair / unfair / undecided, and share of the
    domain per partition verdict."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    vs = list(COLORS)
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ind = summary["individual_share"]
    for row, (label, vals) in enumerate([("individuals", [ind["fair"], ind["unfair"], ind["undecided"]]),
                                         ("partitions", [summary["domain_share"][v] for v in vs])]):
        left = 0.0
        for v, w in zip(vs, vals):
            ax.barh(row, w, left=left, color=COLORS[v], label=v if row == 1 else None)
            left += w
    ax.set_yticks([0, 1], ["individuals (fair / unfair / undecided)", "domain by partition verdict"])
    ax.set_xlim(0, 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
    return _png(fig)


def pick_map_features(parts: pd.DataFrame, names: list[str]) -> tuple[int, int]:
    """The two features with the most distinct partition lower bounds (ties: model order)."""
    lo = np.array([json.loads(s) for s in parts["lo"]])
    distinct = [len(np.unique(lo[:, j])) for j in range(lo.shape[1])]
    order = sorted(range(len(names)), key=lambda j: (-distinct[j], j))
    return order[0], order[1] if len(order) > 1 else order[0]


def verdict_map(parts: pd.DataFrame, names: list[str], features: tuple[int, int] | None = None) -> bytes:
    """Grid over two features' partition chunks; each cell shows the share of its partitions that
    are falsified (red), undecided (grey) or certified (green), as stacked colour fractions."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fi, fj = features or pick_map_features(parts, names)
    lo = np.array([json.loads(s) for s in parts["lo"]])
    xi = np.unique(lo[:, fi], return_inverse=True)
    xj = np.unique(lo[:, fj], return_inverse=True)
    ni, nj = len(xi[0]), len(xj[0])
    rgb = np.zeros((nj, ni, 3))
    cnt = np.zeros((nj, ni))
    cols = {v: np.array(matplotlib.colors.to_rgb(c)) for v, c in COLORS.items()}
    for a, b, v in zip(xi[1], xj[1], parts["verdict"]):
        rgb[b, a] += cols[v]
        cnt[b, a] += 1
    rgb = np.where(cnt[..., None] > 0, rgb / np.maximum(cnt, 1)[..., None], 1.0)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.imshow(rgb, origin="lower", aspect="auto", interpolation="nearest",
              extent=(-0.5, ni - 0.5, -0.5, nj - 0.5))
    ax.set_xlabel(f"{names[fi]} (partition lower bound)")
    ax.set_ylabel(f"{names[fj]} (partition lower bound)")
    for axis, vals, n in ((ax.xaxis, xi[0], ni), (ax.yaxis, xj[0], nj)):
        step = max(1, n // 8)
        axis.set_ticks(range(0, n, step), [str(int(v)) for v in vals[::step]])
    handles = [matplotlib.patches.Patch(color=c, label=v) for v, c in COLORS.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False)
    ax.set_title("verdicts over partitions (colour = mix of verdicts in the cell)")
    return _png(fig)


def unfair_map(X: np.ndarray, unfair: np.ndarray, names: list[str], features: tuple[int, int], bins: int = 20) -> bytes:
    """Share of sampled individuals that are unfair (exact per-point check) per cell of a grid over
    two features (at most ``bins`` cells per axis; white = no sample)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fi, fj = features
    edges = []
    for f in (fi, fj):
        lo, hi = X[:, f].min(), X[:, f].max()
        edges.append(np.linspace(lo - 0.5, hi + 0.5, int(min(bins, hi - lo + 1)) + 1))
    tot, _, _ = np.histogram2d(X[:, fi], X[:, fj], bins=edges)
    bad, _, _ = np.histogram2d(X[unfair, fi], X[unfair, fj], bins=edges)
    share = np.where(tot > 0, bad / np.maximum(tot, 1), np.nan)
    fig, ax = plt.subplots(figsize=(6, 4))
    im = ax.imshow(share.T, origin="lower", aspect="auto", cmap="Reds", vmin=0, vmax=max(1e-9, np.nanmax(share)),
                   extent=(edges[0][0], edges[0][-1], edges[1][0], edges[1][-1]), interpolation="nearest")
    fig.colorbar(im, ax=ax, label="unfair share of sampled individuals")
    ax.set_xlabel(names[fi])
    ax.set_ylabel(names[fj])
    ax.set_title(f"unfair individuals by {names[fi]} and {names[fj]} ({len(X)} uniform samples)")
    return _png(fig)
