"""The twin network: fairness compiled to an ordinary Property over a twin of the model.

One form: :func:`twin_graph`, the graph IR (shared input z, Select / Add nodes building x and
x', two copies of the model's graph, output ``[s(x), s(x')]``), which every back end runs on:
the fairness engine's bounds (``twin_bounds``: forward pass and backward CROWN over it), its z3
leaves (``fairness_smt``, through the IR's z3 encoding) and the Property-based ``verify`` / smt.

Input layout ``z = [x (n features), x'_p (one per protected feature), d_r (one per relaxed
feature)]``; ``x = P z`` and ``x' = P' z`` where ``x'`` equals ``x`` except ``x'_p = z[n+j]`` and
``x'_r = x_r + d_r`` (|d_r| <= delta_r); the outputs are ``[y, y']`` (the decision logit of each
copy).

The constraint that ``x'_r`` stays in the domain/partition couples two inputs, so it is not a box:
the Properties built here drop it (a sound over-approximation for certification) and every
back end that returns a candidate (BaB leaves, z3, sampling) re-checks it with :func:`valid_pairs`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from certprune.errors import UnsupportedModelError
from certprune.fairness_spec import FairnessSpec
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.graph import ops_merge as M
from certprune.graph import ops_shape as S
from certprune.graph.ir import Graph, Node
from certprune.verifiers.affine import AffineReluNet


@dataclass(frozen=True, eq=False)
class TwinLayout:
    """Index bookkeeping of the twin input ``z``; ``P``/``Pp`` are the (n, dz) maps z -> x, x'."""

    n: int
    protected: tuple[int, ...]
    relaxed: tuple[int, ...]
    deltas: tuple[int, ...]
    P: np.ndarray
    Pp: np.ndarray

    @property
    def dz(self) -> int:
        return self.n + len(self.protected) + len(self.relaxed)

    def split(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, x') of twin inputs ``z`` (N, dz)."""
        z = np.asarray(z, dtype=np.float64)
        return z @ self.P.T, z @ self.Pp.T


def twin_layout(spec: FairnessSpec) -> TwinLayout:
    """The z-layout of a spec (see module doc)."""
    n, prot, rel = spec.num_features, spec.protected_indices, spec.relaxed_indices
    dz = n + len(prot) + len(rel)
    P = np.zeros((n, dz))
    P[np.arange(n), np.arange(n)] = 1.0
    Pp = P.copy()
    for j, i in enumerate(prot):
        Pp[i, i] = 0.0
        Pp[i, n + j] = 1.0
    for j, i in enumerate(rel):
        Pp[i, n + len(prot) + j] = 1.0
    return TwinLayout(n, prot, rel, spec.relaxed_deltas, P, Pp)


def exact_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a - b`` in float64 where that subtraction is exact (always for float32 weights of
    similar magnitude); UnsupportedModelError otherwise, since the one-logit form would then not
    be the model. Exactness is checked with Knuth's error-free TwoSum: the rounding error of
    ``s = a + (-b)`` is exactly ``(a - (s - bv)) + (-b - bv)`` with ``bv = s - a``."""
    a, nb = a.double(), -b.double()
    s = a + nb
    bv = s - a
    err = (a - (s - bv)) + (nb - bv)
    if not bool(torch.isfinite(s).all()) or bool((err != 0).any()):
        raise UnsupportedModelError("fairness audits take the two-class model's logit difference y1 - y0, which "
                                    "float64 cannot represent exactly for these last-layer weights")
    return s


def decision_logit_net(net: AffineReluNet) -> AffineReluNet:
    """One-logit form: unchanged for one output; ``y1 - y0`` for two (argmax = 1 iff > 0)."""
    if net.output_dim == 1:
        return net
    if net.output_dim == 2:
        w, b = net.weights[-1], net.biases[-1]
        return AffineReluNet(net.weights[:-1] + (exact_difference(w[1], w[0])[None],),
                             net.biases[:-1] + (exact_difference(b[1], b[0])[None],), net.input_shape, net.exact)
    raise UnsupportedModelError(
        f"fairness audits support one-logit or two-class models; this model has {net.output_dim} outputs")


@dataclass(frozen=True, eq=False)
class TwinGraph:
    """The twin as a graph IR: input z (dz,), nodes ``x``/``xp`` building x = P z and x' = P' z
    (Select, and Add for relaxed features), two copies of the model graph on them, output
    ``[s(x), s(x')]`` (Concat). ``outs`` = each copy's output node; ``pairs[j]`` = the two copies
    (on x, on x') of the model's node j (``pairs[0] = (x, xp)``); ``relus`` = the pairs of ReLU
    nodes in layer order."""

    graph: Graph
    x: int
    xp: int
    outs: tuple[int, int]
    pairs: tuple[tuple[int, int], ...]
    relus: tuple[tuple[int, int], ...]
    model: Graph


def twin_graph(model: "AffineReluNet | Graph", layout: TwinLayout) -> TwinGraph:
    """The twin graph of a one-logit model (see :class:`TwinGraph`); the two copies share the
    operator objects (the same weights), so their per-operator semantics exist once."""
    from certprune.graph import build_graph
    g = build_graph(model) if isinstance(model, AffineReluNet) else model
    if g.input_dim != layout.n:
        raise UnsupportedModelError(f"the model has {g.input_dim} inputs, the fairness spec {layout.n} features")
    from certprune.graph.relu import ReLU
    other = sorted({type(nd.op).__name__ for nd in g.nodes[1:] if nd.op.nonlinear and not isinstance(nd.op, ReLU)})
    if other:  # the pair-difference pass (twin_bounds.pair_differences) relaxes ReLUs only
        raise UnsupportedModelError(f"fairness twin: unsupported nonlinear operators {', '.join(other)} (ReLU only)")
    nodes = [Node(None, (), (layout.dz,), "z")]

    def add(op, ins, shape, label):
        nodes.append(Node(op, tuple(ins), tuple(shape), label))
        return len(nodes) - 1
    n = layout.n
    x = add(S.Select(torch.arange(n), (layout.dz,), (n,)), (0,), (n,), "x")
    base = torch.arange(n)  # x' before the relaxed offsets: x with the protected values replaced
    for j, i in enumerate(layout.protected):
        base[i] = n + j
    if layout.relaxed:  # x'_r = x_r + d_r, placed among the other entries of z by one Select
        r, rel = len(layout.relaxed), list(layout.relaxed)
        xr = add(S.Select(base[rel], (layout.dz,), (r,)), (0,), (r,), "x_r")
        dr = add(S.Select(torch.arange(r) + n + len(layout.protected), (layout.dz,), (r,)), (0,), (r,), "d_r")
        s = add(M.AddSub(1.0), (xr, dr), (r,), "x_r + d_r")
        cat = add(M.Concat(1, [layout.dz, r]), (0, s), (layout.dz + r,), "[z, x_r + d_r]")
        base[rel] = layout.dz + torch.arange(r)
        xp = add(S.Select(base, (layout.dz + r,), (n,)), (cat,), (n,), "x'")
    else:
        xp = add(S.Select(base, (layout.dz,), (n,)), (0,), (n,), "x'")
    maps = []
    for src in (x, xp):
        m = {0: src}
        for j, node in enumerate(g.nodes[1:], start=1):
            m[j] = add(node.op, [m[k] for k in node.inputs], node.shape, node.label)
        maps.append(m)
    k = g.nodes[g.output].shape[-1]
    outs = (maps[0][g.output], maps[1][g.output])
    out = add(M.Concat(1, [k, k]), outs, (2 * k,), "[s(x), s(x')]")
    pairs = tuple((maps[0][j], maps[1][j]) for j in range(len(g.nodes)))
    return TwinGraph(Graph(tuple(nodes), out), x, xp, outs, pairs, tuple(pairs[j] for j in g.relu_nodes), g)


def protected_pairs(spec: FairnessSpec, lo: np.ndarray, hi: np.ndarray) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Unordered pairs (a, b) of distinct protected-value tuples inside the box [lo, hi].

    Unordered suffices: the violation (decisions differ, |x_r - x'_r| <= delta, both in the
    partition) is symmetric under swapping x and x'."""
    ranges = [range(int(lo[i]), int(hi[i]) + 1) for i in spec.protected_indices]
    return list(itertools.combinations(list(itertools.product(*ranges)), 2))


def pair_box(layout: TwinLayout, spec: FairnessSpec, lo: np.ndarray, hi: np.ndarray,
             a: tuple[int, ...], b: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Box over z for partition [lo, hi] with x_p = a, x'_p = b; d_r within delta and the
    partition width (the coupled bound x_r + d_r in [lo_r, hi_r] is re-checked on candidates)."""
    zlo, zhi = np.zeros(layout.dz), np.zeros(layout.dz)
    zlo[:layout.n], zhi[:layout.n] = lo, hi
    for j, i in enumerate(layout.protected):
        zlo[i] = zhi[i] = a[j]
        zlo[layout.n + j] = zhi[layout.n + j] = b[j]
    off = layout.n + len(layout.protected)
    for j, (i, d) in enumerate(zip(layout.relaxed, layout.deltas)):
        w = int(hi[i] - lo[i])
        zlo[off + j], zhi[off + j] = -min(d, w), min(d, w)
    return zlo, zhi


def violation_disjuncts() -> tuple[LinearConstraints, ...]:
    """Decisions differ over outputs [y, y'] (decision 1 iff logit > 0): ``y > 0 >= y'`` or
    ``y' > 0 >= y``, i.e. (-y < 0, y' <= 0) or (y <= 0, -y' < 0); the ``<`` rows are strict
    (bounds read them non-strictly, counterexamples and z3 exactly)."""
    return (LinearConstraints(np.array([[-1.0, 0.0], [0.0, 1.0]]), np.zeros(2), np.array([True, False])),
            LinearConstraints(np.array([[1.0, 0.0], [0.0, -1.0]]), np.zeros(2), np.array([False, True])))


def partition_properties(spec: FairnessSpec, lo: np.ndarray, hi: np.ndarray) -> list[Property]:
    """The fairness query on partition [lo, hi] as Properties over the twin network, one per
    unordered protected pair; the partition is fair iff none of them has a valid violation.
    Fairify's per-partition query: both x and x' lie in the partition (a relaxed partner x_r + d_r
    outside [lo_r, hi_r] is not asked about). The audit engine (``fairness_bab``) does not use it:
    it pairs an individual with partners anywhere in the domain."""
    layout = twin_layout(spec)
    props = []
    for a, b in protected_pairs(spec, lo, hi):
        zlo, zhi = pair_box(layout, spec, lo, hi, a, b)
        region = InputRegion(zlo, zhi, np.ones(layout.dz, dtype=bool))
        props.append(Property(region, violation_disjuncts(), name=f"fair({a} vs {b})",
                              meta={"protected_pair": (a, b), "partition_lo": lo.tolist(), "partition_hi": hi.tolist()}))
    return props


def protected_values(spec: FairnessSpec) -> list[tuple[int, ...]]:
    """Every protected-value tuple of the domain, in C order (last protected feature fastest)."""
    ranges = [range(int(spec.lower[i]), int(spec.upper[i]) + 1) for i in spec.protected_indices]
    return list(itertools.product(*ranges))


def valid_pairs(spec: FairnessSpec, x: np.ndarray, xp: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row: both points integral, x inside [lo, hi] (its partition, within the domain) and x'
    inside the domain, differ on a protected feature, relaxed features within delta, every other
    feature equal. (An individual x is unfair when some such x' gets the other decision.)"""
    x, xp = np.atleast_2d(x), np.atleast_2d(xp)
    lo = np.maximum(lo, spec.lower)
    hi = np.minimum(hi, spec.upper)
    ok = np.all((x == np.round(x)) & (xp == np.round(xp)), axis=1)
    ok &= np.all((x >= lo) & (x <= hi) & (xp >= spec.lower) & (xp <= spec.upper), axis=1)
    prot, rel = list(spec.protected_indices), list(spec.relaxed_indices)
    ok &= np.any(x[:, prot] != xp[:, prot], axis=1)
    if rel:
        ok &= np.all(np.abs(x[:, rel] - xp[:, rel]) <= np.asarray(spec.relaxed_deltas), axis=1)
    same = [i for i in range(spec.num_features) if i not in prot and i not in rel]
    ok &= np.all(x[:, same] == xp[:, same], axis=1)
    return ok
