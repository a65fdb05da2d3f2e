"""Operators with several tensor inputs: Add / Sub of two tensors (residual connections) and
Concat. Their backward hands the coefficients to every input; the bound engine adds the
contributions of all consumers of a node."""
from __future__ import annotations

import torch

from certprune.graph.op import FnPair, Interval, LinFn, Op
from certprune.semantics import U32, gamma64


class AddSub(Op):
    """``a + b`` or ``a - b`` of two tensors of the same shape."""

    kind = "add"
    arity = 2

    def __init__(self, sign: float):
        self.sign = float(sign)
        self.kind = "add" if sign > 0 else "sub"

    def forward(self, a, b):
        return a + b if self.sign > 0 else a - b

    def interval(self, a: Interval, b: Interval) -> Interval:
        if self.sign > 0:
            return a[0] + b[0], a[1] + b[1]
        return a[0] - b[1], a[1] - b[0]

    def window_geo(self, g):
        return g

    def backward(self, A):  # dense tensors or Windows alike
        return [A, A if self.sign > 0 else -A], None

    def encode(self, enc, a, b):
        return a.combine(b, self.sign)

    def forward_linear(self, a: FnPair, b: FnPair) -> FnPair:
        if self.sign > 0:
            lo, up = a[0] + b[0], (None if a[0] is a[1] and b[0] is b[1] else a[1] + b[1])
        else:
            lo, up = a[0] + -b[1], (None if a[0] is a[1] and b[0] is b[1] else a[1] + -b[0])
        return lo, (lo if up is None else up)

    def float32_error(self, es, ms):
        """One rounding of the sum: ``e_a + e_b + u (m_a + m_b)``."""
        return es[0] + es[1] + U32 * (ms[0] + ms[1])

    def abs_map(self, es):
        return es[0] + es[1]

    def float64_residual(self, ms):
        """One rounding per interval end (the backward step is exact: A and -A)."""
        return gamma64(8) * (ms[0] + ms[1])

    def __repr__(self) -> str:
        return f"AddSub({'+' if self.sign > 0 else '-'})"


class Concat(Op):
    """Concatenation along ``dim`` of the batched tensors (dim >= 1)."""

    kind = "concat"

    def __init__(self, dim: int, sizes: list[int]):
        self.dim, self.sizes = int(dim), [int(s) for s in sizes]
        self.arity = len(sizes)

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)

    def interval(self, *bs: Interval) -> Interval:
        return torch.cat([b[0] for b in bs], dim=self.dim), torch.cat([b[1] for b in bs], dim=self.dim)

    def backward(self, A):
        return list(torch.split(A, self.sizes, dim=self.dim + 1)), None

    def encode(self, enc, *xs):
        from certprune.graph.encode import moved_encode
        return moved_encode(self, *xs)

    def forward_linear(self, *fs: FnPair) -> FnPair:
        K = max(f[0].A.shape[0] for f in fs)

        def cat(fns: list[LinFn]) -> LinFn:
            A = torch.cat([g.A.expand(K, *g.A.shape[1:]) for g in fns], dim=self.dim + 1)
            return LinFn(A, torch.cat([g.b.expand(K, *g.b.shape[1:]) for g in fns], dim=self.dim))
        lo = cat([f[0] for f in fs])
        return (lo, lo) if all(f[0] is f[1] for f in fs) else (lo, cat([f[1] for f in fs]))

    def float32_error(self, es, ms):
        return self.forward(*es)

    def float64_residual(self, ms):
        return None  # moves values

    def abs_map(self, es):
        return self.forward(*es)

    def __repr__(self) -> str:
        return f"Concat(dim={self.dim}, sizes={self.sizes})"
