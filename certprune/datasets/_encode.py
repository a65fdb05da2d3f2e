"""Shared encoding steps of the Fairify loaders (label encoding, the 85/15 seed-42 split)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from certprune.errors import DatasetError


def read_csv(path, dataset: str, **kw):
    """``pandas.read_csv`` whose parse failures become a DatasetError naming the file."""
    import pandas as pd
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise DatasetError(f"{dataset}: cannot parse {path}: {str(e).splitlines()[0]}") from None


def check_columns(df, columns: Sequence[str], path, dataset: str) -> None:
    """DatasetError when expected columns are missing."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"{dataset}: {path} lacks column(s) {missing}")


def require_rows(df, path, dataset: str, expected: int):
    """DatasetError when no complete row is left (the file is not the expected one)."""
    if len(df) == 0:
        raise DatasetError(f"{dataset}: no complete rows in {path} (expected {expected:,})")
    return df


def encode_categories(df, categories: Mapping[str, Sequence[str]], dataset: str) -> None:
    """Replace each categorical column in place by the code of its value in the sorted label
    list, which is what sklearn's LabelEncoder yields when every label occurs in the data."""
    for col, labels in categories.items():
        codes = {lab: i for i, lab in enumerate(labels)}
        unknown = sorted(map(str, set(df[col].unique()) - set(codes)))
        if unknown:
            raise DatasetError(f"{dataset}: column {col!r} has values the schema does not know: {unknown[:5]}")
        df[col] = df[col].map(codes).astype(np.int64)


def split_8515(X: np.ndarray, y: np.ndarray, schema):
    """Fairify's split: ``train_test_split(test_size=0.15, random_state=42)`` on rows in order."""
    from sklearn.model_selection import train_test_split

    from certprune.datasets.tabular import TabularData

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.15, random_state=42)
    return TabularData(X_tr, y_tr, X_te, y_te, schema)
