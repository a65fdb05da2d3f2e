"""ReLU splitting: pick an unstable neuron and fix its phase.

BaBSR-style score: the intercept its triangle (chord) relaxation costs the CROWN lower bound,
summed over the live specification rows (``DomainBounds.relu_scores``), plus a tiny multiple of
the chord's gap ``-l u / (u - l)`` so that some unstable neuron is always chosen. Children get
+1 (z >= 0) and -1 (z <= 0) at that neuron; the re-bounding in ``bounds.engine.domain_bounds``
then clamps its pre-activation bounds and recomputes every later layer.

Filtered smart branching (:func:`choose_relus_fsb`, the idea of De Palma et al. 2021 and
alpha-beta-CROWN's ``fsb``): the ``k`` best neurons by that score are candidates; for each, both
children are bounded cheaply (one backward CROWN pass for the spec rows only, on the parent's
intermediate bounds with that one neuron's bounds clamped) and the candidate whose two children's
keys have the largest sum (the search's key: min over live disjuncts of the max over their rows)
wins.
The estimate only orders candidates; the children are bounded afresh by ``domain_bounds``, so
the choice can never affect soundness.
"""
from __future__ import annotations

from typing import Callable

import torch

from certprune.bounds import crown
from certprune.graph.ir import Graph
from certprune.graph.relu import ReLU

FSB_CHUNK = 512  # virtual children per backward pass (caps the (chunk, m, n_in) coefficient tensor)


def relu_scores(scores: list[torch.Tensor], row_live: torch.Tensor,
                pre: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """(N, total) BaBSR score per neuron (layers concatenated); -1 where stable."""
    parts = []
    w = row_live.unsqueeze(-1).to(pre[0][0].dtype)
    for s, (l, u) in zip(scores, pre):
        unstable = (l < 0) & (u > 0)
        gap = torch.where(unstable, -l * u / torch.where(unstable, u - l, torch.ones_like(u)), torch.zeros_like(u))
        sc = (s * w).sum(1) + 1e-6 * gap
        parts.append(torch.where(unstable, sc, torch.full_like(sc, -1.0)))
    return torch.cat(parts, dim=1)


def choose_relus(scores: list[torch.Tensor], row_live: torch.Tensor,
                 pre: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Per domain the flat index (layers concatenated) of the neuron to split, or -1 when every
    neuron is stable. scores[j] (N, m, n_j), row_live (N, m)."""
    if not pre:
        return torch.full((row_live.shape[0],), -1, dtype=torch.long)
    return _best(relu_scores(scores, row_live, pre))


def _best(allsc: torch.Tensor) -> torch.Tensor:
    """Per row the index of the highest score, or -1 where every neuron is stable (score -1)."""
    idx = allsc.argmax(dim=1)
    return torch.where(allsc.max(dim=1).values >= 0, idx, torch.full_like(idx, -1))


def choose_relus_fsb(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, pre: list[tuple[torch.Tensor, torch.Tensor]],
                     scores: list[torch.Tensor], row_live: torch.Tensor, C: torch.Tensor, c: torch.Tensor,
                     key_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], k: int) -> torch.Tensor:
    """Filtered smart branching (module doc): like :func:`choose_relus`, among the ``k`` best
    BaBSR candidates per domain (boxes ``lo``/``hi`` (N, n_in), spec rows ``C y + c``).
    ``key_of(lower (K, m), domain index (K,)) -> (K,)`` is the search's key of a child whose
    spec rows have lower bounds ``lower``."""
    if not pre:
        return torch.full((row_live.shape[0],), -1, dtype=torch.long)
    allsc = relu_scores(scores, row_live, pre)
    best = _best(allsc)
    k = min(k, allsc.shape[1])
    top = allsc.topk(k, dim=1)
    valid = top.values >= 0  # (N, k)
    if k <= 1 or int(valid.sum(1).max()) <= 1:
        return best
    dom, slot = torch.nonzero(valid, as_tuple=True)  # one entry per (domain, candidate)
    cand = top.indices[dom, slot]
    child_key = torch.empty(len(dom), 2, dtype=lo.dtype)
    for part in torch.arange(len(dom)).split(max(1, FSB_CHUNK // 2)):
        child_key[part] = _children_keys(graph, lo, hi, pre, dom[part], cand[part], C, c, key_of)
    table = torch.full(valid.shape, -torch.inf, dtype=lo.dtype)
    table[dom, slot] = child_key.sum(1)  # both children's progress
    pick = top.indices.gather(1, table.argmax(1, keepdim=True)).squeeze(1)
    return torch.where(valid.sum(1) > 1, pick, best)


def _children_keys(graph: Graph, lo, hi, pre, dom: torch.Tensor, cand: torch.Tensor, C, c, key_of) -> torch.Tensor:
    """(K, 2) keys of the active / inactive child of neuron ``cand[i]`` in domain ``dom[i]``,
    from one CROWN pass of the spec rows on the parent's bounds with that neuron clamped."""
    K = len(dom)
    rows = torch.arange(2 * K)
    owner = dom.repeat_interleave(2)
    flat_l = torch.cat([l for l, _ in pre], 1)[owner]
    flat_u = torch.cat([u for _, u in pre], 1)[owner]
    n = cand.repeat_interleave(2)
    active = rows % 2 == 0
    flat_l[rows[active], n[active]] = 0.0  # z >= 0
    flat_u[rows[~active], n[~active]] = 0.0  # z <= 0
    st = crown.State(lo[owner], hi[owner])
    ls, us = torch.split(flat_l, [p[0].shape[1] for p in pre], 1), torch.split(flat_u, [p[0].shape[1] for p in pre], 1)
    for node, l, u in zip(graph.relu_nodes, ls, us):
        shape = graph.nodes[node].shape
        st.relax[node] = ReLU.relax(l.reshape(2 * K, *shape), u.reshape(2 * K, *shape))
    A = C.unsqueeze(0).reshape(1, C.shape[0], *graph.nodes[graph.output].shape)
    with torch.no_grad():
        lower = crown.backward(graph, graph.output, A, st).lower.expand(2 * K, C.shape[0]) + c
    return key_of(lower, owner).reshape(K, 2)


def split_relus(splits: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Children split vectors of N domains (N, total): neuron ``index[i]`` of domain i forced active
    (+1) and inactive (-1)."""
    a, b = splits.clone(), splits.clone()
    rows = torch.arange(len(index))
    a[rows, index], b[rows, index] = 1, -1
    return a, b
