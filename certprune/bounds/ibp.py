"""Interval bound propagation over the graph IR: each node's operator maps its inputs' boxes,
widened by the operator's float64 residual (``Op.float64_residual``): the bounds enclose the
exact real-arithmetic values despite the rounding of computing them."""
from __future__ import annotations

import torch

from certprune.bounds.crown import rounded_interval
from certprune.graph.ir import Graph
from certprune.graph.op import Interval


def ibp(graph: Graph, lo: torch.Tensor, hi: torch.Tensor) -> list[Interval]:
    """Bounds ``(N, *shape)`` of every node over the boxes ``lo``/``hi`` (N, input_dim), float64."""
    n = lo.shape[0]
    out: list[Interval] = [(lo.reshape(n, *graph.input_shape), hi.reshape(n, *graph.input_shape))]
    for node in graph.nodes[1:]:
        out.append(rounded_interval(node.op, [out[j] for j in node.inputs]))
    return out
