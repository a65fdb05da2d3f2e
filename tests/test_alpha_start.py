"""alpha.optimize starts from a plain CROWN bound the caller already has (``start``) instead of
recomputing it: same result, one backward pass fewer."""
from __future__ import annotations

import torch

from certprune.bounds import alpha, crown
from certprune.graph import build_graph
from tests.graph_nets import GRAPHS


def test_optimize_with_start_equals_recomputing_it(monkeypatch):
    make, shape = GRAPHS["residual_mlp"]
    g = build_graph(make(3), shape)
    gen = torch.Generator().manual_seed(5)
    lo = torch.rand(4, 6, generator=gen, dtype=torch.float64) * 2 - 1
    hi = lo + 0.8
    st = crown.intermediate(g, lo, hi, intersect=True)
    C = torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]], dtype=torch.float64)
    A = C.unsqueeze(0)
    calls = []
    real = alpha.backward
    monkeypatch.setattr(alpha, "backward", lambda *a, **k: calls.append(1) or real(*a, **k))
    ref = alpha.optimize(g, st, A, iterations=5)
    n_ref = len(calls)
    plain = crown.backward(g, g.output, A, st).lower
    got = alpha.optimize(g, st, A, iterations=5, start=plain)
    assert len(calls) - n_ref == n_ref - 1  # the start pass was not recomputed
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert (got >= plain.expand_as(got) - 1e-12).all()
