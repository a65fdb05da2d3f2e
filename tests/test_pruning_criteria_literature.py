"""The literature's importance criteria (issue 12): each one's defining identity on a tiny net,
and a hand-built net where it must remove another unit than magnitude pruning does."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import certprune
from certprune.errors import ConfigError
from certprune.pruning.criteria import criterion
from certprune.pruning.criteria.base import ScoreContext
from certprune.pruning.criteria.budgets import budget_counts
from certprune.pruning.criteria.nisp import inf_fs
from certprune.pruning.criteria.o_information import o_information_gradients
from certprune.pruning.layers import unit_layers


def tiny(seed: int = 0, sizes=(3, 4, 2)) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        mods += [nn.Linear(sizes[i], sizes[i + 1])] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*mods).double().eval()


def data(n: int = 7, d: int = 3, classes: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def decoy(width: int = 6, nonneg: bool = False) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """2 -> width -> 2: hidden unit 0 has by far the largest incoming weights but no outgoing
    weight (it cannot matter); magnitude pruning removes the small units 1.. first."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 2)).double().eval()
    with torch.no_grad():
        w1 = torch.rand(width, 2, dtype=torch.float64) * 0.5 + 0.5
        w1[0] = 10.0
        net[0].weight.copy_(w1), net[0].bias.fill_(0.1)
        w2 = torch.rand(2, width, dtype=torch.float64) + 0.5 if nonneg else torch.randn(2, width, dtype=torch.float64)
        w2[:, 0] = 0.0
        net[2].weight.copy_(w2)
    g = torch.Generator().manual_seed(4)
    X = torch.rand(300, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = (net(X)[:, 1] > net(X)[:, 1].median()).long()  # labels the net can explain
    return net, X, y


def removed(method: str, net, X, y, amount: float, **kw) -> list[int]:
    _, manifest = certprune.prune(net.float(), method=method, amount=amount, granularity="neuron",
                                  data=(X.float(), y), **kw)
    return manifest.steps[0].units["0"]["removed"]


@pytest.mark.parametrize("method", ["taylor-group", "taylor-group2", "singe", "sosp-h", "gradient-redundancy",
                                    "causal-mi"])
def test_criterion_removes_the_unit_that_cannot_matter_where_magnitude_does_not(method):
    net, X, y = decoy()
    assert 0 not in removed("magnitude", net, X, y, 1 / 6)
    assert removed(method, net, X, y, 1 / 6) == [0]


def test_i_spasp_drops_the_unit_outside_the_residual_support_despite_its_size():
    net, X, y = decoy(nonneg=True)
    assert 0 not in removed("magnitude", net, X, y, 4 / 6)
    gone = removed("i-spasp", net, X, y, 4 / 6)
    assert len(gone) == 4 and 0 in gone


def test_nisp_propagates_absolute_weights_and_drops_a_unit_feeding_nothing():
    net = tiny(sizes=(3, 5, 4, 2))
    X, y = data(40)
    with torch.no_grad():
        net[0].weight[2] = 5.0  # biggest incoming weights ...
        net[2].weight[:, 2] = 0.0  # ... but nothing reaches the final response layer
    layers = unit_layers(net)
    scores = criterion("nisp").unit_scores(ScoreContext(net, X, y), layers)
    with torch.no_grad():
        frl = torch.relu(net[2](torch.relu(net[0](X))))
    s_frl = torch.from_numpy(inf_fs(frl.numpy()))
    torch.testing.assert_close(scores["2"], s_frl)
    torch.testing.assert_close(scores["0"], net[2].weight.detach().abs().T @ s_frl)
    assert scores["0"][2] == 0 and scores["0"].argmin() == 2
    assert criterion("magnitude").unit_scores(ScoreContext(net), layers)["0"].argmax() == 2


def test_inf_fs_equals_the_sum_over_all_path_lengths():
    F_ = np.random.default_rng(0).normal(size=(50, 4)) * [1.0, 2.0, 0.5, 1.5]
    F_[:, 3] = F_[:, 0] * 0.9 + 0.1 * F_[:, 3]
    from scipy import stats
    s = F_.std(0) / F_.std(0).max()
    A = 0.5 * np.maximum.outer(s, s) + 0.5 * (1 - np.abs(stats.spearmanr(F_).statistic))
    r = 0.9 / np.abs(np.linalg.eigvals(A)).max()
    series = sum(np.linalg.matrix_power(r * A, k) for k in range(1, 400)).sum(1)
    np.testing.assert_allclose(inf_fs(F_), series, rtol=1e-8)
    assert inf_fs(np.c_[F_, np.zeros(50)])[-1] == 0.0  # a constant response scores nothing


def test_taylor_group_is_the_square_of_the_summed_gradient_times_weight_per_batch():
    net, (X, y) = tiny(), data(8)
    ctx = ScoreContext(net, X, y, batch_size=4)
    scores = criterion("taylor-group").unit_scores(ctx, unit_layers(net))["0"]
    expect = torch.zeros(4, dtype=torch.float64)
    for s in (0, 4):
        W1, b1 = net[0].weight, net[0].bias
        gW, gb = torch.autograd.grad(F.cross_entropy(net(X[s:s + 4]), y[s:s + 4]), [W1, b1])
        expect += ((gW * W1).sum(1) + gb * b1).detach() ** 2 / 2
    torch.testing.assert_close(scores, expect)
    first_order_taylor = criterion("taylor").unit_scores(ScoreContext(net, X, y), unit_layers(net))["0"]
    assert not torch.allclose(scores, first_order_taylor ** 2)


def test_taylor_group2_matches_an_explicit_hessian_of_the_group():
    net, (X, y) = tiny(), data(6)
    W1, b1 = net[0].weight.detach(), net[0].bias.detach()
    theta = torch.cat([W1.reshape(-1), b1])

    def loss_of(t):
        W, b = t[:12].reshape(4, 3), t[12:]
        return F.cross_entropy(torch.relu(X @ W.T + b) @ net[2].weight.T + net[2].bias, y)
    g = torch.autograd.functional.jacobian(loss_of, theta)
    H = torch.autograd.functional.hessian(loss_of, theta)
    expect = []
    for i in range(4):
        m = torch.zeros_like(theta)
        m[i * 3:(i + 1) * 3], m[12 + i] = 1.0, 1.0
        v = theta * m
        expect.append((g @ v - 0.5 * v @ H @ v) ** 2)
    got = criterion("taylor-group2").unit_scores(ScoreContext(net, X, y), unit_layers(net))["0"]
    torch.testing.assert_close(got, torch.stack(expect))


@pytest.mark.parametrize("sizes, rel", [((3, 4, 2), 1e-5), ((3, 4, 3, 2), 2e-2)])
def test_singe_integral_matches_a_fine_riemann_sum(sizes, rel):
    """Smooth path (linear suffix): tight; a ReLU in the suffix makes the integrand jump: looser."""
    from certprune.pruning.criteria.singe import relevance
    net, (X, y) = tiny(sizes=sizes), data(9)
    layer = unit_layers(net)[0]
    with torch.no_grad():
        acts = torch.relu(net[0](X))
    got = relevance(ScoreContext(net, X, y), layer, acts, steps=256)
    grid = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    for c in range(4):
        total = 0.0
        for mu in grid:  # 1000-point midpoint sum of |dL/dmu|, dL/dmu by autograd on mu itself
            m = mu.clone().requires_grad_(True)
            scale = torch.ones(4, dtype=torch.float64)
            scale = torch.where(torch.arange(4) == c, m, scale)
            loss = F.cross_entropy(net[2:](acts * scale), y)
            (d,) = torch.autograd.grad(loss, m)
            total += abs(float(d)) / 1000
        assert got[c].item() == pytest.approx(total, rel=rel, abs=1e-12)


def test_sosp_h_matches_an_explicit_gauss_newton_hessian():
    net, (X, y) = tiny(), data(5)
    params = list(net.parameters())
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    sizes = [p.numel() for p in params]

    def logits_of(t):
        ps = [c.reshape(p.shape) for c, p in zip(torch.split(t, sizes), params)]
        return torch.relu(X @ ps[0].T + ps[1]) @ ps[2].T + ps[3]
    J = torch.autograd.functional.jacobian(logits_of, theta)  # (N, K, P)
    p = torch.softmax(logits_of(theta), 1)
    Hl = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    H = torch.einsum("nkp,nkl,nlq->pq", J, Hl, J) / len(X)
    h_theta = H @ theta
    expect = []
    for i in range(4):
        idx = [i * 3 + j for j in range(3)] + [12 + i]
        expect.append((theta[idx] * h_theta[idx]).sum().abs())
    got = criterion("sosp-h").unit_scores(ScoreContext(net, X, y), unit_layers(net))["0"]
    torch.testing.assert_close(got, torch.stack(expect))


def test_gradient_redundancy_of_a_binary_classifiers_last_layer_is_rank_one():
    from certprune.pruning.criteria.gradient_redundancy import max_redundancy
    net, (X, y) = tiny(sizes=(3, 6, 5, 2)), data(60)
    layers = unit_layers(net)
    red = max_redundancy(ScoreContext(net, X, y), layers)
    assert red["2"] == pytest.approx(1 - 1 / 5)  # dl/da = (p0 - onehot0) (W2[0] - W2[1]): one direction
    lev = criterion("gradient-redundancy").unit_scores(ScoreContext(net, X, y), layers)["2"]
    d = (net[4].weight[0] - net[4].weight[1]).detach()
    torch.testing.assert_close(lev, d ** 2 / (d ** 2).sum())
    _, manifest = certprune.prune(net.float(), method="gradient-redundancy", amount=0.5, granularity="neuron",
                                  data=(X.float(), y))
    units = manifest.steps[0].units
    assert len(units["2"]["removed"]) / 5 > len(units["0"]["removed"]) / 6  # the redundant layer gives more


def test_gradient_redundancy_and_m_info_flow_run_the_model_once_per_step():
    net, (X, y) = tiny(sizes=(3, 6, 5, 2)), data(60)
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    crit, layers, ctx = criterion("gradient-redundancy"), unit_layers(net), ScoreContext(net, X, y)
    scores, shares = crit.unit_scores(ctx, layers), crit.layer_budgets(ctx, layers, 0.5)  # as one prune step asks
    assert len(calls) == 1  # scores and budgets share one gradient pass (60 rows: one batch)
    assert set(scores) == set(shares) == {"0", "2"}
    crit.layer_budgets(ScoreContext(net, X, y), layers, 0.5)
    assert len(calls) == 2  # a new context (a new step) is analysed afresh
    calls.clear()
    Xz = X.clone()
    Xz[:, 0] = (Xz[:, 0] > 0).double()
    criterion("m-info-flow").unit_scores(ScoreContext(net.float(), Xz.float(), y, protected=0), unit_layers(net))
    assert len(calls) == 1  # one forward pass for both hidden layers


def test_budget_counts_are_exact_and_never_empty_a_layer():
    assert budget_counts({"a": 0.5, "b": 0.5}, {"a": 128, "b": 128}, 0.5) == {"a": 64, "b": 64}
    c = budget_counts({"a": 1.0, "b": 0.0}, {"a": 10, "b": 100}, 0.5)
    assert c == {"a": 9, "b": 46} and sum(c.values()) == 55


def _brute_o_information(cov: np.ndarray) -> float:
    n = len(cov)
    H = lambda idx: 0.5 * np.linalg.slogdet(cov[np.ix_(idx, idx)])[1] + 0.5 * len(idx) * np.log(2 * np.pi * np.e)  # noqa: E731
    every = list(range(n))
    return (n - 2) * H(every) + sum(H([i]) - H([j for j in every if j != i]) for i in every)


def test_o_information_and_its_gradients_match_brute_force_entropies():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(6, 6))
    cov = M @ M.T + 0.5 * np.eye(6)
    omega, grad = o_information_gradients(cov)
    assert omega == pytest.approx(_brute_o_information(cov))
    for i in range(6):
        rest = [j for j in range(6) if j != i]
        assert grad[i] == pytest.approx(omega - _brute_o_information(cov[np.ix_(rest, rest)]))


