"""VNN-COMP result files: the one place where the words sat / unsat leave the solver adapters.

Format (VNN-COMP 2021-2024): the first line is ``unsat`` (property holds), ``sat`` (a
counterexample follows), ``timeout``, ``unknown`` or ``error``. For ``sat`` the witness follows as
one s-expression, one variable per line, inputs first in flat row-major (C) order, then outputs::

    sat
    ((X_0 0.1)
     (X_1 -0.25)
     (Y_0 3.5))

Values are written with ``repr`` of the float64 copy of the float32 numbers, so they round-trip
exactly to the values that were evaluated.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ("unsat", "sat", "timeout", "unknown", "error")


def format_result(word: str, x: np.ndarray | None = None, y: np.ndarray | None = None) -> str:
    """Text of a result file; ``x`` and ``y`` (any shape, flattened row-major) required for ``sat``."""
    if word not in WORDS:
        raise ValueError(f"not a VNN-COMP result word: {word!r}")
    if word != "sat":
        return word + "\n"
    if x is None or y is None:
        raise ValueError("a sat result needs the counterexample input and output")
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.asarray(x, dtype=np.float64).ravel())]
    pairs += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.asarray(y, dtype=np.float64).ravel())]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


def write_result(path: str | Path, word: str, x: np.ndarray | None = None, y: np.ndarray | None = None) -> Path:
    """Write a result file (parent folders created); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_result(word, x, y))
    return path


def parse_result(text: str) -> tuple[str, dict[str, float]]:
    """(word, {"X_0": v, ..., "Y_0": v, ...}) read back from a result file's text."""
    lines = text.strip().splitlines()
    if not lines:
        raise ValueError("empty result file")
    word = lines[0].strip().lower()
    values: dict[str, float] = {}
    body = " ".join(lines[1:]).replace("(", " ").replace(")", " ").split()
    for name, val in zip(body[0::2], body[1::2]):
        values[name] = float(val)
    return word, values
