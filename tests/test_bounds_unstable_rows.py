"""CROWN intermediate bounds for interval-unstable neurons only (``rows="unstable"``, issue 9):
sound at every node by sampling, per-box spec rows equal to the shared-row pass, output bounds
equal to every-row CROWN where the interval bounds prove nothing stable (and, measured on
random MLPs, tighter far more often than looser: not a theorem), and the option checked by
``compute_bounds``."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from certprune.bounds import crown
from certprune.errors import ConfigError
from certprune.graph import build_graph
from certprune.verifiers.bounds import compute_bounds
from tests.conftest import random_mlp
from tests.graph_nets import GRAPHS

TOL = 1e-9
BOX_ROWS = (2.0, 2.0)  # PAIR_FRACTION that sends every 1-D node through the per-box rows pass


def _boxes(d: int, n: int, seed: int, width: float):
    g = torch.Generator().manual_seed(seed)
    lo = torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1
    return lo, lo + width * torch.rand(n, d, generator=g, dtype=torch.float64)


def _samples(lo, hi, box: int, n: int = 10_000) -> torch.Tensor:
    u = torch.rand(n, lo.shape[1], generator=torch.Generator().manual_seed(box), dtype=torch.float64)
    u[:64] = (u[:64] > 0.5).double()  # some corners
    return lo[box] + u * (hi[box] - lo[box])


def _nets():
    yield "mlp", build_graph(random_mlp([6, 16, 12, 10, 3], seed=4), (6,)), (6,)
    for name in ("residual_relu_add", "residual_mlp", "conv_residual", "twin_mlp"):
        make, shape = GRAPHS[name]
        yield name, build_graph(make(3), shape), shape


@pytest.mark.parametrize("fraction", [BOX_ROWS, crown.PAIR_FRACTION], ids=["box-rows", "default"])
@pytest.mark.parametrize("name,g,shape", list(_nets()), ids=[n for n, _, _ in _nets()])
def test_unstable_rows_are_sound_at_every_node(name, g, shape, fraction, monkeypatch):
    """10^4 points per box lie inside every node's bounds and the output bounds."""
    monkeypatch.setattr(crown, "PAIR_FRACTION", fraction)
    monkeypatch.setattr(crown, "BOX_ROWS_MIN", 1)
    d = int(torch.tensor(shape).prod())
    lo, hi = _boxes(d, 3, seed=1, width=0.5)
    st = crown.intermediate(g, lo, hi, rows="unstable")
    yl, yu = crown.output_bounds(g, st)
    for box in range(3):
        vals = g.forward(_samples(lo, hi, box), keep=True)
        for t in range(1, len(g.nodes)):
            v = vals[t].reshape(len(vals[t]), -1)
            l, u = (b[box].reshape(1, -1) for b in st.bounds[t])
            assert (v >= l - TOL).all() and (v <= u + TOL).all(), (name, t)
        y = vals[g.output].reshape(len(vals[g.output]), -1)
        assert (y >= yl[box] - TOL).all() and (y <= yu[box] + TOL).all()


@pytest.mark.parametrize("name,g,shape", list(_nets())[:3], ids=[n for n, _, _ in list(_nets())[:3]])
def test_box_rows_give_the_shared_row_crown_bounds(name, g, shape, monkeypatch):
    """Per-box spec rows (``box_rows_crown``) = the all-box pass of ``node_crown`` on every
    interval-unstable (box, neuron), the interval bounds elsewhere; Linear and Add/Sub nodes."""
    d = int(torch.tensor(shape).prod())
    lo, hi = _boxes(d, 150, seed=2, width=0.6)  # > BOX_GROUP boxes: several groups
    st = crown.intermediate(g, lo, hi)
    checked = 0
    for i in g.relu_nodes:
        p = g.nodes[i].inputs[0]
        if crown.interval_exact(g, p):
            continue
        il, iu = (b.reshape(len(lo), -1) for b in g.nodes[p].op.interval(*[st.bounds[j] for j in g.nodes[p].inputs]))
        unst = (il < 0) & (iu > 0)
        low, up = crown.box_rows_crown(g, p, st, unst, il.clone(), iu.clone())
        cl, cu = crown.node_crown(g, p, st)
        torch.testing.assert_close(low[unst], cl[unst], rtol=0, atol=1e-12)
        torch.testing.assert_close(up[unst], cu[unst], rtol=0, atol=1e-12)
        assert torch.equal(low[~unst], il[~unst]) and torch.equal(up[~unst], iu[~unst])
        checked += int(unst.sum())
    assert checked > 100


