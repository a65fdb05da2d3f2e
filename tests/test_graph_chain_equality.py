"""The graph engine on real chain nets (ACAS Xu and the VNN-COMP mnist_fc MLP) equals auto_LiRPA
for IBP and CROWN (auto_LiRPA semantics: dense intermediate bounds), and its IBP-intersected
variant is tighter or equal and still contains sampled outputs. (The chain-only engine these
were once compared with is gone: the graph engine serves chains too.)"""
from __future__ import annotations

import pytest
import torch

import certprune
from certprune.bounds.engine import graph_bounds
from certprune.graph import build_graph
from certprune.verifiers.bounds import affine_net, compute_bounds

EQ = 1e-9


def _nets(shared):
    d = shared / "vnncomp"
    return [(d / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx", 0.05),
            (d / "acasxu" / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx", 0.05),
            (d / "mnist_fc" / "onnx" / "mnist-net_256x2.onnx.gz", 0.01)]


def _close(a, b) -> None:
    torch.testing.assert_close(a, b, rtol=1e-12, atol=EQ)


def test_graph_engine_equals_auto_lirpa_on_real_nets(shared_data, monkeypatch):
    # the same algorithm to 1e-12: without the float64 rounding margin (certprune.bounds.crown,
    # "Rounding"; its size on these nets, < 1e-9 relative, is tests/test_f64_margin.py's)
    from certprune.bounds import crown
    monkeypatch.setattr(crown, "ROUNDING_MARGIN", False)
    for path, eps in _nets(shared_data):
        net = certprune.load_model(path)
        aff = affine_net(net)
        g = build_graph(net)
        assert g.relu_sizes == aff.relu_sizes
        gen = torch.Generator().manual_seed(0)
        center = torch.rand(3, aff.input_dim, generator=gen, dtype=torch.float64) * 0.8 - 0.4
        lo, hi = center - eps, center + eps
        ref = compute_bounds(aff, lo, hi, method="ibp", engine="lirpa")
        b = graph_bounds(g, lo, hi, "ibp")
        _close(b.lower, ref.lower), _close(b.upper, ref.upper)
        ref = compute_bounds(aff, lo, hi, method="crown", engine="lirpa", return_intermediate=True)
        b = graph_bounds(g, lo, hi, "crown")
        _close(b.lower, ref.lower), _close(b.upper, ref.upper)
        for (gl, gu), (l, u) in zip(b.intermediate, ref.intermediate):
            _close(gl, l), _close(gu, u)
        t = graph_bounds(g, lo, hi, "crown", intersect_ibp=True)
        assert (t.lower >= b.lower - EQ).all() and (t.upper <= b.upper + EQ).all()
        x = lo.unsqueeze(1) + torch.rand(3, 2000, aff.input_dim, generator=gen, dtype=torch.float64) * (hi - lo).unsqueeze(1)
        y = g.forward(x.reshape(-1, aff.input_dim)).reshape(3, 2000, -1)
        assert (y >= t.lower[:, None] - EQ).all() and (y <= t.upper[:, None] + EQ).all()
