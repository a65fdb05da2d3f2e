"""The exact (LP / MILP) encoding of a graph on one branch-and-bound domain, and THE walk that
every exact encoding shares (:func:`walk`; the z3 back end is :mod:`certprune.graph.encode_z3`).

One walk over the IR: every node's value is an affine expression ``M v + c`` (``LinExpr``:
scipy sparse rows over the problem's variables ``v``) and every operator maps the expressions
of its inputs to its own (``Op.encode``, next to its forward, interval and backward steps).
Linear operators compose the rows (a convolution or pooling contributes its sparse Jacobian,
shape operators pick rows); only ReLU adds variables and constraints, given the domain's
pre-activation bounds ``[l, u]`` (sound on the domain) and its split vector:

- stable active (``l >= 0``): the identity; stable inactive (``u <= 0``): zero;
- unstable (``l < 0 < u``): a variable ``a`` in ``[0, u]`` and a binary ``d`` with ``a >= z``,
  ``a <= z - l (1 - d)``, ``a <= u d`` (big-M; exact for d integral);
- a neuron that branch and bound split (+1: ``z >= 0``, -1: ``z <= 0``) adds the split row
  ``-z <= 0`` or ``z <= 0`` (scaled to unit max coefficient) to ``split_rows``: the domain
  is the box with those rows, and its bounds are only sound there.

Two forms. ``lifted=False`` (LP leaves, every ReLU stable): expressions are composed down to
the input, so the output is the affine map ``y = H x + h`` of the domain's linear piece, which
``lp_leaf`` decides with an LP. ``lifted=True`` (``milp_leaf``): every ReLU input gets a variable
``z`` in ``[l, u]`` tied to its expression by an equality row, so rows stay sparse (each refers to
the previous ReLU layers' variables only, as a layer-by-layer MILP does) and the LP relaxation
keeps the bounds ``l <= z <= u`` of every neuron (valid cuts the big-M rows alone do not imply);
the clamped bounds also carry the split constraints. Variables: the flattened input ``x``
first (``n_in``), then per ReLU node in topological order its ``z`` (lifted only) and ``a, d``
per unstable neuron. Arithmetic is float64 on the graph's float64 weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from certprune.graph.ir import Graph


def _keep(M):
    """A product's result in the expression's storage: CSR when sparse, else a dense array."""
    return sp.csr_matrix(M) if sp.issparse(M) else np.asarray(M)


def _vstack(blocks: list):
    return np.vstack(blocks) if isinstance(blocks[0], np.ndarray) else sp.vstack(blocks, format="csr")


@dataclass
class LinExpr:
    """The value of a node, flattened row-major: ``M @ v + c``; ``shape`` the per-sample shape.
    ``M`` is CSR (MILP encodings) or a dense array (linear pieces over the input alone, where
    the rows are dense anyway and numpy is much faster than scipy.sparse)."""

    M: "sp.csr_matrix | np.ndarray"
    c: np.ndarray
    shape: tuple[int, ...]

    def map(self, J, bias: np.ndarray | None, shape) -> "LinExpr":
        """``J @ value + bias`` (J sparse or dense, (n_out, n_in))."""
        c = np.asarray(J @ self.c).ravel()
        return LinExpr(_keep(J @ self.M), c if bias is None else c + bias, tuple(shape))

    def rows(self, index: np.ndarray, shape) -> "LinExpr":
        """Entry ``index[k]`` of the value at position k."""
        return LinExpr(self.M[index], self.c[index], tuple(shape))

    @property
    def dense(self) -> bool:
        """Whether the rows are a dense array (then dense weight matrices multiply fastest)."""
        return isinstance(self.M, np.ndarray)

    def combine(self, other: "LinExpr", sign: float) -> "LinExpr":
        """``self + other`` (sign > 0) or ``self - other``, entrywise."""
        if sign > 0:
            return LinExpr(self.M + other.M, self.c + other.c, self.shape)
        return LinExpr(self.M - other.M, self.c - other.c, self.shape)

    def reshaped(self, shape) -> "LinExpr":
        """The same flat value under another per-sample shape (row-major: the order is kept)."""
        return LinExpr(self.M, self.c, tuple(shape))

    @staticmethod
    def gather(exprs: list["LinExpr"], index: np.ndarray, shape) -> "LinExpr":
        """Entry k is entry ``index[k]`` of the stacked ``exprs`` (-1: zero)."""
        M = _vstack([e.M for e in exprs]) if len(exprs) > 1 else exprs[0].M
        c = np.concatenate([e.c for e in exprs])
        ok = index >= 0
        sel = sp.csr_matrix((np.ones(int(ok.sum())), (np.flatnonzero(ok), index[ok])), shape=(len(index), M.shape[0]))
        return LinExpr(_keep(sel @ M), sel @ c, tuple(shape))


@dataclass
class Encoding:
    """The domain's exact encoding: ``out`` the output expression; ``split_rows`` (P, p) with
    ``P v + p <= 0`` on the domain; ``rows`` the ReLU constraints ``lo <= R v <= hi``; per
    variable bounds and integrality (1 for the binaries; the caller marks integer inputs)."""

    out: LinExpr
    split_rows: tuple[sp.csr_matrix, np.ndarray]
    rows: tuple[sp.csr_matrix, np.ndarray, np.ndarray]
    var_lo: np.ndarray
    var_hi: np.ndarray
    integrality: np.ndarray
    n_in: int
    split_f: np.ndarray | None = None  # split row k is ``split_f[k] * z`` of its neuron (non-lifted)

    @property
    def n_vars(self) -> int:
        return len(self.var_lo)


@dataclass
class Encoder:
    """The walk's state: the domain's ReLU bounds/splits by node, the variables allocated so far
    and the constraint rows collected (see module doc)."""

    n_vars: int
    pre: dict[int, tuple[np.ndarray, np.ndarray]]
    splits: dict[int, np.ndarray]
    var_lo: list = field(default_factory=list)
    var_hi: list = field(default_factory=list)
    integ: list = field(default_factory=list)
    next_var: int = 0
    node: int = -1
    split_M: list = field(default_factory=list)
    split_c: list = field(default_factory=list)
    split_f: list = field(default_factory=list)  # the signed factor of each split row: row = f z
    row_M: list = field(default_factory=list)
    row_lo: list = field(default_factory=list)
    row_hi: list = field(default_factory=list)
    lifted: bool = False

    def _new_vars(self, lo: np.ndarray, hi: np.ndarray, integral: float) -> np.ndarray:
        idx = self.next_var + np.arange(len(lo))
        self.next_var += len(lo)
        self.var_lo.append(lo)
        self.var_hi.append(hi)
        self.integ.append(np.full(len(lo), integral))
        return idx

    def relu(self, z: LinExpr) -> LinExpr:
        """The value of ReLU node ``self.node`` on input ``z`` (see module doc)."""
        l, u = self.pre[self.node]
        s = self.splits.get(self.node)
        n = len(l)
        if self.lifted:
            return self._relu_lifted(z, l, u)
        if s is not None and s.any():
            idx = np.flatnonzero(s)
            sign = np.where(s[idx] > 0, -1.0, 1.0)
            Zi = z.M[idx]
            big = np.abs(Zi).max(axis=1) if isinstance(Zi, np.ndarray) else abs(Zi).max(axis=1).toarray().ravel()
            # normalise rows down only: scaling a near-zero row up would turn float64 rounding in
            # z.c into a contradiction (a falsely empty domain; cf. crown.intermediate's tolerance)
            f = sign / np.maximum(big, 1.0)
            self.split_M.append(f[:, None] * Zi if isinstance(Zi, np.ndarray) else sp.diags(f) @ Zi)
            self.split_c.append(f * z.c[idx])
            self.split_f.append(f)
        active = (l >= 0).astype(np.float64)
        unst = np.flatnonzero((l < 0) & (u > 0))
        M = active[:, None] * z.M if isinstance(z.M, np.ndarray) else sp.diags(active) @ z.M
        c = active * z.c
        if len(unst):
            k = len(unst)
            a = self._new_vars(np.zeros(k), u[unst], 0.0)
            d = self._new_vars(np.zeros(k), np.ones(k), 1.0)
            Zu, cu, lu, uu = z.M[unst], z.c[unst], l[unst], u[unst]
            ar = np.arange(k)
            Ea = sp.csr_matrix((np.ones(k), (ar, a)), shape=(k, self.n_vars))
            Ed = sp.csr_matrix((np.ones(k), (ar, d)), shape=(k, self.n_vars))
            self.row_M += [Ea - Zu, Ea - Zu - sp.diags(lu) @ Ed, Ea - sp.diags(uu) @ Ed]
            self.row_lo += [cu, np.full(k, -np.inf), np.full(k, -np.inf)]
            self.row_hi += [np.full(k, np.inf), cu - lu, np.zeros(k)]
            sel = sp.csr_matrix((np.ones(k), (unst, a)), shape=(n, self.n_vars))
            M = M + sel
        return LinExpr(_keep(M), c, z.shape)

    def _relu_lifted(self, z: LinExpr, l: np.ndarray, u: np.ndarray) -> LinExpr:
        """Lifted form: z becomes a variable in [l, u] (the clamped bounds carry the splits),
        tied to its expression by equality rows; the big-M rows refer to z, a, d only."""
        n, N = len(l), self.n_vars
        ar = np.arange(n)
        zv = self._new_vars(l.copy(), u.copy(), 0.0)
        self.row_M.append(sp.csr_matrix((np.ones(n), (ar, zv)), shape=(n, N)) - z.M)
        self.row_lo.append(z.c.copy())
        self.row_hi.append(z.c.copy())
        active, unst = np.flatnonzero(l >= 0), np.flatnonzero((l < 0) & (u > 0))
        k = len(unst)
        a = self._new_vars(np.zeros(k), u[unst], 0.0)
        d = self._new_vars(np.zeros(k), np.ones(k), 1.0)
        if k:
            r = np.arange(k)
            zu, lu, uu = zv[unst], l[unst], u[unst]
            one = np.ones(k)
            rows = np.concatenate([r, r, r + k, r + k, r + k, r + 2 * k, r + 2 * k])
            cols = np.concatenate([a, zu, a, zu, d, a, d])
            vals = np.concatenate([one, -one, one, -one, -lu, one, -uu])
            self.row_M.append(sp.csr_matrix((vals, (rows, cols)), shape=(3 * k, N)))  # a - z >= 0,
            self.row_lo.append(np.r_[np.zeros(k), np.full(2 * k, -np.inf)])        # a - z - l d <= -l,
            self.row_hi.append(np.r_[np.full(k, np.inf), -lu, np.zeros(k)])          # a - u d <= 0
        out_rows = np.concatenate([active, unst])
        out_cols = np.concatenate([zv[active], a])
        M = sp.csr_matrix((np.ones(len(out_rows)), (out_rows, out_cols)), shape=(n, N))
        return LinExpr(M, np.zeros(n), z.shape)


def encode(graph: Graph, pre: list[tuple[np.ndarray, np.ndarray]], splits: list[np.ndarray] | None = None,
           lifted: bool = False, target: int | None = None) -> Encoding:
    """Encode the graph on one domain: ``pre[j]`` (l, u) flat bounds of the j-th ReLU node's input
    (sound on the domain), ``splits[j]`` its int8 split vector (None: no splits); ``lifted``: a
    variable per ReLU input (see module doc). ``target``: encode only what node ``target`` depends
    on, ``out`` is its expression and ``pre`` / ``splits`` cover only the ReLU nodes below it
    (the intermediate-bound refinement of ``verifiers.refine``)."""
    relus = graph.relu_nodes
    if target is not None:
        relus = tuple(i for i in relus if i in graph.ancestors(target))
        if len(pre) != len(relus):
            raise ValueError(f"encode needs bounds of the {len(relus)} ReLU nodes below node {target}, got {len(pre)}")
    target = graph.output if target is None else target
    splits = [np.zeros(len(l), np.int8) for l, _ in pre] if splits is None else splits
    n_in = graph.input_dim
    n_unst = sum(int(((l < 0) & (u > 0)).sum()) for l, u in pre)
    n_vars = n_in + 2 * n_unst + (sum(len(l) for l, _ in pre) if lifted else 0)
    enc = Encoder(n_vars, {i: (np.asarray(l, np.float64), np.asarray(u, np.float64)) for i, (l, u) in zip(relus, pre)},
                  {i: np.asarray(s) for i, s in zip(relus, splits)}, lifted=lifted)
    enc._new_vars(np.full(n_in, -np.inf), np.full(n_in, np.inf), 0.0)
    dense = n_vars == n_in  # a linear piece over the input alone: dense rows
    eye = np.eye(n_in) if dense else sp.eye(n_in, n_vars, format="csr")
    vals = walk(graph, enc, LinExpr(eye, np.zeros(n_in), graph.input_shape), target)
    empty = np.zeros((0, n_vars)) if dense else sp.csr_matrix((0, n_vars))
    P = _vstack(enc.split_M) if enc.split_M else empty
    p = np.concatenate(enc.split_c) if enc.split_c else np.zeros(0)
    R = sp.vstack(enc.row_M, format="csr") if enc.row_M else sp.csr_matrix((0, n_vars))
    rlo = np.concatenate(enc.row_lo) if enc.row_lo else np.zeros(0)
    rhi = np.concatenate(enc.row_hi) if enc.row_hi else np.zeros(0)
    assert enc.next_var == n_vars
    return Encoding(vals[target], (P, p), (R, rlo, rhi), np.concatenate(enc.var_lo),
                    np.concatenate(enc.var_hi), np.concatenate(enc.integ), n_in,
                    np.concatenate(enc.split_f) if enc.split_f else np.zeros(0))


def walk(graph: Graph, enc, x, target: int | None = None) -> dict:
    """THE walk of every exact encoding: each node the output depends on, in topological order,
    maps its inputs' expressions through ``op.encode(enc, ...)``; ``x`` is the input's expression.
    The back end is the expression type (``LinExpr`` rows for HiGHS, z3 terms for
    :mod:`certprune.graph.encode_z3`) and the encoder ``enc`` (its ``relu``; ``enc.node`` is set to
    the node being encoded). Returns every encoded node's expression by index; ``target``
    (default the output): encode only the nodes it depends on."""
    live = graph.ancestors(graph.output if target is None else target)
    vals = {0: x}
    for i, node in enumerate(graph.nodes[1:], start=1):
        if i not in live:
            continue
        enc.node = i
        v = node.op.encode(enc, *[vals[j] for j in node.inputs])
        v.shape = tuple(node.shape)
        vals[i] = v
    return vals


JACOBIAN_CHUNK = 256  # unit vectors per forward call when reading a linear operator's Jacobian


def jacobian(fn, in_shape: tuple[int, ...]) -> tuple[sp.csr_matrix, np.ndarray]:
    """(J, b) with ``fn(x).ravel() = J @ x.ravel() + b`` for an affine single-input ``fn`` on
    batched float64 tensors ``(k, *in_shape)``: read off the unit basis in chunks, kept sparse
    (exact zeros dropped), so a convolution gives its sparse rows."""
    n = int(np.prod(in_shape))
    with torch.no_grad():
        b = fn(torch.zeros(1, *in_shape, dtype=torch.float64)).reshape(-1)
        parts = []
        for s in range(0, n, JACOBIAN_CHUNK):
            k = min(JACOBIAN_CHUNK, n - s)
            e = torch.zeros(k, n, dtype=torch.float64)
            e[torch.arange(k), s + torch.arange(k)] = 1.0
            cols = (fn(e.reshape(k, *in_shape)).reshape(k, -1) - b).numpy()
            parts.append(sp.csr_matrix(cols.T))
    return sp.hstack(parts, format="csr"), b.numpy()


def cached(op, key, make):
    """``make()`` once per operator and key (Jacobians and index maps are reused by every leaf)."""
    store = op.__dict__.setdefault("_encode_cache", {})
    if key not in store:
        store[key] = make()
    return store[key]


def affine_encode(op, x: LinExpr, fn=None, bias: np.ndarray | None = None) -> LinExpr:
    """Encoding of a single-input linear operator through its sparse Jacobian (``fn``, bias-free,
    defaults to ``op.forward``), plus ``bias`` (flat) if given."""
    J, b = cached(op, ("jac", x.shape), lambda: jacobian(fn or op.forward, x.shape))
    return x.map(J, b if bias is None else b + bias, ())


def moved_encode(op, *xs: LinExpr) -> LinExpr:
    """Encoding of an operator that only moves or zero-fills entries (see :func:`index_map`)."""
    idx = cached(op, ("index",) + tuple(x.shape for x in xs), lambda: index_map(op.forward, *[x.shape for x in xs]))
    return moved(list(xs), idx, ())


def index_map(fn, *in_shapes) -> np.ndarray:
    """For an operator that only moves or zero-fills entries (reshape, permute, pad, concat):
    per output entry the index into the concatenated flattened inputs, or -1 for a zero."""
    offs, xs = 1, []
    for shp in in_shapes:
        n = int(np.prod(shp))
        xs.append(torch.arange(offs, offs + n, dtype=torch.float64).reshape(1, *shp))
        offs += n
    with torch.no_grad():
        out = fn(*xs).reshape(-1)
    return out.numpy().astype(np.int64) - 1


def moved(exprs: list, index: np.ndarray, shape):
    """The expression whose entry k is entry ``index[k]`` of the stacked ``exprs`` (-1: zero), in
    the expressions' own back end (``LinExpr`` rows or z3 terms)."""
    return type(exprs[0]).gather(list(exprs), index, shape)


