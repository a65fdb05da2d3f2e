"""The metrics table: counts by hand, compression/speedup, and CROWN certification soundness."""
from __future__ import annotations

import torch
from torch import nn

import certprune
from certprune.pruning.metrics import crown_certified, mac_counts, pruning_metrics
from conftest import random_mlp

COLUMNS = {"model", "params", "nonzeros", "compression", "macs", "nonzero_macs", "speedup", "latency_ms",
           "clean_acc", "unstable_per_input", "crown_cert_acc", "crown_s_per_input"}


def test_macs_by_hand():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 5))
    with torch.no_grad():
        conv[0].weight[0].zero_()
    dense, nonzero = mac_counts(conv, (1, 6, 6))
    assert dense == 2 * 9 * 16 + 32 * 5 and nonzero == 9 * 16 + 32 * 5


def test_metrics_table_for_dense_and_pruned_models():
    torch.manual_seed(0)
    model = random_mlp([10, 16, 16, 3])
    X, y = torch.rand(60, 10), torch.randint(0, 3, (60,))
    structured, _ = certprune.prune(model, method="magnitude", amount=0.5, granularity="neuron")
    masked, _ = certprune.prune(model, method="magnitude", amount=0.5)
    table = pruning_metrics({"dense": model, "neuron": structured, "masked": masked}, (X, y), 0.01, verify_samples=20)
    assert COLUMNS <= set(table.columns) and list(table.model) == ["dense", "neuron", "masked"]
    dense, neuron, mask = (table.iloc[i] for i in range(3))
    assert dense.compression == 1.0 and dense.speedup == 1.0 and dense.params == 10 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3
    assert neuron.params == 10 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3 and neuron.params == neuron.nonzeros
    assert mask.params == dense.params and mask.nonzeros < dense.params and mask.speedup > 1.9
    assert 0 <= mask.crown_cert_acc <= mask.clean_acc + 1e-9
    alone = pruning_metrics({"masked": masked}, (X, y), 0.01, reference=model, verify_samples=20).iloc[0]
    assert list(alone.index) == list(mask.index) and alone.compression == mask.compression > 1.0
    assert alone.speedup == mask.speedup and alone.crown_cert_acc == mask.crown_cert_acc  # the reference as a module


def test_crown_certified_inputs_survive_sampling():
    torch.manual_seed(1)
    model = random_mlp([4, 12, 12, 3], seed=1)
    X = torch.rand(40, 4)
    with torch.no_grad():
        y = model(X).argmax(1)
    cert, unstable = crown_certified(model, X, y, 0.02)
    assert cert.any() and (unstable >= 0).all()
    for x, label in zip(X[torch.from_numpy(cert)], y[torch.from_numpy(cert)]):
        pts = (x + (torch.rand(300, 4) * 2 - 1) * 0.02).clamp(0, 1)
        with torch.no_grad():
            assert (model(pts).argmax(1) == label).all()


def _difference_net() -> nn.Sequential:
    """y0 = relu(x0), y1 = relu(x1): on [0, 1]^2 the label-0 margin y0 - y1 is x0 - x1 exactly."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        for lin in (net[0], net[2]):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    return net.eval()


def test_bab_verdicts_never_certify_an_image_with_a_real_counterexample():
    """Hand-built net: image 0 has a counterexample in its box ((0.4, 0.55) at eps 0.1), image 1
    is robust (margin >= 0.6), image 2 is misclassified; the one procedure (CROWN, then verify)
    falsifies 0 and 2, certifies 1 by the CROWN pass, and its counts say so."""
    from certprune.pruning.metrics import BAB_MODE, bab_counts, bab_verdicts
    from certprune.results import Verdict

    net = _difference_net()
    X = torch.tensor([[0.5, 0.45], [0.9, 0.1], [0.2, 0.8]])
    y = torch.tensor([0, 0, 0])
    assert net(torch.tensor([[0.4, 0.55]])).argmax(1).item() == 1  # the real counterexample of image 0
    assert bab_verdicts(net, X, y, 0.1, 10.0) == [Verdict.FALSIFIED, Verdict.CERTIFIED, Verdict.FALSIFIED]
    counts = bab_counts(net, X, y, 0.1, 10.0)
    assert counts["bab_cert_acc"] == 1 / 3 and counts["bab_by_crown"] == 1 and counts["bab_falsified"] == 2
    assert counts["bab_timeouts"] == 0 and counts["bab_samples"] == 3 and counts["bab_mode"] == BAB_MODE


def test_bab_verdicts_agree_with_a_brute_force_grid_and_send_only_crown_open_images_to_verify(monkeypatch):
    """Random 2-input MLP: CERTIFIED only where a 161x161 grid of the box has no misclassified point,
    FALSIFIED wherever the grid has one (2-D boxes are decided exactly at this timeout); images the
    CROWN pass certifies never reach verify."""
    from certprune.pruning import metrics
    from certprune.results import Verdict

    model = random_mlp([2, 16, 16, 3], seed=3)
    X = torch.rand(30, 2, generator=torch.Generator().manual_seed(5))
    y = model(X).argmax(1)
    y[:3] = (y[:3] + 1) % 3  # three misclassified images
    eps, seen, real = 0.06, [], metrics.verify_each
    monkeypatch.setattr(metrics, "verify_each", lambda m, Xs, *a: seen.append(Xs.clone()) or real(m, Xs, *a))
    verdicts = metrics.bab_verdicts(model, X, y, eps, 20.0)
    by_crown = torch.from_numpy(crown_certified(model, X, y, eps)[0])
    assert len(seen) == 1 and torch.equal(seen[0], X[~by_crown]) and by_crown.any() and (~by_crown).any()
    g = torch.linspace(-eps, eps, 161)
    offsets = torch.cartesian_prod(g, g)
    for x, label, v in zip(X, y.tolist(), verdicts):
        with torch.no_grad():
            wrong = (model((x + offsets).clamp(0, 1)).argmax(1) != label).any().item()
        assert v is (Verdict.FALSIFIED if wrong else Verdict.CERTIFIED), (x, label, v)
