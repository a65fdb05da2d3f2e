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
            "--verify-samples-conv", "4", "--bab-samples", "2", "--bab-samples-conv", "2", "--bab-methods", "scl",
            "--out", str(out)]


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


def _plan_args(**kw):
    import argparse
    base = dict(bab_samples=20, bab_timeout=1.0, bab_samples_conv=10, bab_timeout_conv=5.0, bab_methods="all",
                seed_list=[0, 1, 2])
    return argparse.Namespace(**{**base, **kw})


def test_bab_plan_per_net_first_seed_only_and_never_gating():
    bench = _bench()
    args = _plan_args()
    assert bench.bab_plan("scl", "mlp", 0, args) == (20, 1.0)
    assert bench.bab_plan("scl", "conv", 0, args) == (10, 5.0)
    assert bench.bab_plan("scl", "conv", 1, args) is None  # first seed only
    assert bench.bab_plan("gating@0.5", "mlp", 0, args) is None  # the verifier refuses the gated net
    assert bench.bab_plan("scl", "conv", 0, _plan_args(bab_methods="dense,brain")) is None
    assert bench.bab_plan("scl", "conv", 0, _plan_args(bab_samples_conv=0)) is None


def test_a_row_without_the_requested_bab_column_is_run_again_and_replaced_in_place():
    bench = _bench()
    done = pd.DataFrame([dict(method="dense", seed=0, crown_cert_acc=0.9), dict(method="scl", seed=0, crown_cert_acc=0.8),
                         dict(method="dense", seed=1, crown_cert_acc=0.7)])
    assert bench.is_done(done, "scl", 0, None) and not bench.is_done(done, "scl", 1, None)
    assert not bench.is_done(done, "scl", 0, (10, 5.0))  # no BaB column yet: run again
    row = dict(method="scl", seed=0, crown_cert_acc=0.8, bab_cert_acc=0.9, bab_samples=10, bab_timeout_s=5.0,
               bab_mode=bench.BAB_MODE)
    new = bench.replace_row(done, row, "scl", 0)
    assert list(zip(new.method, new.seed)) == [("dense", 0), ("scl", 0), ("dense", 1)]  # same place, no duplicate
    assert bench.is_done(new, "scl", 0, (10, 5.0))
    assert not bench.is_done(new, "scl", 0, (20, 5.0)) and not bench.is_done(new, "scl", 0, (10, 1.0))  # other settings
    old_mode = new.assign(bab_mode="verify-only")
    assert not bench.is_done(old_mode, "scl", 0, (10, 5.0))


def test_bab_columns_count_every_input_once_and_never_certify_less_than_crown(monkeypatch):
    """bab_columns (metrics.bab_counts, the one procedure) sends exactly the inputs CROWN leaves
    open to verify_each (stubbed here with a known answer per input) and adds its CERTIFIED
    verdicts to CROWN's count."""
    import torch

    from certprune.pruning import metrics
    from certprune.pruning.metrics import crown_certified
    from certprune.results import Verdict
    from conftest import random_mlp

    bench = _bench()
    torch.manual_seed(0)
    model = random_mlp([6, 12, 12, 3], seed=4)
    X = torch.rand(12, 6)
    y = model(X).argmax(1)  # correctly classified, so the radius decides
    answers = [Verdict.CERTIFIED, Verdict.FALSIFIED, Verdict.UNKNOWN]
    seen = []

    def stub(m, Xs, ys, eps, timeout, domain):
        assert m is model and timeout == 2.0
        seen.append((Xs.clone(), ys.clone()))
        return [answers[i % 3] for i in range(len(Xs))]

    monkeypatch.setattr(metrics, "verify_each", stub)
    mixed = 0
    for eps in (0.001, 0.01, 0.03, 0.08):
        seen.clear()
        by_crown = torch.from_numpy(crown_certified(model, X, y, eps)[0])
        crown, rest = int(by_crown.sum()), int((~by_crown).sum())
        cols = bench.bab_columns(model, (X, y), eps, 12, 2.0)
        if rest:  # the stub saw each open input once, in order, and nothing CROWN certified
            assert len(seen) == 1 and torch.equal(seen[0][0], X[~by_crown]) and torch.equal(seen[0][1], y[~by_crown])
        else:
            assert seen == []
        mixed += 0 < crown < 12
        expect = [answers[i % 3] for i in range(rest)]
        assert cols["bab_by_crown"] == crown
        assert round(cols["bab_cert_acc"] * 12) == crown + expect.count(Verdict.CERTIFIED)
        assert cols["bab_falsified"] == expect.count(Verdict.FALSIFIED)
        assert cols["bab_timeouts"] == expect.count(Verdict.UNKNOWN)
    assert mixed  # at least one radius where CROWN certifies some inputs and leaves others


