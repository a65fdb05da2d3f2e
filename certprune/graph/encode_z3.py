"""The exact z3 encoding of a graph: the second back end of the one walk (:func:`encode.walk`).

Every node's value is a list of z3 real terms, one per flattened entry (``TermExpr``; ``None``
stands for the constant 0, e.g. a dead neuron). The operators' ``encode`` steps are the ones the
LP/MILP encoding uses: linear operators hand their weights or sparse Jacobian to ``map``, shape
operators their index map to ``gather``, Add/Sub ``combine``; only the expression type differs.
Arithmetic is exact: every float64 weight, bias and bound becomes the rational it denotes
(:func:`rational`), never a decimal string.

ReLU (``Z3Encoder.relu``), given the pre-activation bounds ``[l, u]`` of its input (they must hold
in EXACT arithmetic: pass float64 bounds through :func:`widen_pre`) or none:
- ``u <= 0``: the neuron is dropped (its value is the constant 0);
- ``l >= 0``: a variable ``z`` equal to its input, with ``l <= z <= u``;
- otherwise ``z`` and ``a = max(z, 0)`` exactly ('ite': ``a == If(z > 0, z, 0)``, or
  'disjunction'), plus the redundant facts ``a >= 0``, ``a >= z``, ``l <= z <= u`` and, with
  ``triangle``, the upper face ``a <= u (z - l) / (u - l)``; without bounds only the exact ReLU.
Variables are named ``{prefix}{k}_{j}`` (k-th ReLU node in topological order, neuron j),
``{prefix}{k}_{j}_relu`` and ``{prefix}out_{j}``: distinct prefixes encode two copies in one solver.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from certprune.errors import ConfigError, ShapeMismatchError
from certprune.graph.encode import walk
from certprune.graph.ir import Graph

RELU_ENCODINGS = ("ite", "disjunction")
_REL_MARGIN = 1e-9   # relative widening of float64 bounds (float64 round-off is ~1e-16 per op)
_ABS_MARGIN = 1e-12
_BOUND_BITS = 20     # significant bits kept when rounding bounds outward (see _round_out)


def rational(v: float):
    """The exact z3 rational of a float (no decimal rounding)."""
    import z3
    return z3.RealVal(str(Fraction(float(v))))   # "n/d" is parsed by z3 as an exact rational


def _rationals(J: sp.csr_matrix) -> list:
    """The z3 rationals of ``J.data``, made once per matrix object (the operators' cached weight
    matrices and Jacobians are reused by every query; z3 values are immutable)."""
    q = getattr(J, "_z3_rationals", None)
    if q is None or len(q) != len(J.data):
        q = [rational(w) for w in J.data]
        J._z3_rationals = q
    return q


@dataclass
class TermExpr:
    """The exact value of a node: one z3 real term per flattened entry (None: the constant 0)."""

    t: list
    shape: tuple[int, ...]
    dense = False  # weights reach ``map`` as sparse rows (zeros skipped)

    def map(self, J, bias: np.ndarray | None, shape) -> "TermExpr":
        """``J @ value + bias`` with exact rationals; zero weights and zero inputs are skipped,
        and a given bias is kept even where it is 0 (the dense encoder's term shape)."""
        import z3
        J = J if sp.isspmatrix_csr(J) else sp.csr_matrix(J)
        q = _rationals(J)
        out = []
        for r in range(J.shape[0]):
            lo, hi = J.indptr[r], J.indptr[r + 1]
            terms = [q[k] * self.t[c] for k, c in zip(range(lo, hi), J.indices[lo:hi])
                     if J.data[k] != 0.0 and self.t[c] is not None]
            if bias is not None:
                terms.append(rational(bias[r]))
            out.append(None if not terms else terms[0] if len(terms) == 1 else z3.Sum(terms))
        return TermExpr(out, tuple(shape))

    def combine(self, other: "TermExpr", sign: float) -> "TermExpr":
        """Entrywise ``self + other`` (sign > 0) or ``self - other``."""
        def one(a, b):
            if b is None:
                return a
            if a is None:
                return b if sign > 0 else -b
            return a + b if sign > 0 else a - b
        return TermExpr([one(a, b) for a, b in zip(self.t, other.t)], self.shape)

    def reshaped(self, shape) -> "TermExpr":
        return TermExpr(self.t, tuple(shape))

    @staticmethod
    def gather(exprs: list["TermExpr"], index: np.ndarray, shape) -> "TermExpr":
        """Entry k is entry ``index[k]`` of the stacked ``exprs`` (-1: zero)."""
        flat = [t for e in exprs for t in e.t]
        return TermExpr([flat[i] if i >= 0 else None for i in index], tuple(shape))


@dataclass
class Z3Encoder:
    """The z3 back end's state during the walk: ReLU bounds by node (None: exact ReLUs only),
    options, the constraints collected, each ReLU node's pre-activation variables (None where
    the neuron was dropped) and the stable/unstable counts."""

    pre: dict[int, tuple[np.ndarray, np.ndarray]] | None
    order: dict[int, int]
    prefix: str = "n"
    relu_encoding: str = "ite"
    triangle: bool = True
    node: int = -1
    constraints: list = field(default_factory=list)
    pre_vars: dict = field(default_factory=dict)
    stats: dict = field(default_factory=lambda: {"inactive": 0, "active": 0, "unstable": 0})

    def relu(self, z: TermExpr) -> TermExpr:
        """The value of ReLU node ``self.node`` on input ``z`` (module doc)."""
        import z3
        k = self.order[self.node]
        bounds = None if self.pre is None else self.pre[self.node]
        acts, zs = [], []
        for j, zt in enumerate(z.t):
            l, u = (-np.inf, np.inf) if bounds is None else (float(bounds[0][j]), float(bounds[1][j]))
            if u <= 0:
                self.stats["inactive"] += 1
                acts.append(None)
                zs.append(None)
                continue
            v = z3.Real(f"{self.prefix}{k}_{j}")
            zs.append(v)
            self.constraints.append(v == (zt if zt is not None else z3.RealVal(0)))
            if l >= 0:
                self.stats["active"] += 1
                self.constraints += [v >= rational(l), v <= rational(u)] if np.isfinite(u) else [v >= rational(l)]
                acts.append(v)
                continue
            self.stats["unstable"] += 1
            a = z3.Real(f"{self.prefix}{k}_{j}_relu")
            if np.isfinite(l) and np.isfinite(u):
                self.constraints += _relu(v, a, l, u, self.relu_encoding, self.triangle)
            else:
                self.constraints.append(a == z3.If(v > 0, v, 0))
            acts.append(a)
        self.pre_vars[self.node] = zs
        return TermExpr(acts, z.shape)


def _relu(z, a, l: float, u: float, encoding: str, triangle: bool) -> list:
    """Exact ReLU ``a = max(z, 0)`` plus redundant facts from the (widened) bounds ``l < 0 < u``."""
    import z3
    exact = (a == z3.If(z > 0, z, 0)) if encoding == "ite" else \
        z3.Or(z3.And(z > 0, a == z), z3.And(z <= 0, a == 0))
    cons = [exact, a >= 0, a >= z, z >= rational(l), z <= rational(u)]
    if triangle:
        fl, fu = Fraction(l), Fraction(u)
        slope = fu / (fu - fl)   # triangle upper face: a <= u (z - l) / (u - l), exact rational
        cons.append(a <= z3.RealVal(str(slope)) * (z - rational(l)))
    return cons


@dataclass(frozen=True, eq=False)
class Z3Encoding:
    """z3 terms of one encoded graph: real ``outputs`` (variables), the ``constraints`` defining
    them, ``pre_vars`` (ReLU node -> its pre-activation variables, None where dropped), every
    encoded node's ``values`` (``TermExpr``) and the neuron counts in ``stats``."""

    outputs: list
    constraints: list
    pre_vars: dict
    values: dict
    stats: dict


def check_pre(graph: Graph, pre) -> list[tuple[np.ndarray, np.ndarray]]:
    """``pre`` as flat float64 (l, u) per ReLU node of ``graph`` (``graph.relu_nodes`` order)."""
    if len(pre) != len(graph.relu_nodes):
        raise ShapeMismatchError(f"pre_bounds has {len(pre)} layers, the network has "
                                 f"{len(graph.relu_nodes)} ReLU layers")
    out = []
    for j, ((l, u), n) in enumerate(zip(pre, graph.relu_sizes)):
        l = np.asarray(l.detach().cpu() if hasattr(l, "detach") else l, dtype=np.float64).reshape(-1)
        u = np.asarray(u.detach().cpu() if hasattr(u, "detach") else u, dtype=np.float64).reshape(-1)
        if l.shape != (n,) or u.shape != (n,):
            raise ShapeMismatchError(f"pre_bounds[{j}] has shapes {l.shape}/{u.shape}, layer has {n} neurons")
        out.append((l, u))
    return out


def encode_z3(graph: Graph, inputs: Sequence, pre=None, prefix: str = "n", relu: str = "ite",
              triangle: bool = True) -> Z3Encoding:
    """Encode ``y = graph(inputs)`` over real z3 terms ``inputs`` (flat, ``graph.input_dim``);
    ``pre``: (l, u) per ReLU node holding in exact arithmetic, or None (module doc)."""
    import z3
    if relu not in RELU_ENCODINGS:
        raise ConfigError(f"unknown ReLU encoding {relu!r}; choose one of {', '.join(RELU_ENCODINGS)}")
    if len(inputs) != graph.input_dim:
        raise ShapeMismatchError(f"{len(inputs)} input terms for a network with {graph.input_dim} inputs")
    relus = graph.relu_nodes
    by_node = None if pre is None else dict(zip(relus, check_pre(graph, pre)))
    enc = Z3Encoder(by_node, {i: k for k, i in enumerate(relus)}, prefix, relu, triangle)
    vals = walk(graph, enc, TermExpr(list(inputs), graph.input_shape))
    ys = [z3.Real(f"{prefix}out_{j}") for j in range(graph.output_dim)]
    cons = enc.constraints + [y == (t if t is not None else z3.RealVal(0)) for y, t in zip(ys, vals[graph.output].t)]
    return Z3Encoding(ys, cons, enc.pre_vars, vals, enc.stats)


def interval_pre(graph: Graph, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float64 interval (IBP) bounds of each ReLU node's input over the flat box [lo, hi]
    (widen them with :func:`widen_pre` before z3 relies on them)."""
    from certprune.bounds.ibp import ibp
    b = ibp(graph, torch.as_tensor(lo, dtype=torch.float64)[None], torch.as_tensor(hi, dtype=torch.float64)[None])
    return [tuple(t.reshape(-1).numpy() for t in b[graph.nodes[i].inputs[0]]) for i in graph.relu_nodes]


def widen_pre(graph: Graph, lo: np.ndarray, hi: np.ndarray, pre) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float64 ReLU-input bounds widened per neuron by ``1e-9`` times a round-off scale (plus
    1e-12), then rounded outward to short rationals, so they enclose the exact-arithmetic values
    even where float64 summation cancelled. The scale of a ReLU input is the magnitude its
    operators reach from the magnitudes of their inputs (interval image of ``[-m, m]``: for a
    Linear ``|W| m + |b|``), plus ``|l| + |u|``; a ReLU's own magnitude is its widened ``u^+``;
    ``lo``/``hi`` is the flat input box."""
    checked = dict(zip(graph.relu_nodes, check_pre(graph, pre)))
    mag = torch.as_tensor(np.maximum(np.abs(lo), np.abs(hi)), dtype=torch.float64).reshape(1, *graph.input_shape)
    m, out = {0: mag}, []
    for i in sorted(graph.ancestors(graph.output))[1:]:
        node = graph.nodes[i]
        if i in checked:
            l, u = checked[i]
            scale = m[node.inputs[0]].reshape(-1).numpy() + np.abs(l) + np.abs(u)
            margin = _REL_MARGIN * scale + _ABS_MARGIN
            wl, wu = _round_out(l - margin, u + margin)
            out.append((wl, wu))
            m[i] = torch.from_numpy(np.maximum(wu, 0)).reshape(1, *node.shape)
            continue
        a, b = node.op.interval(*[(-m[j], m[j]) for j in node.inputs])
        m[i] = torch.maximum(a.abs(), b.abs())
    return out


def _round_out(l: np.ndarray, u: np.ndarray, bits: int = _BOUND_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Round ``l`` down and ``u`` up to ``bits`` significant bits: still sound (only wider), and
    short rationals keep z3's simplex fast (float64 bounds as exact rationals carry 53-bit
    numerators that make pivoting slow)."""
    _, e = np.frexp(np.maximum(np.abs(l), np.abs(u)) + 1e-300)
    g = np.ldexp(1.0, e - bits)
    return np.floor(l / g) * g, np.ceil(u / g) * g
