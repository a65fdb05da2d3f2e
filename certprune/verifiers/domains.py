"""The branch-and-bound frontier: undecided domains as a struct of arrays, best-first with a LIFO cap.

A domain is one undecided sub-problem: a box (flattened float64 inputs), one int8 split vector
over all ReLUs (+1 active, -1 inactive, 0 free; layers concatenated), the disjuncts not yet
refuted, its depth, its key (the worst lower bound of the violation margin over its live
disjuncts: smaller = closer to a violation), the branching rule chosen when it was bounded
(:data:`LOOKAHEAD`, :data:`INPUT` at ``idx``/``value``, :data:`RELU` at flat neuron ``idx``) and
whether an exact MILP already left it open; under ReLU branching also its ReLU input bounds
(``pre_lo``/``pre_hi``, float32 rounded outward: :func:`outward32`) and last alpha/beta
iterate (``alpha``/``beta``, float32: any values are sound), which its children start from. The :class:`Frontier` keeps every field in one tensor over all domains (no per-domain
Python objects), so a search can queue millions of boxes.
"""
from __future__ import annotations

import time

import torch

LOOKAHEAD, INPUT, RELU = 0, 1, 2  # branching rules (bab_input.lookahead_children, bab_input.choose_input_dims, bab_relu)


def _columns(n_in: int, n_relu: int, n_disj: int, rows: int, pre: bool = False,
             params_rows: int = 0) -> dict[str, torch.Tensor]:
    """Empty columns of ``rows`` domains (with ``pre``: the ReLU input bound columns; with
    ``params_rows`` m > 0: the alpha/beta iterate columns, (m, n_relu) per domain)."""
    extra = {"pre_lo": torch.zeros(rows, n_relu, dtype=torch.float32),
             "pre_hi": torch.zeros(rows, n_relu, dtype=torch.float32)} if pre else {}
    if params_rows:
        extra.update(alpha=torch.zeros(rows, params_rows, n_relu, dtype=torch.float32),
                     beta=torch.zeros(rows, params_rows, n_relu, dtype=torch.float32))
    return {**extra, "lo": torch.zeros(rows, n_in, dtype=torch.float64), "hi": torch.zeros(rows, n_in, dtype=torch.float64),
            "splits": torch.zeros(rows, n_relu, dtype=torch.int8), "alive": torch.zeros(rows, n_disj, dtype=torch.bool),
            "depth": torch.zeros(rows, dtype=torch.long), "key": torch.zeros(rows, dtype=torch.float64),
            "rule": torch.zeros(rows, dtype=torch.int8), "idx": torch.zeros(rows, dtype=torch.long),
            "value": torch.zeros(rows, dtype=torch.float64), "milp_tried": torch.zeros(rows, dtype=torch.bool),
            "seq": torch.zeros(rows, dtype=torch.long)}


class Frontier:
    """Domains in rows ``[0, n)`` of growable column tensors. Popping is best-first (smallest key)
    while at most ``cap`` domains are queued; above the cap the newest first (depth-first, which
    bounds memory by ``cap + batch * depth``). A pop moves the last rows into the holes (O(popped)
    data moves; the O(n) part is one top-k over keys or insertion numbers)."""

    def __init__(self, cap: int, n_in: int, n_relu: int, n_disj: int, pre: bool = False, params_rows: int = 0):
        self.cap = cap
        self.n = 0
        self._seq = 0
        self.t = _columns(n_in, n_relu, n_disj, 64, pre, params_rows)

    def __len__(self) -> int:
        return self.n

    def col(self, name: str) -> torch.Tensor:
        """The live part of one column (a view)."""
        return self.t[name][:self.n]

    def push(self, rows: dict[str, torch.Tensor]) -> None:
        """Append domains; ``rows`` holds every column but ``seq``, each with the same first dimension."""
        m = len(rows["key"])
        if m == 0:
            return
        if self.n + m > len(self.t["key"]):
            size = max(2 * len(self.t["key"]), self.n + m)
            self.t = {k: torch.cat([v[:self.n], v.new_zeros((size - self.n,) + v.shape[1:])]) for k, v in self.t.items()}
        for k, v in rows.items():
            self.t[k][self.n:self.n + m] = v
        self.t["seq"][self.n:self.n + m] = torch.arange(self._seq, self._seq + m)
        self._seq += m
        self.n += m

    def order(self, k: int) -> torch.Tensor:
        """Indices of the next ``k`` domains to pop, in pop order."""
        if self.n > self.cap:
            return torch.topk(self.col("seq"), min(k, self.n)).indices
        return torch.topk(self.col("key"), min(k, self.n), largest=False).indices

    def take(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Remove the domains at ``idx`` and return their rows (copies; ``seq`` dropped)."""
        out = {k: v[idx] for k, v in self.t.items() if k != "seq"}
        gone = torch.zeros(self.n, dtype=torch.bool)
        gone[idx] = True
        m = self.n - len(idx)
        holes = torch.nonzero(gone[:m]).squeeze(1)
        movers = torch.nonzero(~gone[m:]).squeeze(1) + m
        for v in self.t.values():
            v[holes] = v[movers]
        self.n = m
        return out

    def min_key(self) -> float:
        """Smallest key over all queued domains (inf when empty)."""
        return float(self.col("key").min()) if self.n else float("inf")


def rows_where(rows: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The domains of ``rows`` selected by a boolean (or index) ``mask``."""
    return {k: v[mask] for k, v in rows.items()}


def timed_batch(cap: int, seconds_per_item: float | None, deadline: float | None, first: int) -> int:
    """Items per search step: ``cap``, shrunk so that one step takes at most ~0.5 s and at most a
    tenth of the time left before ``deadline`` (keeps the deadline within a few percent); ``first``
    (<= cap) while the cost per item is not measured yet."""
    if seconds_per_item is None:
        return min(cap, first)
    target = 0.5 if deadline is None else min(0.5, 0.1 * max(deadline - time.monotonic(), 0.0))
    return int(max(1, min(cap, target / max(seconds_per_item, 1e-9))))


def outward32(lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 copies of float64 bounds rounded outward (lower down, upper up): every value the
    float64 interval holds, the float32 one holds too (half the memory of a queued domain's bounds)."""
    lo32, hi32 = lower.to(torch.float32), upper.to(torch.float32)
    lo32 = torch.where(lo32.to(lower.dtype) > lower, torch.nextafter(lo32, torch.full_like(lo32, -torch.inf)), lo32)
    hi32 = torch.where(hi32.to(upper.dtype) < upper, torch.nextafter(hi32, torch.full_like(hi32, torch.inf)), hi32)
    return lo32, hi32
