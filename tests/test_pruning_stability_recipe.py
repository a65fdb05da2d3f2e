"""The certified-pruning recipe (issue 12): dead units first, per-layer budgets, iterative rounds."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certprune
from certprune.pruning.criteria import criterion
from certprune.pruning.criteria.base import ScoreContext
from certprune.pruning.layers import unit_layers
from certprune.pruning.stability import DEAD_SCORE
from test_pruning_structural import convnet_bn


def test_a_unit_inactive_on_every_box_scores_below_every_other():
    net = nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():  # unit 0: always off; unit 1: unstable; unit 2: always on
        net[0].weight.fill_(1.0)
        net[0].bias.copy_(torch.tensor([-5.0, 0.0, 5.0]))
    X = torch.zeros(4, 1)
    ctx = ScoreContext(net, X, torch.zeros(4, dtype=torch.long), epsilon=0.1, domain=None)
    s = criterion("stability").unit_scores(ctx, unit_layers(net))["0"]
    assert s[0].item() == DEAD_SCORE and s[1] < s[2] and s[1] > DEAD_SCORE
    _, manifest = certprune.prune(net, method="stability", amount=1 / 3, granularity="neuron", data=(X, torch.zeros(4)),
                                  epsilon=0.1, domain=None)
    assert manifest.steps[0].units["0"]["removed"] == [0]
    # removing a dead unit leaves the function unchanged on the boxes
    pruned, _ = certprune.prune(net, method="stability", amount=1 / 3, granularity="neuron", data=(X, torch.zeros(4)),
                                epsilon=0.1, domain=None)
    x = torch.rand(50, 1) * 0.2 - 0.1
    torch.testing.assert_close(pruned(x), net(x))


def test_stability_shares_the_removals_between_layers_so_none_starves():
    net = convnet_bn()
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(24, 1, 8, 8, generator=g), torch.randint(0, 4, (24,), generator=g)
    _, manifest = certprune.prune(net, method="stability", amount=0.8, granularity="structured", data=(X, y),
                                  epsilon=0.05, steps=2)
    widths = {"0": 6, "3": 5, "7": 7}
    kept = {k: widths[k] for k in widths}
    for step in manifest.steps:
        for name, u in step.units.items():
            kept[name] = len(u["kept"])
    assert all(1 <= kept[k] <= round(0.2 * widths[k]) + 1 for k in widths), kept
    _, glob = certprune.prune(net, method="stability", amount=0.5, granularity="structured", data=(X, y),
                              epsilon=0.05, scope="global")
    assert glob.config["scope"] == "global" and manifest.config["scope"] == "local"


def test_recipe_rounds_finetune_with_the_stability_loss_and_keep_removed_units_out():
    from certprune.pruning.metrics import crown_certified
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    X = torch.rand(256, 4)
    y = (X[:, 0] + X[:, 1] > 1).long()
    eps = 0.05
    plain, m1 = certprune.prune(net, method="stability", amount=0.5, granularity="neuron", data=(X, y), epsilon=eps,
                                steps=3, finetune_epochs=2)
    reg, m2 = certprune.prune(net, method="stability", amount=0.5, granularity="neuron", data=(X, y), epsilon=eps,
                              steps=3, finetune_epochs=2, stability_weight=1.0)
    assert len(m2.steps) == 3 and [l.out_features for l in reg if isinstance(l, nn.Linear)] == [8, 8, 2]
    _, u_plain = crown_certified(plain, X[:64], y[:64], eps, domain=None)
    _, u_reg = crown_certified(reg, X[:64], y[:64], eps, domain=None)
    assert u_reg.mean() < u_plain.mean()  # the regulariser stabilises ReLUs


def test_radius_normalised_loss_is_center_over_radius_squared_and_keeps_a_gradient_on_wide_bounds():
    from certprune.pruning.stability import ibp_preactivations, perturbation_boxes, stability_loss
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.rand(5, 3, dtype=torch.float64)
    lo, hi = perturbation_boxes(x, 0.1, (0.0, 1.0))
    (l, u), = ibp_preactivations(net, lo, hi)
    c, r = (l + u) / 2, (u - l) / 2
    torch.testing.assert_close(stability_loss(net, x, 0.1, norm="radius"), -torch.tanh((c / r) ** 2).mean())
    wide = nn.Sequential(nn.Linear(3, 1), nn.ReLU(), nn.Linear(1, 2)).double()
    with torch.no_grad():  # center 5, radius 12 at x = 0.5: l*u = -119, tanh(1 + l*u) is flat at -1
        wide[0].weight.fill_(40.0), wide[0].bias.fill_(-55.0)
    x = torch.full((1, 3), 0.5, dtype=torch.float64)
    (g_plain,) = torch.autograd.grad(stability_loss(wide, x, 0.1, domain=None), wide[0].bias)
    (g_norm,) = torch.autograd.grad(stability_loss(wide, x, 0.1, domain=None, norm="radius"), wide[0].bias)
    assert g_plain.abs().item() < 1e-30 and g_norm.item() < -1e-3  # the radius form pushes the center up
    with pytest.raises(Exception, match="normalisation"):
        stability_loss(net, x, 0.1, norm="bn")


def test_stability_magnitude_mix_keeps_an_unstable_unit_with_large_weights():
    net = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():  # 0: dead; 1: unstable, weight 5; 2: unstable, weight 1; 3: always on, weight 2
        net[0].weight.copy_(torch.tensor([[1.0], [5.0], [1.0], [2.0]]))
        net[0].bias.copy_(torch.tensor([-5.0, 0.0, 0.01, 5.0]))
    X, y = torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)
    layers = unit_layers(net)
    plain = criterion("stability").unit_scores(ScoreContext(net, X, y, epsilon=0.1, domain=None), layers)["0"]
    assert plain.argsort().tolist() == [0, 1, 2, 3]  # unit 1 (l*u = -0.25) is the least stable
    ctx = ScoreContext(net, X, y, epsilon=0.1, domain=None, stability_magnitude=0.5)
    mixed = criterion("stability").unit_scores(ctx, layers)["0"]
    assert mixed[0].item() == -1.0 and mixed.argsort().tolist()[:2] == [0, 2]  # dead first, then the small unstable
    # (stability rank, magnitude rank): unit 1 (1/3, 1), unit 2 (2/3, 1/3), unit 3 (1, 2/3)
    torch.testing.assert_close(mixed[1:], torch.tensor([2 / 3, 0.5, 5 / 6], dtype=torch.float64))
    _, manifest = certprune.prune(net, method="stability", amount=0.5, granularity="neuron", data=(X, y),
                                  epsilon=0.1, domain=None, stability_magnitude=0.5)
    assert manifest.steps[0].units["0"]["removed"] == [0, 2]
    _, manifest = certprune.prune(net, method="stability", amount=0.5, granularity="neuron", data=(X, y),
                                  epsilon=0.1, domain=None)
    assert manifest.steps[0].units["0"]["removed"] == [0, 1]
    with pytest.raises(certprune.errors.ConfigError, match="stability_magnitude"):
        criterion("stability").unit_scores(ScoreContext(net, X, y, epsilon=0.1, stability_magnitude=2.0), layers)


def _kept(manifest, widths):
    kept = dict(widths)
    for step in manifest.steps:
        for name, u in step.units.items():
            kept[name] = len(u["kept"])
    return kept


def test_layer_caps_protect_the_first_conv_layer_and_move_its_share_to_the_others():
    from certprune.errors import ConfigError
    net = convnet_bn()
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(24, 1, 8, 8, generator=g), torch.randint(0, 4, (24,), generator=g)
    widths = {"0": 6, "3": 5, "7": 7}
    for method, extra in (("magnitude", {}), ("stability", {"epsilon": 0.05})):
        _, plain = certprune.prune(net, method=method, amount=0.6, granularity="structured", data=(X, y), steps=3,
                                   **extra)
        pruned, capped = certprune.prune(net, method=method, amount=0.6, granularity="structured", data=(X, y),
                                         steps=3, layer_caps={"0": 0.34}, **extra)
        k0, k1 = _kept(plain, widths), _kept(capped, widths)
        assert k0["0"] < 4 and k1["0"] >= 4, (k0, k1)  # at most 34% of 6 channels ever removed
        assert sum(k1.values()) == sum(k0.values()) == round(0.4 * 18)  # the amount is still reached
        assert k1["3"] + k1["7"] < k0["3"] + k0["7"]
        assert pruned[0].out_channels == k1["0"]
    with pytest.raises(ConfigError, match="no prunable layer"):
        certprune.prune(net, method="magnitude", amount=0.5, granularity="structured", data=(X, y),
                        layer_caps={"conv1": 0.5})
    with pytest.raises(ConfigError, match="per-layer budgets"):
        certprune.prune(net, method="magnitude", amount=0.5, granularity="structured", data=(X, y), scope="global",
                        layer_caps={"0": 0.5})


def test_finetune_fraction_gives_each_round_its_own_share_of_the_data(monkeypatch):
    import certprune.pruning.api as api
    from certprune.pruning.schedules import round_slice
    seen = []
    monkeypatch.setattr(api, "finetune", lambda work, X, y, cfg, masks=None, checkpoint=None: seen.append(X.clone()))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    X, y = torch.rand(40, 4), torch.randint(0, 2, (40,))
    certprune.prune(net, method="magnitude", amount=0.5, granularity="neuron", data=(X, y), steps=4,
                    finetune_epochs=1, finetune_fraction=0.5)
    assert [len(s) for s in seen] == [20] * 4
    rows = lambda s: {tuple(r.tolist()) for r in s}  # noqa: E731
    assert rows(seen[0]).isdisjoint(rows(seen[1])) and rows(seen[0]) | rows(seen[1]) == rows(X)
    assert rows(seen[2]) == rows(seen[0])  # the slices rotate: 4 rounds at 1/2 = 2 passes over the data
    assert sorted(round_slice(10, 0.3, 3, 0).tolist()) != sorted(round_slice(10, 0.3, 0, 0).tolist())
    seen.clear()
    certprune.prune(net, method="magnitude", amount=0.5, granularity="neuron", data=(X, y), steps=2, finetune_epochs=1)
    assert [len(s) for s in seen] == [40, 40]
    from certprune.errors import ConfigError
    with pytest.raises(ConfigError, match="finetune_fraction"):
        certprune.prune(net, method="magnitude", amount=0.5, granularity="neuron", data=(X, y), finetune_fraction=0.0)
