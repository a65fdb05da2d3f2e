"""The float32 rounding-error bound over the graph IR (``certprune.bounds.float32``): encloses
the observed |float32 - exact| of the torch modules on residual / twin / conv graphs, on boxes
(node bounds by IBP) and at points (``twin_bounds.point_logits``' use); refuses operators whose
float32 execution it does not model."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from certprune.bounds.float32 import output_error
from certprune.bounds.ibp import ibp
from certprune.errors import UnsupportedModelError
from certprune.graph import build_graph
from tests.graph_nets import GRAPHS


def _scaled(m: nn.Module, k: float) -> nn.Module:
    with torch.no_grad():
        for p in m.parameters():
            p.copy_((p * k).float().double())  # still float32 values
    return m


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(12, 2)).eval()


CASES = {"residual_mlp": (lambda: GRAPHS["residual_mlp"][0](0), (6,)),
         "residual_relu_add": (lambda: GRAPHS["residual_relu_add"][0](1), (6,)),
         "twin_mlp": (lambda: GRAPHS["twin_mlp"][0](2), (4,)),
         "conv": (_conv_net, (1, 8, 8))}


@pytest.mark.parametrize("name", sorted(CASES))
def test_graph_float32_error_encloses_float32_execution(name):
    make, shape = CASES[name]
    m = _scaled(make().float(), 20.0)
    g = build_graph(m, shape)
    x32 = (torch.rand(3000, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1).float()
    with torch.no_grad():
        y32 = m(x32).double().reshape(3000, -1)
    exact = g.forward(x32.double()).reshape(3000, -1)
    one = torch.ones(1, g.input_dim, dtype=torch.float64)
    err = output_error(g, ibp(g, -one, one))[0]
    observed = (y32 - exact).abs().max(0).values
    assert (observed <= err).all() and (observed > 0).any()
    assert (err < 1e-3 * exact.abs().max()).all()
    # at points: node values as point bounds give a per-point bound, also enclosing
    vals = g.forward(x32[:200].double(), keep=True)
    e_pt = output_error(g, [(v, v) for v in vals])
    assert ((y32[:200] - exact[:200]).abs() <= e_pt).all()
    assert (e_pt <= err + 1e-12).all()


def test_graph_float32_error_refuses_unmodelled_operators():
    make, shape = GRAPHS["conv_residual"]  # BatchNorm (folded scale): not modelled
    g = build_graph(make(0), shape)
    one = torch.ones(1, g.input_dim, dtype=torch.float64)
    with pytest.raises(UnsupportedModelError, match="float32"):
        output_error(g, ibp(g, -one, one))
