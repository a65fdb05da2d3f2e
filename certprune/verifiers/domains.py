"""Branch-and-bound domains and a capped best-first queue.

A :class:`Domain` is one undecided sub-problem: a box (flattened float64 inputs), one int8
split vector over all ReLUs (+1 active, -1 inactive, 0 free; layers concatenated), the
disjuncts not yet refuted, its depth, its key (the worst lower bound of the violation margin
over its live disjuncts: smaller = closer to a violation) and the branching decision already
chosen when it was bounded. Relu-split children share their parent's box tensors (no copy).
"""
from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass

import torch


@dataclass(eq=False)
class Domain:
    """One sub-problem; ``branch`` is ('input', dim, split_value) or ('relu', flat_index, 0.0)."""

    lo: torch.Tensor
    hi: torch.Tensor
    splits: torch.Tensor
    alive: torch.Tensor
    depth: int
    key: float
    branch: tuple[str, int, float]
    milp_tried: bool = False  # an exact MILP already left this domain (or an ancestor) open


class DomainQueue:
    """Best-first (smallest key first) while below ``cap`` domains; once at the cap, newly pushed
    domains go on a LIFO stack that is drained first (depth-first), which bounds memory by
    ``cap + batch * depth``."""

    def __init__(self, cap: int):
        self.cap = cap
        self._heap: list[tuple[float, int, Domain]] = []
        self._stack: list[Domain] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap) + len(self._stack)

    def push(self, d: Domain) -> None:
        if len(self._heap) < self.cap:
            heapq.heappush(self._heap, (d.key, next(self._seq), d))
        else:
            self._stack.append(d)

    def pop_batch(self, n: int) -> list[Domain]:
        """Up to ``n`` domains: from the depth-first stack first, then the lowest keys."""
        out: list[Domain] = []
        while self._stack and len(out) < n:
            out.append(self._stack.pop())
        while self._heap and len(out) < n:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def min_key(self) -> float:
        """Smallest key over all queued domains (inf when empty)."""
        keys = [self._heap[0][0]] if self._heap else []
        keys += [d.key for d in self._stack]
        return min(keys, default=float("inf"))


def timed_batch(cap: int, seconds_per_item: float | None, deadline: float | None, first: int) -> int:
    """Items per search step: ``cap``, shrunk so that one step takes at most ~0.5 s and at most a
    tenth of the time left before ``deadline`` (keeps the deadline within a few percent); ``first``
    (<= cap) while the cost per item is not measured yet. Shared by the domain loop (``bab``) and
    the box search (``bab_input``)."""
    if seconds_per_item is None:
        return min(cap, first)
    target = 0.5 if deadline is None else min(0.5, 0.1 * max(deadline - time.monotonic(), 0.0))
    return int(max(1, min(cap, target / max(seconds_per_item, 1e-9))))