def test_o_information_removes_a_redundant_copy_and_keeps_a_synergistic_triplet():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(2000, 3, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).double().eval()
    with torch.no_grad():  # units: x0, x1, x0 + x1 (synergy: x2 is only known from both), x2, x2 again
        net[0].weight.copy_(torch.tensor([[1., 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 3], [0, 0, 2.9]]))
        net[0].bias.fill_(0.0)
    ctx = ScoreContext(net, X, torch.zeros(2000, dtype=torch.long))
    s = criterion("o-information").unit_scores(ctx, unit_layers(net))["0"]
    assert set(torch.argsort(s)[:2].tolist()) == {3, 4}  # the redundant pair goes first
    assert 3 in criterion("magnitude").unit_scores(ScoreContext(net), unit_layers(net))["0"].argsort()[-1:].tolist()


def test_m_info_flow_prunes_the_neuron_that_carries_the_protected_attribute():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(600, 3, generator=g, dtype=torch.float64)
    X[:, 0] = (X[:, 0] > 0.5).double()  # protected attribute, independent of the label
    y = (X[:, 1] > 0.5).long()
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    with torch.no_grad():  # unit 0 copies z (big weight), unit 1 copies x1 (the label), unit 2 mixes
        net[0].weight.copy_(torch.tensor([[4.0, 0, 0], [0, 1.0, 0], [0.0, 0.5, 0.4]]))
        net[0].bias.fill_(0.01)
    assert removed("magnitude", net, X, y, 1 / 3) != [0]
    assert removed("m-info-flow", net, X, y, 1 / 3, protected=0) == [0]
    with pytest.raises(ConfigError, match="protected"):
        removed("m-info-flow", net, X, y, 1 / 3)
    # edges: the flow of a node is shared by its outgoing edges in proportion to |w| * std
    layers = [("2", net[2])]
    flows = criterion("m-info-flow").weight_scores(ScoreContext(net, X.float(), y, protected=0), layers)["2"]
    assert flows.shape == net[2].weight.shape
    assert (flows[:, 0] < 0).all() and (flows[:, 1] > 0).all()  # z's edges: bias > accuracy; x1's: the reverse
    pruned, _ = certprune.prune(net.float(), method="m-info-flow", amount=1 / 3, data=(X.float(), y), protected=0,
                                scope="local")
    assert (pruned[2].weight[:, 0] == 0).all() and (pruned[2].weight[:, 1] != 0).all()


@pytest.mark.parametrize("method", ["taylor-group", "taylor-group2", "nisp", "singe", "sosp-h", "i-spasp",
                                    "gradient-redundancy", "causal-mi", "o-information"])
def test_literature_criteria_prune_a_batchnorm_convnet_structurally(method):
    from test_pruning_structural import convnet_bn
    net = convnet_bn()
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(48, 1, 8, 8, generator=g), torch.randint(0, 4, (48,), generator=g)
    pruned, manifest = certprune.prune(net, method=method, amount=0.5, granularity="structured", data=(X, y))
    assert sum(len(u["removed"]) for u in manifest.steps[0].units.values()) == 9
    assert pruned(X).shape == (48, 4)


@pytest.mark.parametrize("method", ["taylor-group", "nisp", "singe", "sosp-h", "i-spasp", "gradient-redundancy",
                                    "causal-mi", "o-information", "m-info-flow"])
def test_literature_criteria_need_data_and_units(method):
    with pytest.raises(ConfigError, match="needs|neurons"):
        certprune.prune(tiny().float(), method=method, amount=0.5, granularity="neuron")
