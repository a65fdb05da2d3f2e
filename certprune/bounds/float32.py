"""The rigorous float32 rounding-error bound over the graph IR (one implementation).

Given exact-arithmetic bounds of every node over a region (from IBP, CROWN or the forward pass;
point values for point boxes), a bound ``e_i`` on |float32 value - exact value| is propagated in
topological order: each operator maps its inputs' ``(e, m)`` (``m`` = |float32 value| bound =
max(|l|, |u|) + e) through ``Op.float32_error`` -- Higham's ``gamma_{n+1}(|W||h| + |b|)`` plus
``e |W|`` for Linear / Conv / MatMul (any summation order, FMA or not), one rounding for a sum,
nothing for ReLU and the operators that only move entries. The final margin is
``semantics.float32_error_finish`` (a safety factor for the float64 rounding of this computation).
Sound for a model executed operator by operator in float32 on float32 weights; the caller checks
that the weights are float32-exact and that the model is such a model.
"""
from __future__ import annotations

import torch

from certprune.graph.ir import Graph
from certprune.graph.op import Interval
from certprune.semantics import float32_error_finish


def node_errors(graph: Graph, bounds, exact_nodes: tuple[int, ...] = ()) -> list[torch.Tensor | None]:
    """Per node, the bound ``e`` (N, *shape) on |float32 - exact| (None where not needed);
    ``bounds[i]`` = exact (lower, upper) of node i (N, *shape); nodes in ``exact_nodes`` (and the
    input) are given exactly in float32 (error 0)."""
    need = graph.ancestors(graph.output)
    errs: list[torch.Tensor | None] = [torch.zeros_like(bounds[0][0])]
    for i, node in enumerate(graph.nodes[1:], start=1):
        if i not in need:
            errs.append(None)
            continue
        if i in exact_nodes:
            errs.append(torch.zeros_like(bounds[i][0]))
            continue
        es = [errs[j] for j in node.inputs]
        ms = [magnitude(bounds[j]) + errs[j] for j in node.inputs]
        errs.append(node.op.float32_error(es, ms))
    return errs


def magnitude(b: Interval) -> torch.Tensor:
    """``max(|lower|, |upper|)`` of bounds ``b``."""
    return torch.maximum(b[0].abs(), b[1].abs())


def output_error(graph: Graph, bounds, exact_nodes: tuple[int, ...] = ()) -> torch.Tensor:
    """The margin (N, n_out) bounding |float32 output - exact output| (see module doc)."""
    e = node_errors(graph, bounds, exact_nodes)[graph.output]
    return float32_error_finish(e.reshape(len(e), -1))
