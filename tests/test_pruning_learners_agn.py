"""AGN: the truncated-multiplier error model exactly, the simulation on a hand case, learned noise
tolerances, and bounds with multiplier errors (equivalence of the perturbed graph, soundness by
sampling, agreement with plain CROWN when the error is zero)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certprune
from certprune.pruning.learners import agn
from certprune.pruning.learners.approx_mult import energy_factor, truncation_stats, worst_error
from conftest import random_mlp


def test_truncation_error_statistics_exactly():
    assert truncation_stats(0) == (0.0, 0.0)
    mean, std = truncation_stats(1)  # a*b odd iff both odd: P = 1/4
    assert mean == pytest.approx(0.25) and std == pytest.approx((0.25 * 0.75) ** 0.5)
    mean2, _ = truncation_stats(2, bits=2)  # a, b in 0..3: products mod 4 by hand
    assert mean2 == pytest.approx(sum((a * b) % 4 for a in range(4) for b in range(4)) / 16)
    assert worst_error(3) == 7


def test_energy_factor_counts_partial_product_cells():
    assert energy_factor(0) == 1.0 and energy_factor(15) == pytest.approx(0.0)
    assert energy_factor(1) == pytest.approx(63 / 64) and energy_factor(3) == pytest.approx(1 - 6 / 64)


def test_simulation_on_a_hand_built_layer():
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, -1.0]]))
        layer.bias.copy_(torch.tensor([0.5]))
    net = nn.Sequential(layer)
    x = torch.tensor([[5.0, 7.0]])
    plan = [agn.LayerPlan(2, 1.0, 1.0)]  # codes equal the values: 3*5 = 15 -> 12, 1*7 = 7 -> 4
    assert agn.simulate(net, x, plan, bits=8).item() == pytest.approx(12 - 4 + 0.5)
    exact = [agn.LayerPlan(0, 1.0, 1.0)]
    assert agn.simulate(net, x, exact, bits=8).item() == pytest.approx(net(x).item())


def test_perturbed_network_adds_each_layers_delta():
    model = random_mlp([5, 6, 4, 3], seed=2).double()
    radii = [torch.full((6,), 0.3, dtype=torch.float64), torch.full((4,), 0.2, dtype=torch.float64),
             torch.full((3,), 0.1, dtype=torch.float64)]
    net = agn.perturbed_network(model, radii)
    x = torch.rand(8, 5, dtype=torch.float64)
    d = [(2 * torch.rand(8, r.numel(), dtype=torch.float64) - 1) * r for r in radii]
    h = x
    for k, lin in enumerate([model[0], model[2], model[4]]):
        h = lin(h) + d[k]
        h = torch.relu(h) if k < 2 else h
    with torch.no_grad():
        assert torch.allclose(net(torch.cat([x, *d], 1)), h, atol=1e-12)


@pytest.fixture(scope="module")
def trained():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(400, 6, generator=g)
    y = X[:, :3].argmax(1)
    model, manifest = certprune.prune(random_mlp([6, 16, 3], seed=1), method="agn", data=(X, y), agn_epochs=6,
                                      lr=0.01, batch_size=32, agn_lambda=0.05)
    return model, manifest, X, y


def test_learned_tolerances_map_to_multipliers_within_the_accuracy_tolerance(trained):
    model, manifest, X, y = trained
    st = manifest.config["learned"]
    assert all(s > 0.01 for s in st["sigma"])  # the noise reward raised sigma above its start
    assert st["val_acc_approx"] >= st["val_acc_float"] - 0.01
    assert 0.0 < st["energy_saving"] < 1.0 and any(t > 0 for t in st["truncation"])
    plans = agn.plans_from_stats(st)
    assert st["energy_saving"] == pytest.approx(agn.energy_saving(model, plans, 8))


def test_bounds_with_multiplier_error_are_sound_and_reduce_to_crown_at_zero_error(trained):
    from certprune.pruning.metrics import crown_certified
    model, manifest, X, y = trained
    plans = agn.plans_from_stats(manifest.config["learned"])
    Xv, yv, eps = X[:60], y[:60], 0.02
    zero = [agn.LayerPlan(0, p.dw, p.dx) for p in plans]
    plain, _ = crown_certified(model, Xv, yv, eps)
    assert torch.equal(agn.certified_with_multiplier_error(model, Xv, yv, eps, zero), torch.from_numpy(plain))
    small = [agn.LayerPlan(min(p.t, 3), p.dw, p.dx) for p in plans]
    cert = agn.certified_with_multiplier_error(model, Xv, yv, eps, small)
    assert cert.sum() > 0 and (cert <= torch.from_numpy(plain)).all()
    radii = agn.error_radius(model, small)
    net = agn.perturbed_network(model, radii)
    g = torch.Generator().manual_seed(1)
    for i in torch.nonzero(cert).flatten().tolist():
        xs = (Xv[i] + eps * (2 * torch.rand(200, 6, generator=g) - 1)).clamp(0, 1).double()
        ds = [(2 * torch.rand(200, r.numel(), generator=g, dtype=torch.float64) - 1) * r for r in radii]
        with torch.no_grad():
            assert (net(torch.cat([xs, *ds], 1)).argmax(1) == yv[i]).all()


def test_agn_refuses_non_mlp_models():
    from certprune.errors import UnsupportedModelError
    with pytest.raises(UnsupportedModelError, match="Conv2d"):
        agn.linear_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)))


def test_the_error_radius_covers_the_simulated_multipliers_error():
    """Per pre-activation, truncated products differ from exact quantised products by at most
    error_radius (the perturbation the certificate allows), and the bound is not loose by orders
    of magnitude on a layer whose inputs all use the top codes."""
    g = torch.Generator().manual_seed(3)
    layer = nn.Linear(40, 7)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(7, 40, generator=g))
        layer.weight[0, :10] = 0.0  # zero weights carry no error
    net = nn.Sequential(layer)
    X = torch.rand(64, 40, generator=g)
    (dw, dx), = agn.quant_steps(net, X, 8)
    for t in (1, 4, 7):
        radius = agn.error_radius(net, [agn.LayerPlan(t, dw, dx)])[0]
        diff = agn.simulate(net, X, [agn.LayerPlan(t, dw, dx)], 8) - agn.simulate(net, X, [agn.LayerPlan(0, dw, dx)], 8)
        assert (diff.abs() <= radius + 1e-9).all()
        assert diff.abs().max() > 0.05 * radius.max()
    assert radius[0] == pytest.approx(worst_error(7) * dw * dx * 30)