@pytest.mark.parametrize("seed", range(6))
def test_unstable_rows_against_all_rows_on_random_mlps(seed):
    """Unstable-only rows are *not* never-looser: CROWN is not monotone in the relaxations (an
    interval-stable active neuron kept exact passes CROWN's own, possibly negative, lower bound
    of its input down, where the all-rows pass may relax it to ``relu(z) >= 0``). Measured over
    these 6 nets x 3 widths: 13 of 6,656 output bounds looser (up to 0.04), ~200 tighter, the
    mean width never larger; this test keeps those facts (fixed seeds), not a theorem."""
    sizes = [[5, 20, 20, 20, 4], [8, 30, 20, 10, 2], [3, 12, 12, 12, 12, 3]][seed % 3]
    m = random_mlp(sizes, seed=seed)
    looser = tighter = 0
    for width in (0.05, 0.3, 1.0):
        lo, hi = _boxes(sizes[0], 64, seed=seed + 10, width=width)
        a = compute_bounds(m, lo, hi, engine="native", intermediate="all")
        u = compute_bounds(m, lo, hi, engine="native")
        assert float((u.upper - u.lower).mean()) <= float((a.upper - a.lower).mean()) + TOL, width
        looser += int(((a.lower - u.lower) > TOL).sum() + ((u.upper - a.upper) > TOL).sum())
        tighter += int(((u.lower - a.lower) > TOL).sum() + ((a.upper - u.upper) > TOL).sum())
        if width == 0.05:  # small boxes: interval-stable neurons are CROWN-stable too here
            assert (u.lower >= a.lower - TOL).all() and (u.upper <= a.upper + TOL).all()
    assert looser <= tighter


def test_bench_mlp_unstable_rows_are_tighter_somewhere():
    """On the benchmark's 20-50-30-15-10-1 MLP, interval images of CROWN bounds prove neurons
    stable that CROWN alone leaves unstable: unstable-only bounds are strictly tighter there."""
    m = random_mlp([20, 50, 30, 15, 10, 1], seed=0)
    lo, hi = _boxes(20, 256, seed=1, width=0.2)
    a = compute_bounds(m, lo, hi, engine="native", intermediate="all")
    u = compute_bounds(m, lo, hi, engine="native")
    assert (u.lower >= a.lower - TOL).all() and (u.upper <= a.upper + TOL).all()
    assert ((u.lower - a.lower) > 1e-6).any() or ((a.upper - u.upper) > 1e-6).any()


def test_equal_to_all_rows_where_interval_proves_nothing_stable():
    """Bias-free net with mixed-sign weight rows on boxes centred at 0: every neuron's interval
    bounds cross zero at every layer, so both settings give the same CROWN bounds."""
    g0 = torch.Generator().manual_seed(5)
    layers = []
    for i, o in ((4, 12), (12, 10), (10, 8), (8, 3)):
        lin = nn.Linear(i, o, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(o, i, generator=g0))
        layers += [lin, nn.ReLU()]
    m = nn.Sequential(*layers[:-1]).eval()
    r = torch.rand(32, 4, generator=g0, dtype=torch.float64) + 0.1
    a = compute_bounds(m, -r, r, engine="native", intermediate="all", return_intermediate=True)
    u = compute_bounds(m, -r, r, engine="native", intermediate="unstable", return_intermediate=True)
    g = build_graph(m, (4,))
    st = crown.intermediate(g, -r, r, rows="unstable")
    for i in g.relu_nodes[1:]:  # the premise: no interval-stable neuron anywhere
        p = g.nodes[i].inputs[0]
        il, iu = g.nodes[p].op.interval(st.bounds[g.nodes[p].inputs[0]])
        assert ((il < 0) & (iu > 0)).all()
    torch.testing.assert_close(u.lower, a.lower, rtol=0, atol=1e-12)
    torch.testing.assert_close(u.upper, a.upper, rtol=0, atol=1e-12)
    for (l1, u1), (l2, u2) in zip(u.intermediate, a.intermediate):
        torch.testing.assert_close(l1, l2, rtol=0, atol=1e-12)
        torch.testing.assert_close(u1, u2, rtol=0, atol=1e-12)


def test_intermediate_option_is_checked():
    m = random_mlp([3, 4, 2], seed=0)
    with pytest.raises(ConfigError, match="unknown intermediate"):
        compute_bounds(m, [[0.0] * 3], [[1.0] * 3], intermediate="some")
    with pytest.raises(ConfigError, match="native engine only"):
        compute_bounds(m, [[0.0] * 3], [[1.0] * 3], engine="lirpa", intermediate="unstable")
