"""The graph IR: a DAG of operator nodes in topological order.

Node 0 is the model input (``op is None``); every other node applies its operator to the
values of earlier nodes (``inputs`` are node indices, so index order is a topological order and
a backward sweep in decreasing index visits every consumer of a node before the node itself).
``shape`` is the per-sample shape of the node's value. The graph computes in the dtype of its
tensors (float64: the bound engine's exact-weight convention).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from certprune.graph.op import Op


@dataclass(frozen=True)
class Node:
    """One value of the graph: ``op`` applied to the values of nodes ``inputs``."""

    op: Op | None
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    label: str = ""

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


@dataclass(frozen=True, eq=False)
class Graph:
    """``nodes[0]`` is the input; ``output`` the index of the output node."""

    nodes: tuple[Node, ...]
    output: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.nodes[0].shape

    @property
    def input_dim(self) -> int:
        return self.nodes[0].size

    @property
    def output_dim(self) -> int:
        return self.nodes[self.output].size

    @cached_property
    def relu_nodes(self) -> tuple[int, ...]:
        """Indices of the ReLU nodes that the output depends on, in topological order."""
        live = self.ancestors(self.output)
        return tuple(i for i, n in enumerate(self.nodes) if n.op is not None and n.op.kind == "relu" and i in live)

    @property
    def relu_sizes(self) -> list[int]:
        return [self.nodes[i].size for i in self.relu_nodes]

    def ancestors(self, t: int) -> set[int]:
        """``t`` and every node it depends on."""
        seen, todo = {t}, [t]
        while todo:
            for j in self.nodes[todo.pop()].inputs:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return seen

    def forward(self, x: torch.Tensor, keep: bool = False):
        """Run on a batch ``(N, *input_shape)`` (or flattened ``(N, input_dim)``); returns the
        output ``(N, *out_shape)``, or the list of every node's value if ``keep``."""
        vals: list[torch.Tensor | None] = [x.reshape(len(x), *self.input_shape)]
        for node in self.nodes[1:]:
            vals.append(node.op.forward(*[vals[j] for j in node.inputs]))
        return vals if keep else vals[self.output]

    def __repr__(self) -> str:
        lines = [f"Graph(input {self.input_shape}, output node {self.output})"]
        for i, n in enumerate(self.nodes[1:], start=1):
            lines.append(f"  {i}: {n.op!r}{list(n.inputs)} -> {n.shape} {n.label}")
        return "\n".join(lines)
