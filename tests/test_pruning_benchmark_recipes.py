"""experiments/pruning_benchmark.py's recipe rows (issue 12): the tags of ``X+loss-TAG...`` reach
prune() (rounds at the same fine-tuning epochs, first-layer cap, loss weight), and the targets
table judges rows against the dense model and the fine-tuned dense baselines."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _bench():
    spec = importlib.util.spec_from_file_location("pruning_benchmark", EXPERIMENTS / "pruning_benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_recipe_tags_set_rounds_share_cap_and_weight_at_the_same_epochs():
    pb = _bench()
    args = argparse.Namespace(recipe_steps=3, stability_weight=0.1, finetune_epochs=6, stability_mix=0.5)
    base, kw = pb.recipe("magnitude+loss", args, "0")
    assert base == "magnitude" and kw == dict(steps=3, finetune_epochs=2, stability_weight=0.1)
    base, kw = pb.recipe("stability-mix+loss-r12-p50-w0.01", args, "0")
    assert base == "stability" and kw["stability_magnitude"] == 0.5
    assert kw["steps"] == 12 and kw["finetune_epochs"] == 1 and kw["finetune_fraction"] == 0.5
    assert kw["steps"] * kw["finetune_epochs"] * kw["finetune_fraction"] == 6  # the other rows' epochs
    assert kw["layer_caps"] == {"0": 0.5} and kw["stability_weight"] == 0.01
    with pytest.raises(SystemExit, match="unknown recipe tag"):
        pb.recipe("magnitude+loss-x3", args, "0")


def test_targets_table_reports_ratios_against_dense_and_the_finetuned_baselines():
    pb = _bench()
    rows = [("dense", 0.0, 0.95, 400.0, 0.2, 0.2), ("dense+loss", 0.0, 0.95, 100.0, 0.4, 0.4),
            ("dense+ft", 0.0, 0.96, 500.0, 0.1, 0.1), ("magnitude+loss@0.5", 0.5, 0.945, 50.0, 0.6, 0.8),
            ("magnitude+loss-p50@0.8", 0.8, 0.915, 20.0, 0.5, 0.4)]
    t = pd.DataFrame(rows, columns=["model", "amount", "clean_acc", "unstable_per_input", "crown_cert_acc",
                                    "bab_cert_acc"]).assign(net="conv", eps=0.08)
    lines = {l.split(" | ")[0].strip("| "): l for l in pb.targets(t).splitlines() if l.startswith("| magnitude")}
    assert lines["magnitude+loss@0.5"].endswith("| -0.50 | 8.0x | 3.00x | 4.00x | 1.50x | 6.00x | all met |")
    assert lines["magnitude+loss-p50@0.8"].endswith("| accuracy missed |")  # -3.5 pt > 3


def test_markdown_shows_the_bab_counts_and_leaves_rows_without_bab_empty():
    pb = _bench()
    t = pd.DataFrame([dict(net="mlp", model="dense", params=100, macs=90, clean_acc=0.95, unstable_per_input=12.5,
                           crown_cert_acc=0.2, crown_s_per_input=0.01, score_s=0.0, bab_cert_acc=0.25, bab_by_crown=3,
                           bab_falsified=10, bab_timeouts=5, bab_samples=20),
                      dict(net="mlp", model="random@0.5", params=60, macs=50, clean_acc=0.9, unstable_per_input=8.0,
                           crown_cert_acc=0.3, crown_s_per_input=0.01, score_s=0.1)])
    lines = pb.markdown(t).splitlines()
    assert lines[0].endswith("| bab_cert_acc | bab_by_crown | bab_falsified | bab_timeouts | bab_samples |")
    assert lines[2].endswith("| 0.250 | 3 | 10 | 5 | 20 |") and "| 100 | 90 |" in lines[2]
    assert lines[3].endswith("| 0.100 |  |  |  |  |  |")
