"""Tabular loaders and schemas: Fairify's encoding (checked through the Fairify models' own test
accuracy), schema domains and decoding, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certprune.datasets import TABULAR_NAMES, Feature, TabularSchema, get_schema, load_tabular
from certprune.errors import DatasetError, ShapeMismatchError

# model -> test accuracy published in $CERTPRUNE_DATA/fairness/fairify_models/README.md
FAIRIFY_ACC = {
    "AC-1": 0.852, "AC-2": 0.847, "AC-3": 0.845, "AC-4": 0.849, "AC-5": 0.852, "AC-6": 0.848, "AC-7": 0.849,
    "AC-8": 0.828, "AC-9": 0.832, "AC-10": 0.845, "AC-11": 0.810, "AC-12": 0.842,
    "BM-1": 0.892, "BM-2": 0.888, "BM-3": 0.882, "BM-4": 0.895, "BM-5": 0.889, "BM-6": 0.889, "BM-7": 0.887,
    "BM-8": 0.892, "GC-1": 0.727, "GC-2": 0.747, "GC-3": 0.707, "GC-4": 0.713, "GC-5": 0.693}
DATASET = {"AC": "adult", "GC": "german", "BM": "bank"}


@pytest.fixture(scope="module")
def loaded():
    from conftest import data_dir
    if not (data_dir() / "fairness").is_dir():
        pytest.skip("fairness data not present")
    return {name: load_tabular(name, data_dir()) for name in TABULAR_NAMES}


@pytest.mark.parametrize("model_name", sorted(FAIRIFY_ACC))
def test_fairify_models_reach_their_published_accuracy_on_our_encoding(loaded, shared_data, model_name):
    from certprune.network import load_model
    expected = FAIRIFY_ACC[model_name]
    data = loaded[DATASET[model_name[:2]]]
    model = load_model(shared_data / "fairness" / "fairify_models" / f"{model_name}.h5")
    data.schema.validate_model_inputs(model.info.input_shape[0])
    with torch.no_grad():
        logits = model(torch.as_tensor(data.X_test, dtype=torch.float32)).numpy().ravel()
    acc = float(np.mean((logits > 0) == data.y_test))
    # the published figures are rounded to 3 decimals: agreement within 0.001 means the same encoding
    assert abs(acc - expected) <= 0.001, f"{model_name}: accuracy {acc:.4f}, Fairify reports {expected}"


@pytest.mark.parametrize("name,rows,n_feat,n_test", [("adult", 45222, 13, 6784), ("german", 1000, 20, 150),
                                                     ("bank", 30488, 16, 4574), ("compas", 6172, 6, 618)])
def test_shapes_types_and_labels(loaded, name, rows, n_feat, n_test):
    d = loaded[name]
    assert len(d.X_train) + len(d.X_test) == rows and len(d.X_test) == n_test
    for X, y in ((d.X_train, d.y_train), (d.X_test, d.y_test)):
        assert X.dtype == np.int64 and y.dtype == np.int64 and X.shape[1] == n_feat == d.schema.num_features
        assert set(np.unique(y)) == {0, 1}


def test_values_lie_in_the_fairify_domain_except_german_property(loaded):
    for name, d in loaded.items():
        X = np.concatenate([d.X_train, d.X_test])
        out = d.schema.outside(X)
        if name != "german":
            assert not out.any(), name
            continue
        assert out.sum() == 154   # property = 3 (A124, unknown / no property): outside Fairify's [0, 2]
        lo, hi = d.schema.lower(), d.schema.upper()
        bad_cols = {int(c) for c in np.nonzero((X < lo) | (X > hi))[1]}
        assert bad_cols == {d.schema.index("property")}


def test_label_codes_match_an_independent_label_encoder(shared_data):
    import pandas as pd
    from sklearn.preprocessing import LabelEncoder
    raw = pd.read_csv(shared_data / "fairness" / "bank" / "bank-additional-full.csv", sep=";",
                      na_values=["unknown"]).dropna()
    schema = get_schema("bank")
    for col in ("job", "marital", "education", "month", "day_of_week", "poutcome"):
        assert tuple(LabelEncoder().fit(raw[col]).classes_) == schema.feature(col).labels


def test_german_derived_features(loaded, shared_data):
    import pandas as pd
    raw = pd.read_csv(shared_data / "fairness" / "german" / "german.data", sep=" ", header=None)
    d = loaded["german"]
    X = np.concatenate([d.X_train, d.X_test])
    s = d.schema
    assert np.sum(X[:, s.index("sex")] == 1) == raw[8].isin(["A91", "A93", "A94"]).sum()
    assert np.sum(X[:, s.index("age")] == 1) == (raw[12] >= 26).sum()
    assert np.sum(np.concatenate([d.y_train, d.y_test])) == 700


def test_schema_domains_and_protected_attributes():
    assert get_schema("adult").protected == ("race", "sex")
    assert get_schema("adult").protected_indices == (7, 8)
    assert get_schema("german").protected_indices == (11, 19)
    assert get_schema("bank").protected_indices == (0,)
    assert get_schema("compas").protected[0] == "race"
    g = get_schema("german")
    assert g.feature("credit_amount").low == 0 and g.feature("credit_amount").high == 20000
    b = get_schema("bank")
    np.testing.assert_array_equal(b.lower()[[11, 12, 13]], [-3, 1, 0])
    np.testing.assert_array_equal(b.upper()[[10, 11, 12, 13]], [5000, 1, 50, 999])
    assert get_schema("adult").upper()[get_schema("adult").index("native-country")] == 40
    region = g.region()
    assert region.integer_mask.all() and region.dim == 20


def test_decode_gives_readable_categories():
    a = get_schema("adult")
    row = np.array([39, 5, 9, 13, 4, 0, 1, 4, 1, 0, 0, 40, 38])
    d = a.decode(row)
    assert d["workclass"] == "State-gov" and d["race"] == "White" and d["sex"] == "Male"
    assert d["native-country"] == "United-States" and d["age"] == 39
    assert get_schema("bank").decode([1, 0, 1, 6, 0, 1, 0, 0, 11, 6, 100, -1, 1, 999, 0, 1])["month"] == "code 11"
    with pytest.raises(ShapeMismatchError, match="13 features"):
        a.decode(row[:5])
    with pytest.raises(DatasetError, match="integers"):
        a.decode(row + 0.5)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="valid names: .*credit_amount"):
        get_schema("german").index("salary")
    with pytest.raises(DatasetError, match="unknown tabular data set 'iris'"):
        load_tabular("iris")
    with pytest.raises(DatasetError, match=r"adult\.data"):
        load_tabular("adult", tmp_path)
    with pytest.raises(DatasetError, match=r"compas\.npy"):
        load_tabular("compas", tmp_path)
    with pytest.raises(ShapeMismatchError, match="20 features"):
        get_schema("german").validate_model_inputs(13)
    with pytest.raises(DatasetError, match="range"):
        Feature("x", 3, 1, "integer")
    with pytest.raises(DatasetError, match="kind"):
        Feature("x", 0, 1, "float")
    with pytest.raises(DatasetError, match="unknown feature 'zzz'"):
        TabularSchema("t", (Feature("a", 0, 1, "binary"),), ("zzz",), "y", "1")


def test_corrupt_compas_file(tmp_path):
    d = tmp_path / "fairness" / "compas"
    d.mkdir(parents=True)
    with open(d / "compas.npy", "wb") as f:
        np.save(f, np.zeros((3, 6), np.int64))
    with pytest.raises(DatasetError, match="six numpy arrays"):
        load_tabular("compas", tmp_path)


@pytest.mark.parametrize("name,rel,content", [
    ("german", "german/german.data", "A11 6 A34\nnot a german file at all\n"),
    ("bank", "bank/bank-additional-full.csv", "a;b\n1;2\n"),
    ("adult", "adult/adult.data", "x, y\n\xff\xfe garbage\n"),
])
def test_malformed_files_give_dataset_errors(tmp_path, name, rel, content):
    f = tmp_path / "fairness" / rel
    f.parent.mkdir(parents=True)
    f.write_bytes(content.encode("latin-1"))
    if name == "adult":
        (f.parent / "adult.test").write_text("|1x3 Cross validator\n")
    with pytest.raises(DatasetError, match=name):
        load_tabular(name, tmp_path)