def rows_copied(graph: Graph, p: int) -> bool:
    """Whether the lifted encoding's rows of node ``p`` are one Linear / Conv operator's own
    weights on a ReLU node or the input (through reshapes only, which move entries): then the LP is the
    network's relaxation exactly, and the dual bound (``refine.dual_bound``) is rigorous for it. A
    composition (Linear after Linear, BatchNorm, scaling, a sum of branches) is multiplied out in
    float64 by the encoder, and a bound rigorous for those rounded rows is not one for the model
    (a review certified a false property through it), so neither the root refinement
    (``verifiers.refine``) nor the MILP leaf (``verifiers.bab``) works on such rows."""
    from certprune.graph import ops_linear as L
    from certprune.graph import ops_shape as S
    from certprune.graph.relu import ReLU

    node = graph.nodes[p]
    # a convolution's (or transposed one's, graph.build) Jacobian is read off its bias-free unit
    # basis: one weight per entry, copied (an input reaches an output through one kernel tap)
    if not isinstance(node.op, (L.Linear, L.Conv, L.Dense)):
        return False
    j = node.inputs[0]
    while graph.nodes[j].op is not None and isinstance(graph.nodes[j].op, S.Reshape):
        j = graph.nodes[j].inputs[0]
    return graph.nodes[j].op is None or isinstance(graph.nodes[j].op, ReLU)


def encoding_exact(graph: Graph) -> bool:
    """Whether the lifted encoding of the whole graph is the network's relaxation exactly: every
    ReLU input and the output is :func:`rows_copied` (the exact leaves' condition to refute)."""
    return all(rows_copied(graph, graph.nodes[r].inputs[0]) for r in graph.relu_nodes) and \
        rows_copied(graph, graph.output)
