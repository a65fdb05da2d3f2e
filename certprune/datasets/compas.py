"""COMPAS recidivism as prepared by FairQuant (``compas.npy``: six arrays saved one after another).

The file holds X_train (4937x6), y_train, X_val (617), y_val, X_test (618), y_test, int64; the
80/10/10 split is FairQuant's (seed 42). ``load`` returns train = train + validation so that
``TabularData`` keeps two parts; use :func:`load_with_validation` for the three-way split.
Inputs: two_yr_recidivism, number_of_priors (0..38), age (1 if not below 25), race (0 white,
1 other), female, misdemeanor (lower case like every data set; FairQuant's capitalised
``Race``, ``Female``, ... are accepted as aliases by the schema's lookups). Label: ``score_factor`` (1 = high COMPAS risk score); the
favourable outcome for the defendant is 0.
"""
from __future__ import annotations

from pathlib import Path

from certprune.datasets.schema import Feature, TabularSchema

SCHEMA = TabularSchema(
    name="compas",
    features=(
        Feature("two_yr_recidivism", 0, 1, "binary", ("no", "yes")),
        Feature("number_of_priors", 0, 38, "integer"),
        Feature("age", 0, 1, "binary", ("<25", ">=25")),
        Feature("race", 0, 1, "binary", ("white", "non-white")),
        Feature("female", 0, 1, "binary", ("male", "female")),
        Feature("misdemeanor", 0, 1, "binary", ("no", "yes")),
    ),
    protected=("race", "female", "age"),
    target="score_factor",
    favourable_label="0 (low risk score)",
)


def _read(data_dir):
    import numpy as np

    from certprune.datasets.paths import data_root, require_file
    from certprune.errors import DatasetError

    path = require_file(data_root(data_dir), "fairness", "compas", "compas.npy")
    try:
        with open(path, "rb") as f:
            arrs = [np.load(f, allow_pickle=False) for _ in range(6)]
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{path}: expected six numpy arrays saved one after another ({e})") from None
    for i in (0, 2, 4):
        if arrs[i].ndim != 2 or arrs[i].shape[1] != SCHEMA.num_features or len(arrs[i + 1]) != len(arrs[i]):
            raise DatasetError(f"{path}: array {i} has shape {arrs[i].shape}, expected (N, {SCHEMA.num_features})")
    return [a.astype(np.int64) for a in arrs]


def load_with_validation(data_dir: str | Path | None = None):
    """``(X_train, y_train, X_val, y_val, X_test, y_test)`` as stored by FairQuant."""
    return tuple(_read(data_dir))


def load(data_dir: str | Path | None = None):
    """COMPAS as TabularData; training part = FairQuant's train + validation (see module doc)."""
    import numpy as np

    from certprune.datasets.tabular import TabularData

    X_tr, y_tr, X_va, y_va, X_te, y_te = _read(data_dir)
    return TabularData(np.concatenate([X_tr, X_va]), np.concatenate([y_tr, y_va]), X_te, y_te, SCHEMA)
