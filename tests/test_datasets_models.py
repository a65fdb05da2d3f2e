"""Bundled fairness models (certprune/models/<dataset>_mlp.onnx): they load, take the schema's raw
integer features, and reproduce the test accuracy recorded in their JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from certprune.datasets import get_schema, load_tabular

MODELS = Path(__file__).resolve().parents[1] / "certprune" / "models"
NAMES = ["german", "adult", "bank", "compas"]


@pytest.mark.parametrize("name", NAMES)
def test_bundled_model_matches_its_record(shared_data, name):
    from certprune.network import load_model
    path = MODELS / f"{name}_mlp.onnx"
    rec = json.loads((MODELS / f"{name}_mlp.json").read_text())
    assert path.stat().st_size < 100 * 1024
    schema = get_schema(name)
    assert rec["dataset"] == name and rec["features"] == list(schema.names) and isinstance(rec["seed"], int)
    model = load_model(path)
    schema.validate_model_inputs(model.info.input_shape[0])
    data = load_tabular(name, shared_data)
    with torch.no_grad():
        logits = model(torch.as_tensor(data.X_test, dtype=torch.float32)).numpy().ravel()
    acc = float(np.mean((logits > 0) == data.y_test))
    assert acc == pytest.approx(rec["test_accuracy"], abs=1e-3)
    assert acc > rec["majority_class_test_accuracy"] + 0.02   # it learned something beyond the prior
