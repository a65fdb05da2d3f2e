"""A user's own test set for ``certify`` / ``compare``, and the input convention it is read in.

File forms (:func:`load_data_file`):
- ``.npz`` with arrays ``X`` (N, ...) and ``y`` (N,);
- ``.npy`` holding X, with the labels in a second ``.npy`` given as ``labels`` (CLI ``--labels``);
- ``.csv`` with a header row: the label column (``label_column``, default ``label``) and the
  features in the remaining columns, in file order (for images: the model's input flattened in
  C order, e.g. channel, row, column).

Inputs are in *input units*: the units the data file holds and in which ``eps`` and the input
range (``--input-range LO,HI``, default 0,1) are stated. A normalisation ``(x - mean) / std`` the
model expects (``--mean``/``--std``, one value or one per channel) is put *inside* the model
(:func:`with_normalization`), so the L-inf ball ``|x' - x| <= eps`` clipped to the input range is
in input units, and a counterexample is an input in those units.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from certprune.errors import DatasetError, ShapeMismatchError


def load_data_file(path: str | Path, labels: str | Path | None = None,
                   label_column: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from an .npz, .npy (+ ``labels`` .npy) or .csv file (see module doc); X float32, y int64."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"data file not found: {p}")
    kind = p.suffix.lower()
    if labels is not None and kind != ".npy":
        raise DatasetError(f"--labels goes with an .npy data file, not {p.name}")
    if kind not in (".npz", ".npy", ".csv"):
        raise DatasetError(f"unknown data file type {p.name}: expected .npz (X, y), .npy with --labels, or .csv")
    import zipfile
    try:
        X, y = {".npz": lambda: _npz(p), ".npy": lambda: _npy_pair(p, labels), ".csv": lambda: _csv(p, label_column)}[kind]()
    except (ValueError, EOFError, zipfile.BadZipFile) as e:  # numpy: object arrays (pickles), corrupt or truncated file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"{p.name} is not a readable {kind} data file: {first}") from None
    return _checked(X, y, p)


def _npz(p: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(p, allow_pickle=False) as d:
        missing = [k for k in ("X", "y") if k not in d.files]
        if missing:
            raise DatasetError(f"{p.name} lacks array(s) {', '.join(missing)}; it has {', '.join(d.files) or 'none'}")
        return d["X"], d["y"]


def _npy_pair(p: Path, labels) -> tuple[np.ndarray, np.ndarray]:
    if labels is None:
        raise DatasetError(f"{p.name} holds only the inputs: give the labels with --labels y.npy")
    lp = Path(labels)
    if not lp.is_file():
        raise DatasetError(f"labels file not found: {lp}")
    return np.load(p, allow_pickle=False), np.load(lp, allow_pickle=False)


def _csv(p: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(f"{p.name} is not a readable CSV: {str(e).splitlines()[0]}") from None
    if label_column not in df.columns:
        raise DatasetError(f"{p.name} has no label column {label_column!r} (columns: "
                           f"{', '.join(map(str, df.columns[:8]))}{', ...' if len(df.columns) > 8 else ''}); "
                           "name it with --label-column")
    feats = df.drop(columns=[label_column])
    bad = [str(c) for c in feats.columns if not pd.api.types.is_numeric_dtype(feats[c])]
    if bad:
        raise DatasetError(f"{p.name}: non-numeric feature column(s) {', '.join(bad[:5])}")
    return feats.to_numpy(np.float64), df[label_column].to_numpy()


def _checked(X, y, p: Path) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y).ravel()
    if X.ndim < 2 or len(X) == 0:
        raise DatasetError(f"{p.name}: X must have shape (N, ...) with N >= 1, got {X.shape}")
    if len(X) != len(y):
        raise DatasetError(f"{p.name}: {len(X)} inputs but {len(y)} labels")
    if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X.astype(np.float64)).all():
        raise DatasetError(f"{p.name}: X must be finite numbers")
    if not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y)) or (len(y) and y.min() < 0):
        raise DatasetError(f"{p.name}: labels must be integers >= 0")
    return X.astype(np.float32), y.astype(np.int64)


def fit_to_model(X: np.ndarray, input_shape: tuple[int, ...], source: str = "data") -> np.ndarray:
    """X reshaped to (N, *input_shape) when each row holds exactly the model's inputs (C order),
    else a ShapeMismatchError naming both shapes."""
    shape = tuple(int(s) for s in input_shape)
    if tuple(X.shape[1:]) == shape:
        return X
    if int(np.prod(X.shape[1:])) == int(np.prod(shape)):
        return X.reshape(len(X), *shape)
    raise ShapeMismatchError(f"{source} inputs have shape {tuple(X.shape[1:])} ({int(np.prod(X.shape[1:]))} values) "
                             f"but the model expects {shape} ({int(np.prod(shape))} values)")


def check_range(X: np.ndarray, lo: float, hi: float, source: str = "data") -> None:
    """DatasetError when some input lies outside the stated input range [lo, hi]."""
    if not lo < hi:
        raise DatasetError(f"--input-range needs LO < HI, got {lo:g},{hi:g}")
    if X.size and (X.min() < lo or X.max() > hi):
        raise DatasetError(f"{source} inputs span [{X.min():g}, {X.max():g}], outside the input range "
                           f"[{lo:g}, {hi:g}]; state it with --input-range LO,HI")


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """``"0.5,0.25"`` -> (0.5, 0.25); DatasetError naming ``option`` on anything else."""
    try:
        vals = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise DatasetError(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not all(np.isfinite(vals)):
        raise DatasetError(f"{option} values must be finite, got {text!r}")
    return vals


class Normalize(nn.Module):
    """``(x - mean) / std`` with per-channel (dim 1) or scalar constants; affine for the bound engine."""

    is_affine = True

    def __init__(self, mean, std, input_shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", _broadcast(mean, input_shape, "--mean"))
        self.register_buffer("std", _broadcast(std, input_shape, "--std"))
        if (self.std <= 0).any():
            raise DatasetError("--std values must be > 0")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def graph_ops(self, shape: tuple[int, ...]) -> list:
        """The graph IR of this module (``graph.build``): ``x - mean`` (exact constants), then
        ``x * (1 / std)`` whose rounded reciprocal carries its error bound."""
        from certprune.graph import ops_linear as L
        return [L.Scale(None, -self.mean.double()), L.reciprocal_scale(self.std.double())]


def _broadcast(vals, input_shape: tuple[int, ...], option: str) -> torch.Tensor:
    v = np.asarray(vals, dtype=np.float32).ravel()
    if v.size == 1:
        return torch.tensor(v.reshape(()))
    if len(input_shape) >= 2 and v.size == input_shape[0]:
        return torch.from_numpy(v.reshape(-1, *[1] * (len(input_shape) - 1)).copy())
    if v.size == int(np.prod(input_shape)):
        return torch.from_numpy(v.reshape(input_shape).copy())
    raise ShapeMismatchError(f"{option} has {v.size} values; the model input {tuple(input_shape)} needs 1, one per "
                             f"channel ({input_shape[0]}) or one per input")


def with_normalization(net, mean=None, std=None):
    """The Network ``x -> net((x - mean) / std)`` (``net`` itself when both are None); its hash
    covers the model's and the normalisation's, so stores keep runs with other constants apart."""
    from certprune.network import ModelInfo, Network
    if mean is None and std is None:
        return net
    shape = tuple(net.info.input_shape)
    norm = Normalize(0.0 if mean is None else mean, 1.0 if std is None else std, shape)
    digest = hashlib.sha256(json.dumps({"model": net.info.sha256, "mean": norm.mean.flatten().tolist(),
                                        "std": norm.std.flatten().tolist()}).encode()).hexdigest()
    info = ModelInfo(shape, net.info.num_outputs, sha256=digest if net.info.sha256 else "",
                     source_format=net.info.source_format, path=net.info.path,
                     extra={**net.info.extra, "normalization": {"mean": norm.mean.flatten().tolist(),
                                                                "std": norm.std.flatten().tolist()}})
    return Network(nn.Sequential(norm, net.module), info)
