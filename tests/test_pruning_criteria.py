"""Every criterion on a tiny net with a known answer."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import certprune
from certprune.errors import ConfigError
from certprune.pruning.criteria import criterion
from certprune.pruning.criteria.base import ScoreContext
from certprune.pruning.criteria.slimming import slimming_penalty
from certprune.pruning.layers import unit_layers, weight_layers


def two_layer(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()


def data(n: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g)


def by_hand(net, X, y):
    """Activations a = relu(W1 x + b1) and per-sample dl/da = W2^T (softmax - onehot)."""
    W1, b1, W2, b2 = (p.detach() for p in net.parameters())
    a = torch.relu(X @ W1.T + b1)
    p = torch.softmax(a @ W2.T + b2, dim=1)
    delta = p - F.one_hot(y, 2).double()
    return a, delta @ W2, delta


def test_taylor_units_equal_activation_times_gradient_by_hand():
    net, (X, y) = two_layer(), data()
    a, g, _ = by_hand(net, X, y)
    scores = criterion("taylor").unit_scores(ScoreContext(net, X, y), unit_layers(net))
    torch.testing.assert_close(scores["0"], (a * g).abs().mean(0), rtol=1e-10, atol=1e-12)


def test_taylor_and_snip_weights_by_hand():
    net, (X, y) = two_layer(), data()
    a, _, delta = by_hand(net, X, y)
    grad_w2 = delta.T @ a / len(X)  # gradient of the mean cross-entropy w.r.t. W2
    layers = weight_layers(net)
    taylor = criterion("taylor").weight_scores(ScoreContext(net, X, y), layers)
    torch.testing.assert_close(taylor["2"], (net[2].weight.detach() * grad_w2).abs(), rtol=1e-10, atol=1e-12)
    snip = criterion("snip").weight_scores(ScoreContext(net, X, y), layers)
    total = sum(v.sum() for v in taylor.values())
    torch.testing.assert_close(snip["2"], taylor["2"] / total)
    assert sum(float(v.sum()) for v in snip.values()) == pytest.approx(1.0)


def test_magnitude_units_remove_the_smallest_rows():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, -1.0], [0.5, 0.5], [-2.0, 0.0]]))
    l1 = criterion("magnitude").unit_scores(ScoreContext(net), unit_layers(net))["0"]
    l2 = criterion("l2").unit_scores(ScoreContext(net, norm="l2"), unit_layers(net))["0"]
    assert l1.tolist() == [4.0, 1.0, 2.0] and l2.tolist() == pytest.approx([10 ** 0.5, 0.5 ** 0.5, 2.0])
    pruned, manifest = certprune.prune(net, method="magnitude", amount=1 / 3, granularity="neuron")
    assert manifest.steps[0].units["0"] == {"kept": [0, 2], "removed": [1]}
    assert pruned[0].weight.tolist() == [[3.0, -1.0], [-2.0, 0.0]]


def test_obd_exact_diagonal_matches_autograd_hessian():
    net, (X, y) = two_layer(), data()
    W2 = net[2].weight
    diag = criterion("obd").hessian_diagonal(ScoreContext(net, X, y), [W2])[0]

    def loss_of(w):
        return F.cross_entropy(torch.relu(X @ net[0].weight.T + net[0].bias) @ w.T + net[2].bias, y)
    H = torch.autograd.functional.hessian(loss_of, W2.detach()).reshape(W2.numel(), W2.numel())
    torch.testing.assert_close(diag.reshape(-1), H.diagonal(), rtol=1e-8, atol=1e-12)
    scores = criterion("obd").weight_scores(ScoreContext(net, X, y), weight_layers(net))
    torch.testing.assert_close(scores["2"], 0.5 * diag * W2.detach() ** 2)


def test_obd_hutchinson_estimate_is_close_to_exact():
    net, (X, y) = two_layer(), data()
    exact = criterion("obd").hessian_diagonal(ScoreContext(net, X, y), [net[2].weight])[0]
    approx = criterion("obd").hessian_diagonal(ScoreContext(net, X, y, hvp_samples=800), [net[2].weight])[0]
    assert (approx - exact).abs().max() < 0.2 * exact.abs().max()


def test_slimming_scores_are_batchnorm_gammas():
    net = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.5, -0.1, 2.0, 0.3]))
    assert criterion("slimming").unit_scores(ScoreContext(net), unit_layers(net))["0"].tolist() == \
        pytest.approx([0.5, 0.1, 2.0, 0.3])
    _, manifest = certprune.prune(net, method="slimming", amount=0.5, granularity="neuron")
    assert manifest.steps[0].units["0"]["removed"] == [1, 3]
    assert float(slimming_penalty(net).detach()) == pytest.approx(2.9)


def test_slimming_without_batchnorm_is_a_clear_error():
    with pytest.raises(ConfigError, match="BatchNorm"):
        certprune.prune(two_layer(), method="slimming", amount=0.5, granularity="neuron")


def test_stability_score_is_tanh_of_bound_product():
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, 10.0]))
    X = torch.zeros(1, 1)
    ctx = ScoreContext(net, X, torch.zeros(1, dtype=torch.long), epsilon=0.1, domain=None)
    s = criterion("stability").unit_scores(ctx, unit_layers(net))["0"]
    assert s.tolist() == pytest.approx([torch.tanh(torch.tensor(1 - 0.01)).item(), torch.tanh(torch.tensor(1 + 9.9 * 10.1)).item()])
    _, manifest = certprune.prune(net, method="stability", amount=0.5, granularity="neuron", data=(X, torch.zeros(1)),
                                  epsilon=0.1, domain=None)
    assert manifest.steps[0].units["0"]["removed"] == [0]


def test_stability_score_divides_by_batchnorm_scale_squared():
    net = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1), nn.ReLU(), nn.Linear(1, 1)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0), net[0].bias.fill_(0.0)
        net[1].weight.fill_(2.0), net[1].bias.fill_(0.0), net[1].running_var.fill_(4.0 - net[1].eps)
    ctx = ScoreContext(net, torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), epsilon=0.5, domain=None)
    s = criterion("stability").unit_scores(ctx, unit_layers(net))["0"]
    # post-BN bounds are +-0.5 * (2 / 2) = +-0.5 and s = 1: tanh(1 - 0.25)
    assert s.item() == pytest.approx(torch.tanh(torch.tensor(0.75)).item())


def test_random_scores_are_seeded():
    net = two_layer()
    a = criterion("random").unit_scores(ScoreContext(net, seed=4), unit_layers(net))
    b = criterion("random").unit_scores(ScoreContext(net, seed=4), unit_layers(net))
    c = criterion("random").unit_scores(ScoreContext(net, seed=5), unit_layers(net))
    assert torch.equal(a["0"], b["0"]) and not torch.equal(a["0"], c["0"])


@pytest.mark.parametrize("method", ["taylor", "obd", "snip", "stability"])
def test_data_driven_criteria_without_data_are_rejected(method):
    with pytest.raises(ConfigError, match="needs"):
        certprune.prune(two_layer().float(), method=method, amount=0.5, granularity="neuron", epsilon=0.1)


def test_unknown_method_is_rejected():
    with pytest.raises(ConfigError, match="unknown pruning method 'lottery'"):
        certprune.prune(two_layer(), method="lottery", amount=0.5)


def test_stability_needs_epsilon_and_units():
    X, y = data()
    with pytest.raises(ConfigError, match="epsilon"):
        certprune.prune(two_layer().float(), method="stability", amount=0.5, granularity="neuron", data=(X, y))
    with pytest.raises(ConfigError, match="neurons/channels"):
        certprune.prune(two_layer().float(), method="stability", amount=0.5, data=(X, y), epsilon=0.1)


def test_stability_channel_scores_sum_is_mean_times_positions():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    X = torch.rand(5, 1, 6, 6)
    ctx = dict(X=X, y=torch.zeros(5, dtype=torch.long), epsilon=0.05)
    mean = criterion("stability").unit_scores(ScoreContext(net, **ctx), unit_layers(net))["0"]
    total = criterion("stability").unit_scores(ScoreContext(net, stability_reduce="sum", **ctx), unit_layers(net))["0"]
    torch.testing.assert_close(total, 16 * mean)
    with pytest.raises(ConfigError, match="reduction"):
        criterion("stability").unit_scores(ScoreContext(net, stability_reduce="max", **ctx), unit_layers(net))
