"""Adult census income ("AC" models), encoded exactly as Fairify's ``load_adult_ac1``.

Preprocessing: ``adult.test`` (first line skipped) is put *before* ``adult.data``, ``fnlwgt`` is
dropped, rows with a ``?`` are dropped (45,222 remain), categorical columns are label-encoded
(sorted raw strings -> 0, 1, ...), capital-gain/-loss go into 20 equal-width bins over the data
range (sklearn ``KBinsDiscretizer(strategy='uniform')``), then an 85/15 split with
``train_test_split(random_state=42)``. Label 1 = income ``>50K``. No value falls outside the
Fairify domain (age 17..90, hours 1..99).
"""
from __future__ import annotations

from pathlib import Path

from certprune.datasets.schema import Feature, TabularSchema

WORKCLASS = ("Federal-gov", "Local-gov", "Private", "Self-emp-inc", "Self-emp-not-inc", "State-gov", "Without-pay")
EDUCATION = ("10th", "11th", "12th", "1st-4th", "5th-6th", "7th-8th", "9th", "Assoc-acdm", "Assoc-voc",
             "Bachelors", "Doctorate", "HS-grad", "Masters", "Preschool", "Prof-school", "Some-college")
MARITAL = ("Divorced", "Married-AF-spouse", "Married-civ-spouse", "Married-spouse-absent", "Never-married",
           "Separated", "Widowed")
OCCUPATION = ("Adm-clerical", "Armed-Forces", "Craft-repair", "Exec-managerial", "Farming-fishing",
              "Handlers-cleaners", "Machine-op-inspct", "Other-service", "Priv-house-serv", "Prof-specialty",
              "Protective-serv", "Sales", "Tech-support", "Transport-moving")
RELATIONSHIP = ("Husband", "Not-in-family", "Other-relative", "Own-child", "Unmarried", "Wife")
RACE = ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White")
SEX = ("Female", "Male")
COUNTRY = ("Cambodia", "Canada", "China", "Columbia", "Cuba", "Dominican-Republic", "Ecuador", "El-Salvador",
           "England", "France", "Germany", "Greece", "Guatemala", "Haiti", "Holand-Netherlands", "Honduras", "Hong",
           "Hungary", "India", "Iran", "Ireland", "Italy", "Jamaica", "Japan", "Laos", "Mexico", "Nicaragua",
           "Outlying-US(Guam-USVI-etc)", "Peru", "Philippines", "Poland", "Portugal", "Puerto-Rico", "Scotland",
           "South", "Taiwan", "Thailand", "Trinadad&Tobago", "United-States", "Vietnam", "Yugoslavia")

SCHEMA = TabularSchema(
    name="adult",
    features=(
        Feature("age", 10, 100, "integer"),
        Feature("workclass", 0, 6, "categorical", WORKCLASS),
        Feature("education", 0, 15, "categorical", EDUCATION),
        Feature("education-num", 1, 16, "integer"),
        Feature("marital-status", 0, 6, "categorical", MARITAL),
        Feature("occupation", 0, 13, "categorical", OCCUPATION),
        Feature("relationship", 0, 5, "categorical", RELATIONSHIP),
        Feature("race", 0, 4, "categorical", RACE),
        Feature("sex", 0, 1, "binary", SEX),
        Feature("capital-gain", 0, 19, "integer"),   # equal-width bin index (width 4999.95)
        Feature("capital-loss", 0, 19, "integer"),   # equal-width bin index (width 217.8)
        Feature("hours-per-week", 1, 100, "integer"),
        Feature("native-country", 0, 40, "categorical", COUNTRY),
    ),
    protected=("race", "sex"),
    target="income-per-year",
    favourable_label=">50K",
)

_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
            "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
            "income-per-year"]
_CATEGORICAL = {"workclass": WORKCLASS, "education": EDUCATION, "marital-status": MARITAL,
                "occupation": OCCUPATION, "relationship": RELATIONSHIP, "race": RACE, "sex": SEX,
                "native-country": COUNTRY}


def load(data_dir: str | Path | None = None):
    """Adult as TabularData (see module doc)."""
    import numpy as np
    import pandas as pd
    from sklearn.preprocessing import KBinsDiscretizer

    from certprune.datasets._encode import encode_categories, read_csv, require_rows, split_8515
    from certprune.datasets.paths import data_root, require_file

    root = data_root(data_dir)
    train_f = require_file(root, "fairness", "adult", "adult.data")
    test_f = require_file(root, "fairness", "adult", "adult.test")
    kw = dict(names=_COLUMNS, skipinitialspace=True, na_values=["?"])
    train = read_csv(train_f, "adult", header=None, **kw)
    test = read_csv(test_f, "adult", header=0, **kw)   # header=0: the first line is not data
    df = pd.concat([test, train], ignore_index=True).drop(columns=["fnlwgt"]).dropna()
    require_rows(df, train_f, "adult", 45222)
    encode_categories(df, _CATEGORICAL, "adult")
    for col in ("capital-gain", "capital-loss"):
        bins = KBinsDiscretizer(n_bins=20, encode="ordinal", strategy="uniform")
        df[col] = bins.fit_transform(df[[col]].astype(np.float64)).ravel()
    y = df["income-per-year"].isin([">50K", ">50K."]).to_numpy(np.int64)
    X = _numeric(df[list(SCHEMA.names)], train_f).round().astype(np.int64)
    return split_8515(X, y, SCHEMA)


def _numeric(df, path):
    """Float64 matrix of the (already encoded) columns; DatasetError on non-numeric entries."""
    import numpy as np
    import pandas as pd

    from certprune.errors import DatasetError
    num = df.apply(pd.to_numeric, errors="coerce")
    if num.isna().any().any():
        col = num.columns[num.isna().any()].tolist()
        raise DatasetError(f"adult: non-numeric values in column(s) {col} of {path}")
    return num.to_numpy(np.float64)
