"""Bank marketing ("BM" models), encoded exactly as Fairify's ``load_bank``.

Preprocessing: ``unknown`` is missing and rows with any missing value are dropped (30,488
remain); age -> 1 if age >= 25; the 10 categorical columns label-encoded (sorted raw strings);
16 inputs in the order below (the four economic indicators other than emp.var.rate dropped);
everything rounded to integers (``DataFrame.round(0)``: half to even; emp.var.rate -3.4 -> -3);
label 1 = subscribed (``y = yes``); 85/15 split, seed 42. The data never leaves the Fairify
domain (campaign <= 43, duration <= 4918); month codes 10, 11 and day codes 5, 6 are in the
domain but never occur (the data has 10 months, 5 week days).
"""
from __future__ import annotations

from pathlib import Path

from certprune.datasets.schema import Feature, TabularSchema

JOB = ("admin.", "blue-collar", "entrepreneur", "housemaid", "management", "retired", "self-employed",
       "services", "student", "technician", "unemployed")
MARITAL = ("divorced", "married", "single")
EDUCATION = ("basic.4y", "basic.6y", "basic.9y", "high.school", "illiterate", "professional.course",
             "university.degree")
NO_YES = ("no", "yes")
CONTACT = ("cellular", "telephone")
MONTH = ("apr", "aug", "dec", "jul", "jun", "mar", "may", "nov", "oct", "sep")
DAY = ("fri", "mon", "thu", "tue", "wed")
POUTCOME = ("failure", "nonexistent", "success")

SCHEMA = TabularSchema(
    name="bank",
    features=(
        Feature("age", 0, 1, "binary", ("<25", ">=25")),
        Feature("job", 0, 10, "categorical", JOB),
        Feature("marital", 0, 2, "categorical", MARITAL),
        Feature("education", 0, 6, "categorical", EDUCATION),
        Feature("default", 0, 1, "binary", NO_YES),
        Feature("housing", 0, 1, "binary", NO_YES),
        Feature("loan", 0, 1, "binary", NO_YES),
        Feature("contact", 0, 1, "binary", CONTACT),
        Feature("month", 0, 11, "categorical", MONTH),
        Feature("day_of_week", 0, 6, "categorical", DAY),
        Feature("duration", 0, 5000, "integer"),
        Feature("emp.var.rate", -3, 1, "integer"),
        Feature("campaign", 1, 50, "integer"),
        Feature("pdays", 0, 999, "integer"),
        Feature("previous", 0, 7, "integer"),
        Feature("poutcome", 0, 2, "categorical", POUTCOME),
    ),
    protected=("age",),
    target="y",
    favourable_label="yes",
)

_CATEGORICAL = {"job": JOB, "marital": MARITAL, "education": EDUCATION, "default": NO_YES, "housing": NO_YES,
                "loan": NO_YES, "contact": CONTACT, "month": MONTH, "day_of_week": DAY, "poutcome": POUTCOME}


def load(data_dir: str | Path | None = None):
    """Bank marketing as TabularData (see module doc)."""
    import numpy as np

    from certprune.datasets._encode import check_columns, encode_categories, read_csv, require_rows, split_8515
    from certprune.datasets.paths import data_root, require_file

    path = require_file(data_root(data_dir), "fairness", "bank", "bank-additional-full.csv")
    df = read_csv(path, "bank", sep=";", na_values=["unknown"])
    check_columns(df, list(SCHEMA.names) + ["y"], path, "bank")
    df = require_rows(df.dropna(), path, "bank", 30488)
    df["age"] = (df["age"] >= 25).astype(np.int64)
    encode_categories(df, _CATEGORICAL, "bank")
    y = (df["y"] == "yes").to_numpy(np.int64)
    X = np.round(df[list(SCHEMA.names)].to_numpy(np.float64)).astype(np.int64)
    return split_8515(X, y, SCHEMA)