def test_a_stored_row_is_reused_for_bab_only_when_the_rerun_gives_the_same_network():
    import torch

    from conftest import random_mlp

    bench = _bench()
    model = random_mlp([6, 8, 3], seed=1)
    X = torch.rand(20, 6)
    y = model(X).argmax(1)
    y[:5] = (y[:5] + 1) % 3  # 15 of 20 right
    nz = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    assert bench.same_network(model, dict(clean_acc=0.75, nonzeros=nz), (X, y))
    assert not bench.same_network(model, dict(clean_acc=0.75, nonzeros=nz - 1), (X, y))
    assert not bench.same_network(model, dict(clean_acc=0.7, nonzeros=nz), (X, y))
    assert not bench.same_network(model, dict(clean_acc=float("nan"), nonzeros=nz), (X, y))


def test_merge_replaces_a_row_when_the_incoming_one_adds_bab(tmp_path):
    bench = _bench()
    main, other = tmp_path / "main", tmp_path / "other"
    main.mkdir(), other.mkdir()
    bab = dict(bab_cert_acc=0.6, bab_samples=10, bab_timeout_s=5.0, bab_mode=bench.BAB_MODE)
    pd.DataFrame([dict(method="dense", seed=0, clean_acc=0.9), dict(method="scl", seed=0, clean_acc=0.8),
                  dict(method="agn", seed=0, clean_acc=0.7, **bab)]).to_csv(main / "pruning_learners_conv.csv", index=False)
    pd.DataFrame([dict(method="scl", seed=0, clean_acc=0.8, **bab),  # adds BaB: replaces in place
                  dict(method="agn", seed=0, clean_acc=0.1, **{**bab, "bab_cert_acc": 0.1}),  # has it already
                  dict(method="dense", seed=0, clean_acc=0.2, **{**bab, "bab_mode": "verify-only"})]  # other mode
                 ).to_csv(other / "pruning_learners_conv.csv", index=False)
    assert bench.merge_rows(main, other) == {"conv": 1}
    t = pd.read_csv(main / "pruning_learners_conv.csv")
    assert list(zip(t.method, t.clean_acc)) == [("dense", 0.9), ("scl", 0.8), ("agn", 0.7)]
    assert t.bab_cert_acc.isna().tolist() == [True, False, False] and t.bab_cert_acc[2] == 0.6
    assert bench.is_done(t, "scl", 0, (10, 5.0))
    assert bench.merge_rows(main, other) == {"conv": 0}  # idempotent


def test_merge_appends_only_the_rows_a_parallel_run_adds(tmp_path):
    bench = _bench()
    main, other = tmp_path / "main", tmp_path / "other"
    main.mkdir(), other.mkdir()
    pd.DataFrame([dict(method="dense", seed=0, clean_acc=0.9)]).to_csv(main / "pruning_learners_conv.csv", index=False)
    pd.DataFrame([dict(method="dense", seed=0, clean_acc=0.1), dict(method="dense", seed=2, clean_acc=0.8),
                  dict(method="scl", seed=2, clean_acc=0.7)]).to_csv(other / "pruning_learners_conv.csv", index=False)
    assert bench.merge_rows(main, other) == {"conv": 2}
    t = pd.read_csv(main / "pruning_learners_conv.csv")
    assert list(zip(t.method, t.seed, t.clean_acc)) == [("dense", 0, 0.9), ("dense", 2, 0.8), ("scl", 2, 0.7)]
    assert bench.merge_rows(main, other) == {"conv": 0}  # idempotent


def test_bab_is_averaged_over_the_seeds_that_have_it_and_timeouts_are_summed():
    bench = _bench()
    rows = [dict(method="scl", seed=s, compression=10.0, speedup=9.0, clean_acc=0.9, crown_cert_acc=0.8,
                 bab_cert_acc=b, bab_timeouts=t, bab_samples=n) for s, b, t, n in
            [(0, 0.9, 1, 10), (1, 0.7, 3, 10), (2, None, None, None)]]
    rows += [dict(method="magnitude@0.8", seed=s, compression=5.0, speedup=5.0, clean_acc=0.9, crown_cert_acc=0.7,
                  bab_cert_acc=0.6, bab_timeouts=0, bab_samples=10) for s in (0, 1, 2)]
    table = pd.DataFrame(rows)
    cells = {line.strip("| ").split(" | ")[0]: line.strip("| ").split(" | ") for line in bench.summary(table).splitlines()[2:]}
    assert "0.800 ± 0.100 (2)" in cells["scl"] and "4/20" in cells["scl"]  # seeds 0 and 1 only
    assert "0.600 ± 0.000" in cells["magnitude@0.8"] and "0/30" in cells["magnitude@0.8"]
    assert "| scl | 10.00 | 9.00 | 0.900 | 0.800 | 0.80 (2) |" in bench.closing(table, "mlp")
