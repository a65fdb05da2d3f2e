"""The graph IR: a DAG of operator nodes, each owning its forward, interval, backward (CROWN)
and forward linear (symbolic) semantics and its float32 rounding-error step.
``build_graph(model)`` converts a loaded model."""
from certprune.graph.build import build_graph
from certprune.graph.ir import Graph, Node

__all__ = ["Graph", "Node", "build_graph"]
