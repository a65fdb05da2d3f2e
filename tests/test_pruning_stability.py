"""Stability scores, the stability loss, and stability pruning on a trained digits MLP."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certprune
from certprune.pruning.metrics import crown_certified
from certprune.pruning.stability import ibp_preactivations, perturbation_boxes, stability_loss
from certprune.verifiers.bounds import compute_bounds
from conftest import REPO
from test_pruning_structural import convnet_bn


@pytest.fixture(scope="module")
def digits_mlp():
    """The bundled digits MLP (64-32-32-10, trained on digits images 0..1499) and the data."""
    from certprune.datasets import load_digits
    from certprune.network import load_model
    X, y = load_digits()
    net = load_model(REPO / "certprune" / "models" / "digits_mlp.onnx")
    return net, torch.from_numpy(X), torch.from_numpy(y)


@pytest.mark.parametrize("make, shape", [(lambda: convnet_bn(), (1, 8, 8)),
                                         (lambda: nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(),
                                                                nn.Linear(4, 2)), (5,))])
def test_differentiable_ibp_agrees_with_native_ibp(make, shape):
    torch.manual_seed(0)
    model = make().eval()
    X = torch.rand(6, *shape)
    lo, hi = perturbation_boxes(X, 0.05, (0.0, 1.0))
    ours = ibp_preactivations(model.double(), lo.double(), hi.double())
    native = compute_bounds(model, lo, hi, method="ibp", return_intermediate=True, engine="native",
                            input_shape=shape).intermediate
    assert len(ours) == len(native)
    for (l, u), (nl, nu) in zip(ours, native):
        torch.testing.assert_close(l.reshape(len(X), -1), nl, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(u.reshape(len(X), -1), nu, rtol=1e-9, atol=1e-9)


def test_ibp_bounds_contain_sampled_preactivations():
    model = convnet_bn().eval()
    x = torch.rand(1, 1, 8, 8)
    lo, hi = perturbation_boxes(x, 0.1, (0.0, 1.0))
    bounds = ibp_preactivations(model, lo, hi)
    pts = lo + (hi - lo) * torch.rand(500, 1, 8, 8)
    acts = []
    hooks = [m.register_forward_hook(lambda _m, i, _o: acts.append(i[0])) for m in model if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(pts)
    for h in hooks:
        h.remove()
    for (l, u), a in zip(bounds, acts):
        assert (a >= l - 1e-5).all() and (a <= u + 1e-5).all()


def test_stability_loss_is_differentiable_and_in_range():
    model = convnet_bn().train()
    x = torch.rand(4, 1, 8, 8)
    loss = stability_loss(model, x, 0.05)
    loss.backward()
    assert -1.0 <= float(loss.detach()) <= 1.0
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


def test_stability_pruning_removes_more_unstable_relus_than_magnitude(digits_mlp):
    net, X, y = digits_mlp
    eps, data, held_X, held_y = 0.02, (X[:1500], y[:1500]), X[1500:1700], y[1500:1700]
    unstable = {}
    for method in ("stability", "magnitude"):
        pruned, _ = certprune.prune(net, method=method, amount=0.5, granularity="neuron", data=data, epsilon=eps,
                                    scope="global", seed=0)
        unstable[method] = crown_certified(pruned, held_X, held_y, eps)[1].mean()
    dense = crown_certified(net, held_X, held_y, eps)[1].mean()
    assert unstable["stability"] < unstable["magnitude"] < dense
    assert unstable["stability"] < 0.5 * unstable["magnitude"]


@pytest.mark.slow
def test_stability_loss_finetuning_reduces_unstable_relus(digits_mlp):
    net, X, y = digits_mlp
    eps, held_X, held_y = 0.02, X[1500:1700], y[1500:1700]
    plain, _ = certprune.prune(net, method="stability", amount=0.5, granularity="neuron", data=(X[:1500], y[:1500]),
                               epsilon=eps, finetune_epochs=10, lr=3e-3)
    loss, _ = certprune.prune(net, method="stability", amount=0.5, granularity="neuron", data=(X[:1500], y[:1500]),
                              epsilon=eps, finetune_epochs=10, lr=3e-3, stability_weight=1.0)
    assert crown_certified(loss, held_X, held_y, eps)[1].mean() < 0.8 * crown_certified(plain, held_X, held_y, eps)[1].mean()
