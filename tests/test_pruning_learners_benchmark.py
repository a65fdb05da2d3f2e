"""experiments/pruning_learners_benchmark.py: a Ctrl-C'd run continues with the first missing row
and ends with the same table as an uninterrupted run; rows per net (MLP-only learners are not run
on the convnet); compression and speed-up against the dense net."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TIMING = ["prune_s", "latency_ms", "crown_s_per_input", "bab_s_per_input"]


def _bench():
    spec = importlib.util.spec_from_file_location("pruning_learners_benchmark", EXPERIMENTS / "pruning_learners_benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _args(out: Path) -> list[str]:
    return ["--nets", "mlp,conv", "--seeds", "0", "--methods", "dense,magnitude@0.8,scl,agn", "--train-epochs", "1",
            "--train-images", "160", "--val-images", "40", "--eval-images", "48", "--verify-samples", "6",
            "--verify-samples-conv", "4", "--bab-samples", "2", "--bab-methods", "scl", "--out", str(out)]


def _table(out: Path, net: str) -> pd.DataFrame:
    name = "pruning_learners.csv" if net == "mlp" else f"pruning_learners_{net}.csv"
    return pd.read_csv(out / name).drop(columns=TIMING).sort_values("method").reset_index(drop=True)


@pytest.mark.slow  # ~1.5 min on the loaded 2-core machine
def test_an_interrupted_benchmark_resumes_to_the_uninterrupted_table(shared_data, tmp_path, monkeypatch):
    bench = _bench()
    assert bench.main(_args(tmp_path / "a")) == 0
    calls = []
    real = bench.run_one

    def stop_at_third(name, *a, **k):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(name, *a, **k)

    monkeypatch.setattr(bench, "run_one", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        bench.main(_args(tmp_path / "b"))
    assert len(pd.read_csv(tmp_path / "b" / "pruning_learners.csv")) == 2  # dense, magnitude@0.8 kept
    calls.clear()
    monkeypatch.setattr(bench, "run_one", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    assert bench.main(_args(tmp_path / "b")) == 0
    assert calls == ["scl", "agn", "dense", "magnitude@0.8", "scl"]  # only the missing rows; no agn on the convnet
    for net in ("mlp", "conv"):
        pd.testing.assert_frame_equal(_table(tmp_path / "a", net), _table(tmp_path / "b", net))
    mlp, conv = _table(tmp_path / "a", "mlp"), _table(tmp_path / "a", "conv")
    assert "agn" not in set(conv.method) and "agn" in set(mlp.method)
    for t in (mlp, conv):
        dense, mag = t.set_index("method").loc["dense"], t.set_index("method").loc["magnitude@0.8"]
        assert dense.compression == dense.speedup == 1.0 and dense.acc_drop == 0.0
        assert mag.compression == pytest.approx(dense.params / mag.nonzeros)
        assert mag.speedup == pytest.approx(dense.macs / mag.nonzero_macs) and mag.speedup > 1.0
        assert t.bab_cert_acc.notna().sum() == 1  # scl only, the first seed
    md = (tmp_path / "a" / "pruning_learners.md").read_text()
    assert "MNIST convnet" in md and "| scl | 1 |" in md and (tmp_path / "a" / "pruning_learners.png").is_file()
