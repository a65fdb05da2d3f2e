"""Interval bound propagation over the graph IR: each node's operator maps its inputs' boxes."""
from __future__ import annotations

import torch

from certprune.graph.ir import Graph
from certprune.graph.op import Interval


def ibp(graph: Graph, lo: torch.Tensor, hi: torch.Tensor) -> list[Interval]:
    """Bounds ``(N, *shape)`` of every node over the boxes ``lo``/``hi`` (N, input_dim), float64."""
    n = lo.shape[0]
    out: list[Interval] = [(lo.reshape(n, *graph.input_shape), hi.reshape(n, *graph.input_shape))]
    for node in graph.nodes[1:]:
        out.append(node.op.interval(*[out[j] for j in node.inputs]))
    return out
