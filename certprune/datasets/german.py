"""Statlog German credit ("GC" models), encoded exactly as Fairify's ``load_german``.

Preprocessing: age -> 1 if age >= 26 else 0; sex from personal status (A91/A93/A94 -> 1 male,
A92/A95 -> 0), personal status dropped; credit history, savings, employment and checking status
grouped (AIF360's grouping, as in Fairify's ``german_custom_preprocessing``); the categorical
columns label-encoded (sorted raw strings); label 1 = good credit; 85/15 split, seed 42.
Outside the Fairify domain: ``property`` has 4 categories in the data (code 3 = A124, unknown or
no property, 154 rows) but Fairify verifies ``property`` in [0, 2]; rows are kept unchanged
(``SCHEMA.outside(X)`` flags them) so model accuracy matches Fairify's.
"""
from __future__ import annotations

from pathlib import Path

from certprune.datasets.schema import Feature, TabularSchema

STATUS = ("200+ DM", "<200 DM", "no checking account")            # raw groups '200+', '<200', 'None'
CREDIT_HISTORY = ("Delay", "None/Paid", "Other")
PURPOSE = ("A40 car (new)", "A41 car (used)", "A410 others", "A42 furniture/equipment", "A43 radio/television",
           "A44 domestic appliances", "A45 repairs", "A46 education", "A48 retraining", "A49 business")
SAVINGS = ("500+ DM", "<500 DM", "Unknown/None")
EMPLOYMENT = ("1-4 years", "4+ years", "Unemployed")
OTHER_DEBTORS = ("none", "co-applicant", "guarantor")
PROPERTY = ("real estate", "savings agreement/life insurance", "car or other")  # A124 (code 3) outside
INSTALLMENT = ("bank", "stores", "none")
HOUSING = ("rent", "own", "for free")
SKILL = ("unemployed/unskilled non-resident", "unskilled resident", "skilled employee/official",
         "management/self-employed/highly qualified")

SCHEMA = TabularSchema(
    name="german",
    features=(
        Feature("status", 0, 2, "categorical", STATUS),
        Feature("month", 0, 80, "integer"),
        Feature("credit_history", 0, 2, "categorical", CREDIT_HISTORY),
        Feature("purpose", 0, 9, "categorical", PURPOSE),
        Feature("credit_amount", 0, 20000, "integer"),
        Feature("savings", 0, 2, "categorical", SAVINGS),
        Feature("employment", 0, 2, "categorical", EMPLOYMENT),
        Feature("investment_as_income_percentage", 1, 4, "integer"),
        Feature("other_debtors", 0, 2, "categorical", OTHER_DEBTORS),
        Feature("residence_since", 1, 4, "integer"),
        Feature("property", 0, 2, "categorical", PROPERTY),
        Feature("age", 0, 1, "binary", ("<26", ">=26")),
        Feature("installment_plans", 0, 2, "categorical", INSTALLMENT),
        Feature("housing", 0, 2, "categorical", HOUSING),
        Feature("number_of_credits", 1, 4, "integer"),
        Feature("skill_level", 0, 3, "categorical", SKILL),
        Feature("people_liable_for", 1, 2, "integer"),
        Feature("telephone", 0, 1, "binary", ("none", "yes")),
        Feature("foreign_worker", 0, 1, "binary", ("yes", "no")),
        Feature("sex", 0, 1, "binary", ("female", "male")),
    ),
    protected=("age", "sex"),
    target="credit",
    favourable_label="good credit",
)

_COLUMNS = ["status", "month", "credit_history", "purpose", "credit_amount", "savings", "employment",
            "investment_as_income_percentage", "personal_status", "other_debtors", "residence_since",
            "property", "age", "installment_plans", "housing", "number_of_credits", "skill_level",
            "people_liable_for", "telephone", "foreign_worker", "credit"]
# Fairify's grouping of raw codes; the group names sort in the order of the codes above.
_GROUPS = {
    "status": {"A11": "<200", "A12": "<200", "A13": "200+", "A14": "None"},
    "credit_history": {"A30": "None/Paid", "A31": "None/Paid", "A32": "None/Paid", "A33": "Delay", "A34": "Other"},
    "savings": {"A61": "<500", "A62": "<500", "A63": "500+", "A64": "500+", "A65": "Unknown/None"},
    "employment": {"A71": "Unemployed", "A72": "1-4 years", "A73": "1-4 years", "A74": "4+ years",
                   "A75": "4+ years"},
}
_RAW_CODES = {
    "status": ("200+", "<200", "None"),
    "credit_history": ("Delay", "None/Paid", "Other"),
    "purpose": ("A40", "A41", "A410", "A42", "A43", "A44", "A45", "A46", "A48", "A49"),
    "savings": ("500+", "<500", "Unknown/None"),
    "employment": ("1-4 years", "4+ years", "Unemployed"),
    "other_debtors": ("A101", "A102", "A103"),
    "property": ("A121", "A122", "A123", "A124"),
    "installment_plans": ("A141", "A142", "A143"),
    "housing": ("A151", "A152", "A153"),
    "skill_level": ("A171", "A172", "A173", "A174"),
    "telephone": ("A191", "A192"),
    "foreign_worker": ("A201", "A202"),
}
_SEX = {"A91": 1, "A93": 1, "A94": 1, "A92": 0, "A95": 0}


def load(data_dir: str | Path | None = None):
    """German credit as TabularData (see module doc)."""
    import numpy as np
    import pandas as pd

    from certprune.datasets._encode import encode_categories, read_csv, split_8515
    from certprune.datasets.paths import data_root, require_file
    from certprune.errors import DatasetError

    path = require_file(data_root(data_dir), "fairness", "german", "german.data")
    df = read_csv(path, "german", sep=" ", header=None, names=_COLUMNS)
    if df[_COLUMNS[-1]].isna().any() or not pd.api.types.is_numeric_dtype(df["age"]):
        raise DatasetError(f"german: {path} is not the 21-column space-separated german.data")
    df["age"] = (df["age"] >= 26).astype(np.int64)
    if not set(df["personal_status"]).issubset(_SEX):
        raise DatasetError(f"{path}: unknown personal-status codes {sorted(set(df['personal_status']) - set(_SEX))}")
    df["sex"] = df["personal_status"].map(_SEX)
    for col, mapping in _GROUPS.items():
        df[col] = df[col].map(mapping)
    df = df.drop(columns=["personal_status"])
    encode_categories(df, _RAW_CODES, "german")
    y = df["credit"].map({1: 1, 2: 0}).to_numpy(np.int64)
    X = df[list(SCHEMA.names)].to_numpy(np.int64)
    return split_8515(X, y, SCHEMA)
