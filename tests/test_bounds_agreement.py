"""Exact values on a hand-built net, native vs auto_LiRPA agreement, alpha-CROWN vs CROWN,
neuron_stability against a brute-force count, and the auto_LiRPA compatibility patches."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from certprune.verifiers.bounds import compute_bounds, neuron_stability
from tests.conftest import random_mlp
from tests.test_bounds_soundness import random_boxes, small_convnet

AGREE = 1e-6  # goal of the issue (1e-5 required); measured ~1e-15


def hand_net() -> nn.Sequential:
    """z1 = x1 + x2 + 1, z2 = x1 - x2; y1 = relu(z1) + relu(z2), y2 = relu(z1) - relu(z2)."""
    l1, l2 = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        l1.bias.copy_(torch.tensor([1.0, 0.0]))
        l2.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        l2.bias.zero_()
    return nn.Sequential(l1, nn.ReLU(), l2).eval()


# Box x1, x2 in [-1, 1]. Pre-activations (exact for every method): z1 in [-1, 3], z2 in [-2, 2].
# IBP: relu(z1) in [0, 3], relu(z2) in [0, 2]  =>  y1 in [0, 5], y2 in [0 - 2, 3 - 0] = [-2, 3].
# CROWN relaxations: z1: chord slope 3/4, intercept 3/4; u = 3 > -l = 1 so lower slope 1.
#                    z2: chord slope 1/2, intercept 1;   u = 2 = -l (not >) so lower slope 0.
#   y1 upper: 3/4 z1 + 3/4 + 1/2 z2 + 1 = 1.25 x1 + 0.25 x2 + 2.5   -> max 4
#   y1 lower: 1 * z1 + 0 * z2 = x1 + x2 + 1                         -> min -1 (looser than IBP's 0:
#             pure CROWN, as auto_LiRPA, does not intersect with IBP)
#   y2 upper: 3/4 z1 + 3/4 - 0 * z2 = 0.75 x1 + 0.75 x2 + 1.5        -> max 3
#   y2 lower: z1 - (1/2 z2 + 1) = 0.5 x1 + 1.5 x2                    -> min -2
# alpha-CROWN, y1 lower: a1 z1 + a2 z2 has min -(a1 + a2) - |a1 - a2| + a1, best at a1 = a2 = 0: 0.
#             y2 lower: a1 z1 - (1/2 z2 + 1) = (a1 - 0.5) x1 + (a1 + 0.5) x2 + a1 - 1 has min
#             -|a1 - 0.5| - 1.5, best at a1 = 0.5: -1.5 (the true minimum is -1). Upper bounds
#             use only chords, so they stay at CROWN's.
HAND_LO, HAND_HI = [-1.0, -1.0], [1.0, 1.0]
HAND = {
    "ibp": ([0.0, -2.0], [5.0, 3.0]),
    "crown": ([-1.0, -2.0], [4.0, 3.0]),
    "alpha-crown": ([0.0, -1.5], [4.0, 3.0]),
}


@pytest.mark.parametrize("engine", ["native", "lirpa"])
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_hand_built_net_exact_values(method, engine):
    b = compute_bounds(hand_net(), HAND_LO, HAND_HI, method=method, engine=engine, return_intermediate=True)
    lower, upper = HAND[method]
    torch.testing.assert_close(b.lower[0], torch.tensor(lower, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(b.upper[0], torch.tensor(upper, dtype=torch.float64), rtol=0, atol=1e-12)
    (l, u), = b.intermediate
    torch.testing.assert_close(l[0], torch.tensor([-1.0, -2.0], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(u[0], torch.tensor([3.0, 2.0], dtype=torch.float64), rtol=0, atol=1e-12)


def test_hand_built_net_alpha_crown_reaches_the_optimum():
    b = compute_bounds(hand_net(), HAND_LO, HAND_HI, method="alpha-crown", engine="native")
    lower, upper = HAND["alpha-crown"]
    torch.testing.assert_close(b.lower[0], torch.tensor(lower, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(b.upper[0], torch.tensor(upper, dtype=torch.float64), rtol=0, atol=1e-12)
    assert b.lower[0, 0] <= 1e-12  # never above the true minimum 0 (x = (-1, 1) gives y1 = 0 + 0)


def test_hand_built_net_intersect_ibp_option():
    # CROWN [-1, 4] x [-2, 3] intersected with IBP [0, 5] x [-2, 3]
    b = compute_bounds(hand_net(), HAND_LO, HAND_HI, method="crown", engine="native", intersect_ibp=True)
    torch.testing.assert_close(b.lower[0], torch.tensor([0.0, -2.0], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(b.upper[0], torch.tensor([4.0, 3.0], dtype=torch.float64), rtol=0, atol=1e-12)


AGREE_NETS = {
    "mlp_bench": (lambda: random_mlp([20, 50, 30, 15, 10, 1], seed=0), (20,)),
    "mlp_wide_out": (lambda: random_mlp([8, 32, 32, 32, 5], seed=5), (8,)),
    "conv_bn": (lambda: small_convnet(1), (1, 8, 8)),
}


@pytest.mark.parametrize("name", list(AGREE_NETS))
def test_native_crown_agrees_with_auto_lirpa(name):
    build, shape = AGREE_NETS[name]
    model = build()
    for radius, seed in ((0.05, 0), (0.5, 1)):
        lo, hi = random_boxes(shape, 64, seed)
        lo, hi = (lo + hi) / 2 - radius * (hi - lo), (lo + hi) / 2 + radius * (hi - lo)
        a = compute_bounds(model, lo, hi, method="crown", engine="native", intermediate="all", return_intermediate=True, input_shape=shape)
        b = compute_bounds(model, lo, hi, method="crown", engine="lirpa", return_intermediate=True, input_shape=shape)
        assert (a.lower - b.lower).abs().max() < AGREE and (a.upper - b.upper).abs().max() < AGREE
        for (l1, u1), (l2, u2) in zip(a.intermediate, b.intermediate):
            assert (l1 - l2).abs().max() < AGREE and (u1 - u2).abs().max() < AGREE
        assert (a.upper - a.lower).min() > 0  # not a degenerate comparison


def test_native_agrees_with_auto_lirpa_for_ibp_forward_and_spec_matrix():
    model = random_mlp([6, 20, 20, 3], seed=9)
    lo, hi = random_boxes((6,), 32, seed=4)
    C = torch.randn(32, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kw in ({"method": "ibp"}, {"method": "ibp", "C": C}, {"method": "crown", "mode": "forward"},
               {"method": "crown", "C": C},
               {"method": "crown", "mode": "forward", "C": C[0]}):
        a = compute_bounds(model, lo, hi, engine="native", **kw)
        b = compute_bounds(model, lo, hi, engine="lirpa", **kw)
        assert a.method == b.method
        assert (a.lower - b.lower).abs().max() < AGREE and (a.upper - b.upper).abs().max() < AGREE, kw
    from certprune.verifiers.bounds import affine_net  # the canonical form also goes through auto_LiRPA
    a = compute_bounds(affine_net(model, (6,)), lo, hi, engine="lirpa")
    b = compute_bounds(model, lo, hi, engine="native")
    assert (a.lower - b.lower).abs().max() < AGREE and (a.upper - b.upper).abs().max() < AGREE


@pytest.mark.parametrize("name", ["mlp_bench", "mlp_wide_out"])
def test_alpha_crown_never_looser_than_crown(name):
    build, shape = AGREE_NETS[name]
    model = build()
    lo, hi = random_boxes(shape, 50, seed=2)
    c = compute_bounds(model, lo, hi, method="crown", engine="native")
    a = compute_bounds(model, lo, hi, method="alpha-crown", engine="native")
    assert (a.lower >= c.lower - 1e-12).all() and (a.upper <= c.upper + 1e-12).all()
    assert (a.upper - a.lower).sum() < (c.upper - c.lower).sum()  # and it does tighten somewhere


def test_alpha_crown_sound_for_any_slopes():
    """The bound with random slopes in [0, 1] still contains sampled outputs (soundness of the
    relaxation for every alpha, which is what makes optimising them safe)."""
    from certprune.bounds import crown
    from certprune.graph import build_graph
    from certprune.verifiers.bounds import affine_net
    model = random_mlp([4, 16, 16, 2], seed=3)
    net = affine_net(model, (4,))
    g = build_graph(net)
    lo, hi = random_boxes((4,), 8, seed=6)
    st = crown.intermediate(g, lo, hi)
    gen = torch.Generator().manual_seed(1)
    alphas = {i: torch.rand(8, 4, g.nodes[i].size, generator=gen, dtype=torch.float64) for i in g.relu_nodes}
    C = torch.cat([torch.eye(2), -torch.eye(2)]).double()
    r = crown.backward(g, g.output, C.unsqueeze(0), st, alphas).lower
    x = lo.unsqueeze(1) + torch.rand(8, 5000, 4, generator=gen, dtype=torch.float64) * (hi - lo).unsqueeze(1)
    y = net.forward(x.reshape(-1, 4)).reshape(8, 5000, 2)
    assert (y >= r[:, None, :2] - 1e-9).all() and (-y >= r[:, None, 2:] - 1e-9).all()


def test_neuron_stability_matches_brute_force_count():
    model = random_mlp([6, 20, 15, 10, 2], seed=4)
    lo, hi = random_boxes((6,), 40, seed=8)
    for method in ("ibp", "crown"):
        df = neuron_stability(model, lo, hi, method=method)
        b = compute_bounds(model, lo, hi, method=method, return_intermediate=True)
        assert list(df["layer"]) == [0, 1, 2] and list(df["neurons"]) == [20, 15, 10]
        for j, (l, u) in enumerate(b.intermediate):
            active = inactive = unstable = 0
            for i in range(l.shape[0]):
                for k in range(l.shape[1]):
                    if u[i, k] <= 0:
                        inactive += 1
                    elif l[i, k] >= 0:
                        active += 1
                    else:
                        unstable += 1
            row = df.iloc[j]
            assert (row["active"], row["inactive"], row["unstable"]) == (active, inactive, unstable)
            assert active + inactive + unstable == 40 * l.shape[1]
        assert df["unstable"].sum() > 0 and df["active"].sum() > 0 and df["inactive"].sum() > 0


def test_lirpa_compat_patches_are_in_place_and_idempotent():
    """Fails loudly if a future torch/numpy moves what the four patches rely on."""
    import sys

    import numpy as np

    from certprune.verifiers import lirpa_compat
    lirpa_compat.apply_patches()
    lirpa_compat.apply_patches()  # idempotent
    # 1. numpy.lib.arraysetops.isin
    from numpy.lib.arraysetops import isin
    assert isin(np.array([1, 2, 3]), [2]).tolist() == [False, True, False]
    # 2. _set_opset_version sets the TorchScript exporter's opset global
    import importlib
    helper = importlib.import_module("torch.onnx.symbolic_helper")
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    old = GLOBALS.export_onnx_opset_version
    try:
        helper._set_opset_version(12)
        assert GLOBALS.export_onnx_opset_version == 12
    finally:
        GLOBALS.export_onnx_opset_version = old
    # 3. node[k] reads typed attributes of a traced graph node
    conv = nn.Conv2d(1, 2, 3, stride=2)
    graph, _ = torch.jit._get_trace_graph(conv, (torch.zeros(1, 1, 5, 5),))
    helper._set_opset_version(12)
    from torch.onnx.utils import _optimize_graph
    g = _optimize_graph(graph, torch.onnx.OperatorExportTypes.ONNX_ATEN_FALLBACK, params_dict={})
    node = next(n for n in g.nodes() if n.kind() == "onnx::Conv")
    attrs = {k: node[k] for k in node.attributeNames()}
    assert attrs["strides"] == [2, 2] and attrs["kernel_shape"] == [3, 3]
    # 4. BoundedModule.parameters() (torch 2.x passes remove_duplicate to _named_members)
    import warnings
    al = lirpa_compat.import_auto_lirpa()
    lirpa_compat.import_auto_lirpa()  # idempotent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bm = al.BoundedModule(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1)), torch.zeros(1, 3))
    assert len(list(bm.parameters())) == 4 and len(dict(bm.named_parameters())) == 4


def test_affine_cache_follows_data_edits_and_structural_changes():
    """The converted-network cache must never serve a stale network (soundness)."""
    m = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.fill_(1.0)
            lin.bias.zero_()
    assert compute_bounds(m, [-1.0], [1.0]).lower.item() == pytest.approx(0.0)
    m[2].weight.data.fill_(-1.0)  # .data edits do not bump torch's version counter
    assert compute_bounds(m, [-1.0], [1.0]).lower.item() == pytest.approx(-1.0)
    m[1] = nn.Identity()  # y = -x
    assert compute_bounds(m, [-1.0], [1.0]).upper.item() == pytest.approx(1.0)
    assert compute_bounds(m, [-1.0], [1.0], engine="lirpa").upper.item() == pytest.approx(1.0)
