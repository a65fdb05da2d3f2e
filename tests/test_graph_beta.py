"""beta-CROWN on the graph engine: split constraints enter the backward pass as Lagrangian terms
(``ReLU.backward_relaxed(beta=...)``, optimised by ``bounds.alpha.optimize``). The bound with
any multipliers >= 0 is sound on the split domain (checked with large random ones, where a
wrong sign would show), the optimised bound is never below the clamped-only CROWN bound, and
sampled points of each split domain (respecting its split phases) lie above it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certprune.bounds import alpha, crown
from certprune.bounds.engine import domain_bounds
from certprune.graph import build_graph
from tests.graph_nets import GRAPHS

NETS = ["residual_mlp", "residual_relu_add", "concat_branches", "conv_residual"]


def _domains(name: str, seed: int, n_dom: int = 6, n_split: int = 3):
    """A graph, one box repeated n_dom times, and per domain random phases for n_split
    neurons that CROWN finds unstable on the box (a split vector per ReLU node)."""
    make, shape = GRAPHS[name]
    g = build_graph(make(seed), shape)
    rng = np.random.default_rng(seed)
    lo0 = torch.as_tensor(rng.uniform(-1, 0.2, g.input_dim))
    hi0 = lo0 + torch.as_tensor(rng.uniform(0.4, 0.9, g.input_dim))
    st = crown.intermediate(g, lo0[None], hi0[None], intersect=True)
    flat_unst = torch.cat([((st.pre[i][0] < 0) & (st.pre[i][1] > 0)).reshape(-1) for i in g.relu_nodes])
    cand = torch.nonzero(flat_unst).flatten().numpy()
    assert len(cand) >= n_split
    splits = torch.zeros(n_dom, sum(g.relu_sizes), dtype=torch.int8)
    for k in range(n_dom):
        idx = rng.choice(cand, n_split, replace=False)
        splits[k, idx] = torch.as_tensor(rng.choice([-1, 1], n_split), dtype=torch.int8)
    per_node = list(torch.split(splits, g.relu_sizes, dim=1))
    return g, lo0.expand(n_dom, -1).clone(), hi0.expand(n_dom, -1).clone(), per_node, rng


def _samples_in_domains(g, lo, hi, per_node, rng, n: int = 4000):
    """Per domain: the sampled points of the box whose pre-activations respect the split phases,
    and their outputs."""
    out = []
    for k in range(lo.shape[0]):
        x = lo[k] + torch.as_tensor(rng.random((n, g.input_dim))) * (hi[k] - lo[k])
        vals = g.forward(x, keep=True)
        ok = torch.ones(n, dtype=torch.bool)
        for i, s in zip(g.relu_nodes, per_node):
            z = vals[g.nodes[i].inputs[0]].reshape(n, -1)
            sk = s[k].to(z.dtype)
            ok &= ((sk * z) >= 0).all(1)
        out.append((x[ok], vals[g.output].reshape(n, -1)[ok]))
    return out


@pytest.mark.parametrize("name", NETS)
def test_beta_bounds_sound_and_never_below_clamped(name):
    g, lo, hi, per_node, rng = _domains(name, 4)
    C = torch.as_tensor(rng.normal(size=(2, g.output_dim)))
    c = torch.as_tensor(rng.normal(size=2))
    clamped = domain_bounds(g, lo, hi, per_node, C, c, iters=0)
    beta = domain_bounds(g, lo, hi, per_node, C, c, iters=30, lr=0.1)
    feasible = ~clamped.infeasible
    assert feasible.any()
    assert (beta.lower[feasible] >= clamped.lower[feasible] - 1e-12).all()
    checked = 0
    for k, (x, y) in enumerate(_samples_in_domains(g, lo, hi, per_node, rng)):
        if len(x) == 0:
            continue
        assert not bool(clamped.infeasible[k])  # a domain with points is never called empty
        val = y @ C.T + c
        assert (val >= beta.lower[k] - 1e-9).all()
        checked += len(x)
    assert checked > 100


@pytest.mark.parametrize("name", NETS)
def test_any_nonnegative_multipliers_are_sound(name):
    """Large random multipliers (no optimisation): still below every point of the split domain.
    (A flipped sign of the Lagrangian term fails the previous test: the optimised multipliers
    then lift the bound above sampled points of the domain.)"""
    g, lo, hi, per_node, rng = _domains(name, 5)
    sp = dict(zip(g.relu_nodes, per_node))
    st = crown.intermediate(g, lo, hi, intersect=True, sparse=True, splits=sp)
    C = torch.as_tensor(rng.normal(size=(3, g.output_dim)))
    A = C.unsqueeze(0).reshape(1, 3, *g.nodes[g.output].shape)
    N = lo.shape[0]
    gen = torch.Generator().manual_seed(0)
    betas = {i: 5.0 * torch.rand(N, 3, *g.nodes[i].shape, generator=gen, dtype=torch.float64)
             * s.reshape(N, 1, *g.nodes[i].shape).double() for i, s in sp.items()}
    low = crown.backward(g, g.output, A, st, betas=betas).lower
    checked = 0
    for k, (x, y) in enumerate(_samples_in_domains(g, lo, hi, per_node, rng)):
        val = y @ C.T
        assert (val >= low[k] - 1e-9).all()
        checked += len(x)
    assert checked > 100


def test_beta_tightens_split_domains_beyond_alpha():
    """On a residual net the split multipliers raise the summed bound over alpha alone."""
    g, lo, hi, per_node, rng = _domains("residual_mlp", 6, n_dom=8, n_split=4)
    sp = dict(zip(g.relu_nodes, per_node))
    st = crown.intermediate(g, lo, hi, intersect=True, sparse=True, splits=sp)
    C = torch.as_tensor(rng.normal(size=(2, g.output_dim)))
    A = C.unsqueeze(0).reshape(1, 2, *g.nodes[g.output].shape)
    a_only = alpha.optimize(g, st, A, 40, 0.1)
    with_beta = alpha.optimize(g, st, A, 40, 0.1, splits=sp)
    ok = ~st.infeasible
    assert float(with_beta[ok].sum()) > float(a_only[ok].sum()) + 1e-6
