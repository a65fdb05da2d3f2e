"""prune(): options, schedules, rewinding, determinism, Network in/out, DataLoader, CLI."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import certprune
from certprune.errors import ConfigError, ShapeMismatchError
from certprune.pruning import Manifest, apply_manifest
from certprune.pruning.finetune import FinetuneConfig, finetune
from certprune.pruning.schedules import cumulative_amounts, lr_factor, silo_max_lr
from conftest import REPO, random_mlp


def _data(n=64, d=12, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def test_unknown_option_and_granularity_are_rejected():
    with pytest.raises(ConfigError, match="unknown prune option"):
        certprune.prune(random_mlp([4, 4, 2]), method="magnitude", amount=0.5, learning_rate=1.0)
    with pytest.raises(ConfigError, match="unknown granularity"):
        certprune.prune(random_mlp([4, 4, 2]), method="magnitude", amount=0.5, granularity="block")
    with pytest.raises(ConfigError, match="amount is required"):
        certprune.prune(random_mlp([4, 4, 2]), method="magnitude")


def test_mismatched_data_is_rejected():
    with pytest.raises(ShapeMismatchError, match="labels"):
        certprune.prune(random_mlp([12, 4, 2]), method="taylor", amount=0.5, data=(torch.rand(5, 12), torch.zeros(4)))


def test_input_model_is_not_modified_and_runs_are_deterministic():
    model = random_mlp([12, 10, 8, 3])
    before = [p.clone() for p in model.parameters()]
    X, y = _data()
    a, ma = certprune.prune(model, method="random", amount=0.5, granularity="neuron", data=(X, y), seed=7,
                            finetune_epochs=2)
    b, mb = certprune.prune(model, method="random", amount=0.5, granularity="neuron", data=(X, y), seed=7,
                            finetune_epochs=2)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert ma.to_json() == mb.to_json() and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_iterative_unit_pruning_reaches_the_exact_count_and_replays():
    model = random_mlp([12, 8, 8, 3])
    X, y = _data()
    pruned, manifest = certprune.prune(model, method="magnitude", amount=0.75, granularity="neuron", steps=3)
    assert [sum(len(u["removed"]) for u in s.units.values()) for s in manifest.steps] == [6, 4, 2]
    assert pruned[0].out_features == 2 and pruned[2].out_features == 2
    with torch.no_grad():
        assert torch.equal(apply_manifest(model, manifest)(X), pruned(X))


def test_rewinding_restores_surviving_weights_before_finetuning():
    model = random_mlp([12, 10, 8, 3])
    X, y = _data()
    rewound, manifest = certprune.prune(model, method="magnitude", amount=0.5, granularity="neuron", rewind=True)
    kept = manifest.steps[0].units["0"]["kept"]
    assert torch.equal(rewound[0].weight, model[0].weight[kept])


def test_network_in_network_out_and_dataloader_data():
    from certprune.network import as_network
    net = as_network(random_mlp([12, 10, 8, 3]))
    X, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    pruned, manifest = certprune.prune(net, method="taylor", amount=0.5, granularity="neuron", data=loader)
    assert hasattr(pruned, "info") and pruned.info.input_shape == (12,) and manifest.input_shape == [12]
    assert pruned.module[0].out_features == 5


def test_finetuning_keeps_masked_weights_zero_and_lowers_the_loss():
    model = random_mlp([12, 16, 3])
    X, y = _data(256)
    mask = {"0": torch.rand(16, 12, generator=torch.Generator().manual_seed(0)) > 0.5}
    with torch.no_grad():
        model[0].weight.mul_(mask["0"])
        start = nn.functional.cross_entropy(model(X), y).item()
    finetune(model, X, y, FinetuneConfig(epochs=20, lr=1e-2, batch_size=32, seed=0), mask)
    with torch.no_grad():
        assert (model[0].weight[~mask["0"]] == 0).all()
        assert nn.functional.cross_entropy(model(X), y).item() < start


def test_schedules():
    assert cumulative_amounts(0.75, 2) == pytest.approx([0.5, 0.75])
    assert [lr_factor("step", e, 8) for e in (0, 3, 4, 6, 7)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    silo = [silo_max_lr(k, 5, 1e-3, 1e-1) for k in range(5)]
    assert silo[0] == pytest.approx(1e-3) and silo[-1] == pytest.approx(1e-1)
    assert all(a < b for a, b in zip(silo, silo[1:]))
    assert silo[2] == pytest.approx((1e-3 + 1e-1) / 2)  # symmetric S-curve: midpoint at the middle step
    with pytest.raises(ConfigError, match="schedule"):
        lr_factor("linear", 0, 3)
    with pytest.raises(ConfigError, match="steps"):
        cumulative_amounts(0.5, 0)


def test_silo_iterative_schedule_runs():
    X, y = _data()
    pruned, manifest = certprune.prune(random_mlp([12, 10, 8, 3]), method="magnitude", amount=0.5, steps=3,
                                       silo=True, finetune_epochs=1, data=(X, y), lr_schedule="step")
    assert len(manifest.steps) == 3 and math.isclose(manifest.steps[-1].amount, 0.5)


def test_manifest_json_round_trip_and_bad_json():
    _, manifest = certprune.prune(random_mlp([8, 8, 2]), method="magnitude", amount=0.5)
    again = Manifest.from_json(manifest.to_json())
    assert again.to_json() == manifest.to_json() and again.steps == manifest.steps
    with pytest.raises(ConfigError, match="manifest"):
        Manifest.from_json("{}")


def test_cli_prune_writes_model_and_manifest(tmp_path):
    out = tmp_path / "p.onnx"
    cmd = [sys.executable, "-m", "certprune", "prune", str(REPO / "certprune" / "models" / "digits_mlp.onnx"),
           "--method", "magnitude", "--amount", "0.5", "--granularity", "neuron", "--dataset", "digits", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and (tmp_path / "p.manifest.json").is_file()
    net = certprune.load_model(out)
    assert sum(p.numel() for p in net.parameters()) < 3466
    bad = subprocess.run(cmd[:7] + ["--amount", "1.0", "--dataset", "digits", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "amount" in bad.stderr
