"""The graph engine equals the chain-only native engine (``native_bounds`` on the dense
``AffineReluNet``) on real chain nets: ACAS Xu and the VNN-COMP mnist_fc MLP, for IBP and CROWN
(auto_LiRPA semantics and the IBP-intersected variant)."""
from __future__ import annotations

import pytest
import torch

import certprune
from certprune.bounds.engine import graph_bounds
from certprune.graph import build_graph
from certprune.verifiers import native_bounds
from certprune.verifiers.bounds import affine_net

EQ = 1e-9


def _nets(shared):
    d = shared / "vnncomp"
    return [(d / "acasxu" / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx", 0.05),
            (d / "acasxu" / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx", 0.05),
            (d / "mnist_fc" / "onnx" / "mnist-net_256x2.onnx.gz", 0.01)]


def _close(a, b) -> None:
    torch.testing.assert_close(a, b, rtol=1e-12, atol=EQ)


def test_graph_engine_equals_chain_engine_on_real_nets(shared_data):
    for path, eps in _nets(shared_data):
        net = certprune.load_model(path)
        aff = affine_net(net)
        g = build_graph(net)
        assert g.relu_sizes == aff.relu_sizes
        gen = torch.Generator().manual_seed(0)
        center = torch.rand(3, aff.input_dim, generator=gen, dtype=torch.float64) * 0.8 - 0.4
        lo, hi = center - eps, center + eps
        (yl, yu), pre = native_bounds.ibp(aff, lo, hi)
        b = graph_bounds(g, lo, hi, "ibp")
        _close(b.lower, yl), _close(b.upper, yu)
        for intersect in (False, True):
            (yl, yu), pre = native_bounds.crown(aff, lo, hi, intersect_ibp=intersect)
            b = graph_bounds(g, lo, hi, "crown", intersect_ibp=intersect)
            _close(b.lower, yl), _close(b.upper, yu)
            for (gl, gu), (l, u) in zip(b.intermediate, pre):
                if intersect:  # the graph engine runs CROWN only on interval-unstable neurons: tighter or equal
                    assert (gl >= l - EQ).all() and (gu <= u + EQ).all()
                else:
                    _close(gl, l), _close(gu, u)
