"""`certprune compare`: the table's columns and values against each model's certify store, the
manifest's method/amount, resume from the stores, exact size metrics, bad input."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from certprune.cli import main
from certprune.verifiers.compare import COLUMNS, size_row, store_names

REPO = Path(__file__).resolve().parents[1]
DIGITS_MODEL = REPO / "certprune" / "models" / "digits_mlp.onnx"
MNIST_MODEL = REPO / "certprune" / "models" / "mnist_mlp.onnx"


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> Path:
    """The digits MLP with 60 % of its weights removed by magnitude, exported with its manifest."""
    from certprune.network import load_model
    from certprune.pruning.api import prune
    from certprune.pruning.export import save_pruned
    out = tmp_path_factory.mktemp("pruned") / "digits_mag60.onnx"
    model, manifest = prune(load_model(DIGITS_MODEL), method="magnitude", amount=0.6)
    save_pruned(model, manifest, out)
    return out


def _compare(out: Path, *models) -> list[str]:
    return ["compare", *map(str, models), "--dataset", "digits", "-n", "6", "--eps", "0.04", "--timeout", "5",
            "--no-progress", "--out", str(out)]


def test_compare_table_columns_values_and_resume(tmp_path, pruned, capsys):
    out = tmp_path / "cmp"
    assert main(_compare(out, DIGITS_MODEL, pruned)) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "compare.csv")
    assert list(table.columns) == COLUMNS and list(table["model"]) == ["digits_mlp", "digits_mag60"]
    assert "digits_mag60" in printed and "cert_acc_bab" in printed
    dense, sparse = table.iloc[0], table.iloc[1]
    assert dense["method"] == "dense" and dense["sparsity"] == 0.0
    assert sparse["method"] == "magnitude (unstructured)" and sparse["amount"] == pytest.approx(0.6)
    assert sparse["sparsity"] == pytest.approx(1 - sparse["nonzeros"] / dense["params"])
    assert sparse["sparsity"] == pytest.approx(0.6, abs=0.05) and sparse["nonzero_macs"] < dense["nonzero_macs"]
    for _, r in table.iterrows():  # every accuracy is read off that model's own certify store
        summary = json.loads((out / r["model"] / "summary.json").read_text())
        rows = list(csv.DictReader(open(out / r["model"] / "samples.csv")))
        assert summary["n"] == 6 and len(rows) == 6
        assert r["clean_acc"] == pytest.approx(summary["clean_accuracy"])
        assert r["pgd_acc"] == pytest.approx(summary["pgd_accuracy"])
        assert r["cert_acc_bab"] == pytest.approx(summary["certified_accuracy"])
        assert r["cert_acc_bounds"] == pytest.approx(sum(x["verdict"] == "certified" and x["phase"] == "bound"
                                                         for x in rows) / 6)
        assert r["cert_acc_bounds"] <= r["cert_acc_bab"] <= r["pgd_acc"] <= r["clean_acc"]
        assert r["unstable_per_input"] == pytest.approx(sum(int(x["unstable_relus"]) for x in rows) / 6)
    assert table["cert_acc_bab"].max() > 0  # the case exercises certification
    md = (out / "compare.md").read_text().splitlines()
    assert md[0].startswith("| model | method |") and len(md) == 4
    for f in ("cert_vs_sparsity.png", "verify_time.png"):
        assert (out / f).read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert "digits_mag60" in page and page.count("data:image/png;base64,") == 2

    # resume: a rerun does no work on finished stores; a store that lost a row redoes only that row
    store = out / "digits_mag60" / "samples.csv"
    before = store.read_text()
    lines = before.splitlines(keepends=True)
    store.write_text("".join(lines[:-1]))
    dense_store = (out / "digits_mlp" / "samples.csv").read_text()
    assert main(_compare(out, DIGITS_MODEL, pruned)) == 0
    assert (out / "digits_mlp" / "samples.csv").read_text() == dense_store
    after = store.read_text().splitlines(keepends=True)
    assert after[:-1] == lines[:-1] and after[-1].split(",")[0] == lines[-1].split(",")[0]
    again = pd.read_csv(out / "compare.csv")
    cols = [c for c in COLUMNS if c != "verify_s_per_input"]  # the redone row's time is new
    pd.testing.assert_frame_equal(again[cols], table[cols])


def test_compare_refuses_models_with_other_input_shapes(tmp_path, capsys):
    assert main(_compare(tmp_path / "o", DIGITS_MODEL, MNIST_MODEL)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "input shape" in err


def test_size_row_exact_on_a_tiny_net():
    """2-3-2 MLP with one weight zeroed and a 1x1 conv in front: params, non-zeros and MACs by hand."""
    from certprune.network import as_network
    lin1, lin2 = nn.Linear(2, 3), nn.Linear(3, 2)
    with torch.no_grad():
        lin1.weight[0, 0] = 0.0
    net = as_network(nn.Sequential(lin1, nn.ReLU(), lin2), (2,))
    row = size_row(net, (2,), ref_params=20)
    assert row["params"] == 6 + 3 + 6 + 2 and row["nonzeros"] == 16
    assert row["macs"] == 6 + 6 and row["nonzero_macs"] == 5 + 6
    assert row["sparsity"] == pytest.approx(1 - 16 / 20)


def test_store_names_are_distinct_and_folder_safe():
    assert store_names(["a/m.onnx", "b/m.onnx", "c/x y.onnx.gz", "m_2.onnx"]) == ["m", "m_2", "x_y", "m_2_2"]
