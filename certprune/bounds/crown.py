"""Backward CROWN over the graph IR (one implementation for every consumer).

``backward`` bounds ``sum(A * v_t)`` from below for a target node ``t``: it sweeps the nodes in
decreasing index (a reverse topological order), hands each node's accumulated coefficients to
its operator's backward step and *adds* the contributions of all consumers of a node (residual
connections, concat branches, twin copies), as auto_LiRPA's BoundedModule does, then
concretises the linear function of the input over the box.

``intermediate`` computes the pre-activation bounds of every ReLU in topological order, each by
a backward pass to the input over the ReLUs below it. Options:
- ``rows``: ``"all"`` runs the identity-spec pass for every neuron (auto_LiRPA 0.3's dense
  intermediate bounds: the agreement tests); ``"unstable"`` (the issue-9 rule) gives CROWN bounds
  only to the neurons that the interval image of the tightest bounds below leaves unstable *in
  that box* (:func:`unstable_crown`: per-box spec rows, or one pass over the neurons unstable
  in some box). A neuron the interval proves stable keeps the interval
  bounds, which is all its exact relaxation (identity or zero) needs; an interval-unstable
  neuron gets the same CROWN bounds as in ``"all"`` whenever the relaxations below are the same.
  Where CROWN alone would leave an interval-stable neuron unstable, ``"all"`` relaxes it and
  ``"unstable"`` keeps it exact: both sound, no longer equal to auto_LiRPA's, and neither
  always tighter (CROWN is not monotone in the relaxations: an exact active neuron passes
  CROWN's own lower bound of its input down where ``"all"`` may use ``relu(z) >= 0``; measured
  on random MLPs, tighter far more often than looser, see tests/test_bounds_unstable_rows.py).
  With ``intersect``, ``"all"`` is tighter: the CROWN bounds of stable neurons tighten later
  layers' interval images;
- ``intersect``: intersect every CROWN bound with the interval image of the tightest bounds of
  the node's inputs (sound, tighter; off = auto_LiRPA 0.3's semantics with dense intermediate
  bounds, which the agreement tests check);
- ``sparse`` (needs ``intersect``): where a dense pass is costly (neurons x values below the
  node > ``SPARSE_WORK``), run CROWN only for neurons that are unstable by interval arithmetic
  in some box of the batch. A stable
  neuron's relaxation is exact whatever its bounds, so this costs nothing in the CROWN part; it
  does lose the tighter interval images that CROWN bounds of stable neurons give later layers
  (measured on ACAS Xu: much looser), hence only where the identity-spec backward pass is
  what costs (convolutional layers, deep ResNets);
- patches mode: the identity-spec pass of a convolutional node keeps each neuron's coefficients
  on its receptive field only (:class:`~certprune.graph.windows.Windows`), where that is cheaper
  than the dense pass (a cost rule, ``windows.plan`` / ``windows.cost``; same bounds). It is the
  same sweep: every operator's backward step accepts dense coefficients or windows;
- a node that is a single linear operator applied to the input box (the first Linear / Conv)
  has exact interval bounds, equal to CROWN's: no backward pass is run for it;
- ``splits``: per ReLU node, an int8 vector (N, n) with +1 (forced active: l >= 0) / -1
  (forced inactive: u <= 0) / 0, applied by clamping; crossing bounds mark the domain infeasible.
All arithmetic is float64.

Rounding (the bounds are rigorous for the real-arithmetic network despite float64 rounding):
treat the *computed* coefficients as Lagrange multipliers. Each backward step maps computed
coefficients ``A`` on a node's output to computed coefficients on its inputs and a bias; in
real arithmetic ``sum(A * y)`` then equals (or, for ReLU, is bounded below by) the computed
linear function of the inputs up to the step's rounding residual, at most ``sum(|A| * r)`` with
``r = Op.float64_residual`` of the node (from magnitude bounds ``m = max(|l|, |u|)`` of its
inputs): for Linear / Conv / MatMul ``r = gamma_k (|W| m + |b|)`` (Higham: any summation order,
FMA or not, k covering the inner lengths of the forward and the backward product and the bias
sums); ReLU (``ReLU.relaxation_residual``) ``gamma_{n+12} m`` on unstable neurons (the float
chord misses relu by ``<= 3.01 u m``, alpha lines in [0, 1] are exact relaxations, the
coefficients and the intercept product round), 0 on stable ones; Add / Sub one rounding, shape
ops 0. The sweep adds ``|acc[i]| . r_i`` per node (one elementwise pass beside the step's
product; windows: against the unfolded ``r``), ``u |bias|`` per bias addition, ``2 u |acc| . m``
where two consumers' coefficients are summed and, with beta, ``2 u |coef| . m`` for ``coef -
beta``; it concretises over the input box widened by ``gamma_{4 n + 48} max(|lo|, |hi|)`` (which
absorbs the rounded centre / radius and the two inner products) and subtracts ``1.001 (margin
+ 2 u |bias|) + 3 u |lower| + 2^-900`` (the margin's own rounding, the last subtractions,
underflow). The two-product step of ``node_crown`` is covered by the Linear's plus the ReLU's
residual on ``|w|`` (:func:`_two_step_margin`). Every interval image in :func:`intermediate`
and ``bounds.ibp`` is widened by the same ``r`` (``rounded_interval``), so the relaxations are
built from rigorous bounds, and :func:`add_rounded` adds a spec's constant. The margin is
``~k u`` relative to the absolute terms of the bound: ~1e-13 on normal nets, far above the
bound's value only where large terms cancel. States built without node bounds (heuristic
child scores in ``bab_relu``) get no margin; ``ROUNDING_MARGIN = False`` turns it off for
measurements only. Convolutions assume float64 convolution by direct summation (im2col /
gemm, as on CPU); FFT / Winograd kernels have no such bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from certprune.errors import check_deadline
from certprune.graph import windows
from certprune.graph.ir import Graph
from certprune.graph.op import Interval
from certprune.graph.ops_linear import Linear, batched_mv, matmul
from certprune.graph.relu import ReLU, Relaxation
from certprune.semantics import U64, gamma64

ROW_CHUNK = 1024  # identity rows per backward pass for intermediate bounds
ROW_BUDGET = 1 << 21  # values per coefficient tensor (boxes x rows x node size, 16 MB in float64: larger
# tensors are mmap-allocated by glibc and page-faulted on every pass, measured 1.4-1.8x slower on the MNIST convnet)
SPARSE_WORK = 1 << 21  # sparse intermediate bounds where (neurons x values below the node) exceeds this
_BOX_OPS = ("scale", "reshape", "permute", "pad")  # map a box onto a box (coordinatewise / permutation)


@dataclass
class State:
    """Boxes ``lo``/``hi`` (N, input_dim); ``bounds[i]`` the tightest known bounds of node i
    (N, *shape); ``relax[i]`` and ``pre[i]`` (clamped input bounds) of each ReLU node i;
    ``infeasible`` (N,) domains whose split constraints contradict the bounds; ``deadline``
    (``time.monotonic()`` value or None) checked between the backward passes of one node's
    bounds (row chunks, box groups, window chunks), so that one large node cannot overrun it
    by more than one pass."""

    lo: torch.Tensor
    hi: torch.Tensor
    bounds: dict[int, Interval] = field(default_factory=dict)
    relax: dict[int, Relaxation] = field(default_factory=dict)
    pre: dict[int, Interval] = field(default_factory=dict)
    infeasible: torch.Tensor | None = None
    deadline: float | None = None
    resid: dict[int, torch.Tensor] = field(default_factory=dict)
    folded: dict[int, int] = field(default_factory=dict)  # ReLU node -> its input, charged with it
    fold_resid: dict[int, torch.Tensor] = field(default_factory=dict)  # their residuals summed
    cache: dict = field(default_factory=dict)  # magnitudes and the widened box, built once per state


@dataclass
class Backward:
    """A lower bound ``lower`` (K, m) of ``sum(A * v_t)``, the input coefficients ``lam_x``
    (K, m, input_dim) of the final linear function (None where the caller did not keep them), and per ReLU node the intercept loss
    (K, m, n) of every neuron (``scores``, when recorded)."""

    lower: torch.Tensor
    lam_x: torch.Tensor | None
    scores: dict[int, torch.Tensor]


def backward(graph: Graph, target: int, A: torch.Tensor, st: State,
             alphas: dict[int, torch.Tensor] | None = None, record: bool = False,
             betas: dict[int, torch.Tensor] | None = None, keep_lam: bool = True) -> Backward:
    """Lower bound of ``sum(A * v_target)`` over the boxes; ``A`` (K, m, *shape_target), K in {1, N}.
    ``alphas[i]`` (N, m, *shape) replace ReLU node i's unstable lower slopes (alpha-CROWN);
    ``betas[i]`` (N, m, *shape) are ReLU node i's signed split multipliers (beta-CROWN, see
    ``ReLU.backward_relaxed``). ``keep_lam=False``: ``lam_x`` is not returned and its buffer is
    overwritten by the concretisation (one allocation less per pass); that buffer is ``A`` itself
    where every operator between the target and the input only reshapes, so pass a tensor of
    your own."""
    return sweep(graph, target, {target: A}, A.new_zeros(A.shape[0], A.shape[1]), st, alphas, record, betas,
                 keep_lam)


def sweep(graph: Graph, start: int, acc: dict[int, torch.Tensor], bias: torch.Tensor, st: State,
          alphas: dict[int, torch.Tensor] | None = None, record: bool = False,
          betas: dict[int, torch.Tensor] | None = None, keep_lam: bool = True,
          margin: torch.Tensor | None = None) -> Backward:
    """The backward sweep from node ``start`` down, with coefficients ``acc`` already placed on
    some nodes and the bias collected so far (see :func:`backward`). The coefficients are dense
    tensors or :class:`~certprune.graph.windows.Windows` (the lower bounds then come per window
    row, (N, Lc * R)); each operator's step handles both. ``margin`` (broadcastable to the
    lower bound): a rounding margin of the steps the caller already took (``node_crown``).

    On a state with node bounds (built by :func:`intermediate`), the returned lower bound is
    rigorous for real arithmetic: the float64 rounding margin of every step (module doc,
    "Rounding") is accumulated alongside and subtracted."""
    A = next(iter(acc.values()))
    scores: dict[int, torch.Tensor] = {}
    rig = ROUNDING_MARGIN and 0 in st.bounds
    mar = margin
    charged: set[int] = set()  # nodes whose residual was charged with their consumer ReLU's
    for i in range(start, 0, -1):
        coef = acc.pop(i, None)
        if coef is None:
            continue
        if isinstance(coef, windows.Windows) and i not in coef.at.plan:
            coef = coef.dense()  # windows no longer pay below here (``windows.plan``)
        node = graph.nodes[i]
        if node.op.nonlinear:
            a = None if alphas is None else alphas.get(i)
            beta = None if betas is None else betas.get(i)
            res = None
            if rig:
                res = st.resid.get(i)
                p = st.folded.get(i)
                fold = p is not None and p not in acc
                if fold:  # the ReLU's only input p gets |new| <= |coef| (1 + 3u) (+ |beta|): charge p here
                    res, _ = st.fold_resid[i], charged.add(p)
                if beta is not None:  # new - beta rounds once more, and p's coefficients grow by |beta|
                    mar = _plus(mar, _beta_margin(st, i, beta, p if fold else None))
                    res = _plus(res, 2 * U64 * _magnitude(st, ("pre", i), st.pre[i]))
                if res is not None and isinstance(coef, windows.Windows):
                    mar, res = _plus(mar, _abs_dot(coef, res)), None
            new, b, loss, m = ReLU.backward_margin(coef, st.relax[i], a, record, beta, res)
            if m is not None:
                mar = _plus(mar, m)
            if record:
                scores[i] = loss.detach().reshape(loss.shape[0], loss.shape[1], -1)
            ins, bias = [new], bias + b
            if rig:
                mar = _plus(mar, U64 * bias.detach().abs())
        else:
            if rig and i in st.resid and i not in charged:
                mar = _plus(mar, _abs_dot(coef, st.resid[i]))
            ins, b = node.op.backward(coef)
            if b is not None:
                bias = bias + b
                if rig:
                    mar = _plus(mar, U64 * bias.detach().abs())
        for j, cj in zip(node.inputs, ins):
            if j not in acc:
                acc[j] = cj
                continue
            charged.discard(j)  # a second contribution: charge j's residual on the sum
            acc[j] = _add(acc[j], cj)
            if rig:  # the sum of two consumers' coefficients rounds once per entry
                mar = _plus(mar, 2 * U64 * _abs_dot(acc[j], _magnitude(st, j, st.bounds[j])))
    lam = acc.get(0)
    box = _wide_box(graph, st) if rig else None
    if isinstance(lam, windows.Windows):
        if 0 in lam.at.plan:
            shaped = box[1] if rig else st.bounds[0]
            return Backward(_finish(lam.concretize(bias, *shaped), mar, bias, rig), None, scores)
        lam = lam.dense()
    if lam is None and isinstance(A, windows.Windows):  # the node does not depend on the input
        return Backward(_finish(bias.expand(st.lo.shape[0], bias.shape[1]), mar, bias, rig), None, scores)
    if lam is None:
        lam = A.new_zeros(A.shape[0], A.shape[1], graph.input_dim)
    lam = lam.reshape(lam.shape[0], lam.shape[1], -1)
    lo, hi = box[0] if rig else (st.lo, st.hi)
    if keep_lam:
        return Backward(_finish(concretize_lower(lam, bias, lo, hi), mar, bias, rig), lam, scores)
    return Backward(_finish(concretize_lower(lam, bias, lo, hi, overwrite=True), mar, bias, rig), None, scores)


ROUNDING_MARGIN = True  # False only to measure what the margin costs (experiments/): never in use
MARGIN_SAFETY = 1.001  # covers the relative rounding of computing the margin itself (<< 1e-3)
TINY = 2.0 ** -900  # absolute: covers gradual underflow (<= 2^-1075 per operation)


def _plus(a: torch.Tensor | None, b: torch.Tensor) -> torch.Tensor:
    return b if a is None else a + b


def _abs_dot(coef, r: torch.Tensor) -> torch.Tensor:
    """``sum(|coef| * r)`` per row, (max(K, N), rows), for dense coefficients (K, m, *shape) or
    windows, and ``r`` (N, *shape) >= 0 (no gradient: the margin is a constant of the bound)."""
    with torch.no_grad():
        if isinstance(coef, windows.Windows):
            w = coef.of(r, "margin", lambda: r.to(coef.P.dtype))
            out = coef.flat().abs() @ w.transpose(-1, -2)
            return out.reshape(out.shape[0], -1)
        c = coef.detach()
        return batched_mv(c.abs().reshape(c.shape[0], c.shape[1], -1), r.reshape(r.shape[0], -1))


def _beta_margin(st: State, i: int, beta: torch.Tensor, p: int | None) -> torch.Tensor:
    """``sum(|beta| * (2 u m + 2 r_p))`` per row (r_p: the folded input's residual, where p is
    given) as one product ``beta . (sign * v)``: beta is ``b * split`` (b >= 0) and nonzero only
    on split neurons, which the clamped bounds make stable, so ``sign`` (+1 where l >= 0, -1 where
    u <= 0) is the sign of beta wherever beta is nonzero."""
    l, u = st.pre[i]
    v = 2 * U64 * _magnitude(st, ("pre", i), st.pre[i])
    if p is not None:
        v = v + 2 * st.resid[p].reshape(v.shape)
    sign = (l >= 0).to(v.dtype) - (u <= 0).to(v.dtype)
    with torch.no_grad():
        B = beta.detach()
        B = B.reshape(B.shape[0], B.shape[1], -1)
        out = batched_mv(B, (sign * v).reshape(v.shape[0], -1))
        zero = (l == 0) & (u == 0)  # either split sign: |beta| itself
        if bool(zero.any()):
            out = out + batched_mv(B.abs(), (zero * v).reshape(v.shape[0], -1))
        return out


def _magnitude(st: State, key, b: Interval) -> torch.Tensor:
    """``max(|lower|, |upper|)`` of bounds ``b``, cached on the state under ``key``."""
    hit = st.cache.get(("mag", key))
    if hit is None or hit[0] is not b[0]:
        hit = st.cache[("mag", key)] = (b[0], torch.maximum(b[0].abs(), b[1].abs()))
    return hit[1]


def _wide_box(graph: Graph, st: State):
    """The input box widened by ``g max(|lo|, |hi|)``, ``g = gamma_{4 n + 48}``: concretising over
    it absorbs the rounding of the box's centre and radius (each within ``u max(|lo|, |hi|)``),
    of the two inner products of length n and of their sum (module doc). (flat, node-shaped)."""
    hit = st.cache.get("wide")
    if hit is None or hit[0] is not st.lo:
        g = gamma64(4 * st.lo.shape[1] + 48)
        w = g * torch.maximum(st.lo.abs(), st.hi.abs())
        lo, hi = st.lo - w, st.hi + w
        N = lo.shape[0]
        hit = st.cache["wide"] = (st.lo, (lo, hi), (lo.reshape(N, *graph.input_shape), hi.reshape(N, *graph.input_shape)))
    return hit[1], hit[2]


def _finish(lower: torch.Tensor, mar: torch.Tensor | None, bias: torch.Tensor, rig: bool) -> torch.Tensor:
    """The lower bound less the accumulated margin: ``lower - (1.001 (margin + 2 u |bias|) + 3 u
    |lower| + TINY)`` (the concretisation adds the bias once more; the last subtraction and this
    one round within ``3 u |lower|``)."""
    if not rig:
        return lower
    with torch.no_grad():
        m = 2 * U64 * bias.detach().abs()
        if mar is not None:
            m = m + mar
        m = MARGIN_SAFETY * m + 3 * U64 * lower.detach().abs() + TINY
    return lower - m


def add_rounded(lower: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``lower + c`` pushed down by ``3 u |lower + c|``: at most the exact sum (a rigorous lower
    bound stays one after adding a constant)."""
    s = lower + c
    return s - 3 * U64 * s.detach().abs() if ROUNDING_MARGIN else s


def _add(a, b):
    """Sum of two contributions to a node's coefficients (windows meeting dense ones turn dense)."""
    if isinstance(a, windows.Windows) != isinstance(b, windows.Windows):
        a, b = [x.dense() if isinstance(x, windows.Windows) else x for x in (a, b)]
    return a + b


def concretize_lower(lam: torch.Tensor, const: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                     overwrite: bool = False) -> torch.Tensor:
    """Minimum of ``lam @ x + const`` over each box: lam (K, m, n), const (K, m), lo/hi (N, n).
    ``overwrite``: the caller no longer needs ``lam``, which then holds |lam| afterwards where it
    can be written in place (contiguous, without autograd): a fresh (K, m, n) buffer is page-faulted on every pass, measured 2-5x slower than in place."""
    center, radius = (lo + hi) / 2, (hi - lo) / 2
    mid = batched_mv(lam, center)
    in_place = overwrite and lam.is_contiguous() and not lam.requires_grad
    mag = lam.abs_() if in_place else lam.abs()
    return const + mid - batched_mv(mag, radius)


def node_crown(graph: Graph, t: int, st: State, rows: torch.Tensor | None = None,
               use_windows: bool | None = None, budget: int | None = None) -> Interval:
    """CROWN (lower, upper) of the entries ``rows`` (all if None) of node t, flattened (N, k).
    The pass runs on windows (patches mode) where ``windows.plan`` applies and, with
    ``use_windows=None``, the cost rule says they are cheaper than dense coefficients for these
    rows and the rows of one location fit in ``budget`` (the dense pass splits rows further);
    ``True`` takes them wherever they apply, ``False`` never (same bounds either way).
    ``budget`` (default ``ROW_BUDGET``) caps the values of one coefficient tensor."""
    n = graph.nodes[t].size
    budget = ROW_BUDGET if budget is None else budget
    geo = None if use_windows is False else windows.plan(graph, t)
    if geo is not None:
        patch, dense = windows.cost(graph, t, geo)
        fits = st.lo.shape[0] * 2 * graph.nodes[t].shape[0] * _widest(graph, t, geo) <= budget  # one location
        if use_windows or (fits and patch < windows.COST_RATIO * dense * (1.0 if rows is None else len(rows) / n)):
            wl, wu = _windows_crown(graph, t, st, geo, budget)
            return (wl, wu) if rows is None else (wl[:, rows], wu[:, rows])
    rows = torch.arange(n) if rows is None else rows
    N = st.lo.shape[0]
    lows, ups = [], []
    node = graph.nodes[t]
    widest = max(graph.nodes[j].size for j in graph.ancestors(t))
    chunk = max(1, min(ROW_CHUNK, ROW_BUDGET // (2 * N * widest)))  # caps the memory of one pass
    for part in rows.split(chunk):
        check_deadline(st.deadline, "the CROWN bound pass")
        k = len(part)
        if type(node.op) is Linear and len(node.shape) == 1:
            # identity rows through a Linear are +-W's rows: start one step further down
            w = node.op.weight[part]
            b = node.op.bias[part] if node.op.bias is not None else w.new_zeros(k)
            R, bias = torch.cat([w, -w]), torch.cat([b, -b]).unsqueeze(0)
            two = _relu_linear_step(graph, node.inputs[0], w, st)
            if two is not None:  # and through the ReLU and Linear below as one matrix product
                j, coef, b2 = two
                r = sweep(graph, j, {j: coef}, bias + b2, st, keep_lam=False,
                          margin=_two_step_margin(graph, node.inputs[0], w, st)).lower.expand(N, 2 * k)
            else:
                r = sweep(graph, t - 1, {node.inputs[0]: R.unsqueeze(0)}, bias, st, keep_lam=False).lower.expand(N, 2 * k)
        else:
            A = st.lo.new_zeros(1, 2 * k, n)
            ar = torch.arange(k)
            A[0, ar, part] = 1.0
            A[0, ar + k, part] = -1.0
            r = backward(graph, t, A.reshape(1, 2 * k, *node.shape), st, keep_lam=False).lower.expand(N, 2 * k)
        lows.append(r[:, :k])
        ups.append(-r[:, k:])
    return torch.cat(lows, 1), torch.cat(ups, 1)


def _widest(graph: Graph, t: int, geo: dict) -> int:
    """Largest coefficient volume per row in the pass of t: a window where ``geo`` keeps them, a node."""
    return max(graph.nodes[j].shape[0] * geo[j][0] * geo[j][1] if j in geo else graph.nodes[j].size
               for j in graph.ancestors(t))


def _windows_crown(graph: Graph, t: int, st: State, geo: dict, budget: int) -> Interval:
    """CROWN (lower, upper) of every entry of the 3-D node t (N, n), by the sweep on windows,
    the target's locations in chunks of at most ``budget`` values per window tensor."""
    C, H, W = graph.nodes[t].shape
    N, L, R = st.lo.shape[0], H * W, 2 * C
    chunk = max(1, min(L, budget // (N * R * _widest(graph, t, geo))))
    cache: dict = {}
    parts = []
    for l0 in range(0, L, chunk):
        check_deadline(st.deadline, "the CROWN bound pass")
        at = windows.Locations((H, W), slice(l0, l0 + chunk), cache, geo)
        A = windows.identity(graph.nodes[t].shape, at, st.lo.dtype)
        parts.append(sweep(graph, t, {t: A}, A.P.new_zeros(1, A.rows), st, keep_lam=False).lower.expand(N, A.rows))
    r = torch.cat(parts, 1).reshape(N, L, R)
    return r[..., :C].transpose(1, 2).reshape(N, -1), -r[..., C:].transpose(1, 2).reshape(N, -1)


TWO_STEP_VALUES = 1 << 20  # largest (2n, rows * (p + 1)) matrix of the two-step product


def _relu_linear_step(graph: Graph, r: int, w: torch.Tensor, st: State):
    """The backward step of the rows ``[w; -w]`` (2k, n) (shared by all boxes: an identity-spec
    pass through a Linear) through ReLU node r and the 1-D Linear below it as two products.
    With ``pos``/``neg`` the parts of a row, alpha / s / t the per-box lower slope, chord slope
    and intercept and ``gap = s - alpha``, row +w gets ``pos alpha + neg s = (w (alpha + s) -
    |w| gap) / 2`` and row -w gets ``-(w (alpha + s) + |w| gap) / 2``: both from ``X = (alpha +
    s) (N, n) @ T_w`` and ``Y = gap @ T_|w|``, where ``T_v (n, k (p + 1))`` stacks the outer
    products of v's columns with the rows of ``[W | b]``. That gives the coefficients on the
    Linear's input and its bias term at once, in half the multiply-adds of one product per
    sign (large products instead of an (N, 2k, n) elementwise pass and N small ones; same values
    up to rounding). Returns (node j below the Linear, coefficients (N, 2k, p), bias (N, 2k)) or
    None where it does not apply (not ReLU -> Linear, few boxes, or T too large)."""
    relu = graph.nodes[r]
    if relu.op is None or not relu.op.nonlinear or len(relu.shape) != 1 or st.lo.shape[0] < 16:
        return None
    q = relu.inputs[0]
    lin = graph.nodes[q].op
    if type(lin) is not Linear or len(graph.nodes[q].shape) != 1:
        return None
    k, n = w.shape
    aug = lin.weight if lin.bias is None else lin.augmented  # (n, p (+ 1))
    if 4 * n * k * aug.shape[1] > TWO_STEP_VALUES:
        return None
    hw, ha = w / 2, w.abs() / 2
    rel = st.relax[r]
    N = st.lo.shape[0]
    alpha, slope = rel.alpha.reshape(N, n), rel.slope.reshape(N, n)
    out = _plus_minus(alpha + slope, slope - alpha, (hw.T.unsqueeze(-1) * aug.unsqueeze(1)).reshape(n, -1),
                      (ha.T.unsqueeze(-1) * aug.unsqueeze(1)).reshape(n, -1)).reshape(N, 2 * k, aug.shape[1])
    t = rel.intercept.reshape(N, n)
    bias = _plus_minus(t, t, hw.T.contiguous(), ha.T.contiguous())  # the chord intercepts on negative parts
    if lin.bias is None:
        return graph.nodes[q].inputs[0], out, bias
    return graph.nodes[q].inputs[0], out[..., :-1], bias + out[..., -1]


def _two_step_margin(graph: Graph, r: int, w: torch.Tensor, st: State) -> torch.Tensor | None:
    """The rounding margin (N, 2k) of :func:`_relu_linear_step` for rows ``[w; -w]``: the exact
    step's coefficients on the Linear's output are at most ``|w|`` entrywise (slopes in [0, 1]),
    and its products (inner length n, a few roundings per term, within 1.5 gamma_{n+5} of the
    terms) are covered by the Linear's residual, the relaxation by the ReLU's: ``|w| @ (r_q + r_r)``."""
    if not ROUNDING_MARGIN or 0 not in st.bounds:
        return None
    q = graph.nodes[r].inputs[0]
    if q not in st.resid:  # a state not built by ``intermediate``
        return None
    N, n = st.lo.shape[0], w.shape[1]
    rr = st.resid[q].reshape(-1, n)
    if r in st.resid:
        rr = rr + st.resid[r].reshape(-1, n)
    m = matmul(rr.expand(N, n), w.abs().T)
    return torch.cat([m, m], 1)


def _plus_minus(x: torch.Tensor, y: torch.Tensor, Tx: torch.Tensor, Ty: torch.Tensor) -> torch.Tensor:
    """``[X - Y, -X - Y]`` (N, 2 q) for ``X = x @ Tx``, ``Y = y @ Ty`` (x, y (N, n); T (n, q)):
    both products written into the halves of one buffer and combined in place (fresh
    intermediates of this size cost as much as the products, measured on the 20-50-30-15-10-1 MLP)."""
    N, q = x.shape[0], Tx.shape[1]
    out = x.new_empty(N, 2, q)
    matmul(x, Tx, out=out[:, 0])
    matmul(y, Ty, out=out[:, 1])
    X, Y = out[:, 0], out[:, 1]
    X.sub_(Y)  # X - Y
    Y.mul_(-2).sub_(X)  # -2 Y - (X - Y) = -X - Y
    return out.reshape(N, 2 * q)


def _tighten(graph: Graph, p: int, st: State, interval: Interval, intersect: bool, sparse: bool,
             rows: str = "all") -> Interval:
    """Bounds of node p (a ReLU input) by CROWN; see module doc for ``intersect``/``sparse``/``rows``."""
    if p == 0:
        return interval
    N, shape = st.lo.shape[0], graph.nodes[p].shape
    il, iu = interval[0].reshape(N, -1), interval[1].reshape(N, -1)
    if interval_exact(graph, p):
        return interval
    if rows == "unstable":
        low, up = unstable_crown(graph, p, st, il, iu)
        if intersect:
            low, up = torch.maximum(low, il), torch.minimum(up, iu)
    elif sparse and intersect and graph.nodes[p].size * _volume_below(graph, p) > SPARSE_WORK:
        sel = torch.nonzero(((il < 0) & (iu > 0)).any(0)).flatten()
        low, up = il.clone(), iu.clone()
        if len(sel):
            cl, cu = node_crown(graph, p, st, sel)
            low[:, sel], up[:, sel] = torch.maximum(cl, il[:, sel]), torch.minimum(cu, iu[:, sel])
    else:
        low, up = node_crown(graph, p, st)
        if intersect:
            low, up = torch.maximum(low, il), torch.minimum(up, iu)
    return low.reshape(N, *shape), up.reshape(N, *shape)


BOX_GROUP = 128  # boxes per group of the per-box rows pass (sorted by unstable count: little padding)
BOX_ROWS_MIN = 512  # boxes from which per-box rows pay for their gathers (20-50-30-15-10-1 MLP, whole
# intermediate pass: 15-40 % faster than all rows at 1,024 boxes, 10-20 % slower at 349, in three runs)


def unstable_crown(graph: Graph, p: int, st: State, il: torch.Tensor, iu: torch.Tensor) -> Interval:
    """(lower, upper) (N, n) of node p: CROWN where the interval bounds ``il``/``iu`` (N, n)
    cross zero, the interval bounds elsewhere (``rows="unstable"``, see module doc). A 1-D node
    runs per-box spec rows (:func:`box_rows_crown`) on at least ``BOX_ROWS_MIN`` boxes where
    few enough (box, neuron) pairs are unstable (``PAIR_FRACTION``), else the shared-row pass
    of :func:`node_crown` over the neurons unstable in some box, as other shapes do (patches
    mode serves those)."""
    unst = (il < 0) & (iu > 0)
    low, up = il.clone(), iu.clone()
    if len(graph.nodes[p].shape) == 1 and len(unst) >= BOX_ROWS_MIN:
        limit = PAIR_FRACTION[1 if _one_product(graph, p) else 0]
        if unst.sum() < limit * unst.numel():
            return box_rows_crown(graph, p, st, unst, low, up)
    sel = torch.nonzero(unst.any(0)).flatten()
    if len(sel):
        cl, cu = node_crown(graph, p, st, sel)
        low[:, sel], up[:, sel] = torch.where(unst[:, sel], cl, low[:, sel]), torch.where(unst[:, sel], cu, up[:, sel])
    return low, up


PAIR_FRACTION = (0.9, 0.25)  # per-box rows below this fraction of unstable (box, neuron) pairs, for
# nodes deeper / not deeper than Linear -> ReLU -> Linear -> input (whose shared-row pass is one matrix product:
# _relu_linear_step). Measured on the 20-50-30-15-10-1 MLP, 349 boxes: per-box rows 1.2-1.6x faster at 64-72 %
# unstable pairs on the deeper nodes (and about as fast at 100 %), 2.7x slower at 77 % on the one-product node.


def _one_product(graph: Graph, p: int) -> bool:
    """The shared-row pass of node p is one product: Linear <- ReLU <- Linear <- graph input, all 1-D."""
    node = graph.nodes[p]
    if type(node.op) is not Linear:
        return False
    r = graph.nodes[node.inputs[0]]
    if r.op is None or not r.op.nonlinear or len(r.shape) != 1:
        return False
    q = graph.nodes[r.inputs[0]]
    return type(q.op) is Linear and len(q.shape) == 1 and q.inputs[0] == 0


def box_rows_crown(graph: Graph, p: int, st: State, unst: torch.Tensor, low: torch.Tensor, up: torch.Tensor) -> Interval:
    """CROWN bounds written into ``low``/``up`` (N, n) where ``unst`` (N, n) of the 1-D node p:
    boxes sorted by unstable count, in groups of ``BOX_GROUP``; in a group of K boxes with at
    most c unstable neurons each, box k's spec rows are its own c neurons (+e, -e; padded with
    stable ones, whose results are dropped), one backward pass of (K, 2c) rows."""
    node = graph.nodes[p]
    counts = unst.sum(1)
    order = torch.argsort(counts)
    order = order[counts[order] > 0]
    if len(order) == 0:
        return low, up
    mask = unst[order]
    idx = torch.argsort(mask.to(torch.int8), dim=1, descending=True, stable=True)  # unstable neurons first
    sorted_counts = counts[order].tolist()
    below = sorted(graph.ancestors(p))
    sub = State(st.lo[order], st.hi[order],
                bounds={i: (st.bounds[i][0][order], st.bounds[i][1][order]) for i in below if i in st.bounds},
                relax={i: _gather_relax(st.relax[i], order) for i in below if i in st.relax},
                resid={i: st.resid[i][order] for i in below if i in st.resid},
                folded={i: q for i, q in st.folded.items() if i in below},
                fold_resid={i: st.fold_resid[i][order] for i in below if i in st.fold_resid})
    cl, cu = torch.empty_like(mask, dtype=low.dtype), torch.empty_like(mask, dtype=low.dtype)
    for s in range(0, len(order), BOX_GROUP):
        check_deadline(st.deadline, "the CROWN bound pass")
        e = min(s + BOX_GROUP, len(order))
        c, ix = sorted_counts[e - 1], idx[s:e, :sorted_counts[e - 1]]
        part = State(sub.lo[s:e], sub.hi[s:e], bounds={i: (a[s:e], b[s:e]) for i, (a, b) in sub.bounds.items()},
                     relax={i: _slice_relax(r, s, e) for i, r in sub.relax.items()},
                     resid={i: r[s:e] for i, r in sub.resid.items()}, folded=sub.folded,
                     fold_resid={i: r[s:e] for i, r in sub.fold_resid.items()})
        if type(node.op) is Linear:  # identity rows through a Linear: +-W's rows, one step further down
            w = node.op.weight[ix]
            b = node.op.bias[ix] if node.op.bias is not None else w.new_zeros(ix.shape)
            r = sweep(graph, p - 1, {node.inputs[0]: torch.cat([w, -w], 1)}, torch.cat([b, -b], 1), part,
                      keep_lam=False).lower
        else:
            K = e - s
            A = st.lo.new_zeros(K, 2 * c, node.size)
            A.scatter_(2, torch.cat([ix, ix], 1).unsqueeze(-1),
                       torch.cat([torch.ones(K, c, 1), -torch.ones(K, c, 1)], 1).to(A.dtype))
            r = backward(graph, p, A, part, keep_lam=False).lower
        cl[s:e, :c], cu[s:e, :c] = r[:, :c], -r[:, c:]
    # row k of cl/cu holds the bounds of neurons idx[k] of box order[k]; keep its unstable ones
    keep = torch.gather(mask, 1, idx)
    rows = order.unsqueeze(1).expand_as(idx)
    low[rows[keep], idx[keep]] = cl[keep]
    up[rows[keep], idx[keep]] = cu[keep]
    return low, up


def _slice_relax(r: Relaxation, s: int, e: int) -> Relaxation:
    """The relaxation of boxes s..e-1 (views)."""
    return Relaxation(r.alpha[s:e], r.slope[s:e], r.intercept[s:e], r.unstable[s:e])


def _gather_relax(r: Relaxation, b: torch.Tensor) -> Relaxation:
    """The relaxation of boxes ``b``."""
    return Relaxation(r.alpha[b], r.slope[b], r.intercept[b], r.unstable[b])


def _is_box(graph: Graph, i: int) -> bool:
    """Node i's value set is exactly a box: the input, or coordinatewise maps of a box."""
    while i != 0:
        node = graph.nodes[i]
        if node.op.kind not in _BOX_OPS:
            return False
        i = node.inputs[0]
    return True


def interval_exact(graph: Graph, p: int) -> bool:
    """Interval arithmetic is exact at p: one linear single-input operator applied to a box."""
    node = graph.nodes[p]
    return p == 0 or (not node.op.nonlinear and len(node.inputs) == 1 and _is_box(graph, node.inputs[0]))


def _volume_below(graph: Graph, p: int) -> int:
    """Number of values (neurons) in the nodes node p depends on."""
    return sum(graph.nodes[j].size for j in graph.ancestors(p))


def intermediate(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, intersect: bool = False, sparse: bool = False,
                 splits: dict[int, torch.Tensor] | None = None, deadline: float | None = None,
                 rows: str = "all", prior: dict[int, Interval] | None = None,
                 known: dict[int, Interval] | None = None) -> State:
    """Relaxations of every ReLU (see module doc); ``splits`` maps ReLU node -> (N, n) int8;
    ``rows`` "all" or "unstable" (which neurons get an identity-spec CROWN pass).
    ``deadline`` (``time.monotonic()`` value): checked before each ReLU layer's bound pass and
    between its backward passes (``State.deadline``), raising
    :class:`~certprune.errors.DeadlineExceeded` once passed. ``prior`` maps a ReLU input
    node to bounds (1 or N, *shape) known to hold on every box (the root refinement of
    ``verifiers.refine``, valid on sub-boxes of its box; or a branch-and-bound parent's bounds):
    intersected with the interval image before the CROWN pass (whose sparse mode then bounds only
    the neurons still unstable) and the splits are applied after, so every later layer is
    bounded with them. ``known`` maps a ReLU input node to bounds (N, *shape) valid on every box
    that are used as they are, without a CROWN pass (a parent's bounds of the layers a new split
    cannot change, ``bounds.engine.domain_bounds``)."""
    N = lo.shape[0]
    st = State(lo, hi, infeasible=torch.zeros(N, dtype=torch.bool), deadline=deadline)
    st.bounds[0] = (lo.reshape(N, *graph.input_shape), hi.reshape(N, *graph.input_shape))
    tight: set[int] = {0}
    for i, node in enumerate(graph.nodes[1:], start=1):
        if node.op.nonlinear:
            p = node.inputs[0]
            if p not in tight:
                if known is not None and p in known:
                    st.bounds[p] = known[p]
                else:
                    check_deadline(deadline, "the CROWN bound pass")
                    if prior is not None and p in prior:
                        st.bounds[p] = (torch.maximum(st.bounds[p][0], prior[p][0]),
                                        torch.minimum(st.bounds[p][1], prior[p][1]))
                    st.bounds[p] = _tighten(graph, p, st, st.bounds[p], intersect, sparse, rows)
                    if prior is not None and p in prior:  # (without ``intersect`` the pass drops it)
                        st.bounds[p] = (torch.maximum(st.bounds[p][0], prior[p][0]),
                                        torch.minimum(st.bounds[p][1], prior[p][1]))
                tight.add(p)
            l, u = st.bounds[p]
            if splits is not None and i in splits:
                s = splits[i].reshape(l.shape)
                # empty only where a split contradicts the bounds beyond rounding: bounds of a
                # constant value may cross by an ulp (CROWN and interval images intersected)
                tol = 1e-9 * (1 + torch.maximum(l.abs(), u.abs()))
                bad = ((s > 0) & (u < -tol)) | ((s < 0) & (l > tol))
                st.infeasible |= bad.reshape(N, -1).any(1)
                l, u = torch.where(s > 0, l.clamp(min=0), l), torch.where(s < 0, u.clamp(max=0), u)
                cross = l > u
                l, u = torch.where(cross & (s < 0), u, l), torch.where(cross & (s >= 0), l, u)
            _set_relu(graph, st, i, l, u)
        else:
            st.bounds[i] = rounded_interval(node.op, [st.bounds[j] for j in node.inputs], st.resid, i)
    return st


def _sole_consumers(graph: Graph) -> dict[int, int]:
    """Node -> its only consumer, for nodes with exactly one (cached on the graph object)."""
    hit = graph.__dict__.get("_sole_consumers")
    if hit is None:
        count: dict[int, list[int]] = {}
        for i, node in enumerate(graph.nodes[1:], start=1):
            for j in node.inputs:
                count.setdefault(j, []).append(i)
        hit = {j: c[0] for j, c in count.items() if len(c) == 1}
        graph.__dict__["_sole_consumers"] = hit
    return hit


def _set_relu(graph: Graph, st: State, i: int, l: torch.Tensor, u: torch.Tensor) -> None:
    """ReLU node i with input bounds (l, u): its relaxation, output bounds and residual, and its
    input's residual folded into it where the ReLU is that input's only consumer (the sweep then
    charges both in one pass: ``State.folded``; the step's coefficients on p are at most ``|A| (1 +
    3u)`` where the neuron is not stable inactive, exactly 0 where it is)."""
    st.pre[i] = (l, u)
    st.relax[i] = ReLU.relax(l, u)
    st.bounds[i] = graph.nodes[i].op.interval((l, u))
    r = ReLU.relaxation_residual(l, u)
    if r is not None:
        st.resid[i] = r
    p = graph.nodes[i].inputs[0]
    if p in st.resid and _sole_consumers(graph).get(p) == i:
        st.folded[i] = p
        rp = torch.where(u > 0, st.resid[p].reshape(u.shape), 0.0)  # inactive: coefficients exactly 0
        st.fold_resid[i] = rp if r is None else rp + r


def domain_state(graph: Graph, lo: torch.Tensor, hi: torch.Tensor, pre: list[Interval]) -> State:
    """The state of domains with known ReLU input bounds ``pre[j]`` ((N, n_j) flat pairs, sound on
    the domains, one per ReLU node in order): those relaxations, the other nodes' rigorous
    interval images (each ReLU input intersected with its ``pre``) and the residuals, so that
    :func:`sweep` gives rigorous bounds there (the exact leaves' dual certificates,
    ``verifiers.lp_leaf``)."""
    N = lo.shape[0]
    st = State(lo, hi, infeasible=torch.zeros(N, dtype=torch.bool))
    st.bounds[0] = (lo.reshape(N, *graph.input_shape), hi.reshape(N, *graph.input_shape))
    by_input = {graph.nodes[i].inputs[0]: (l, u) for i, (l, u) in zip(graph.relu_nodes, pre)}
    for i, node in enumerate(graph.nodes[1:], start=1):
        if node.op.nonlinear:
            l, u = st.bounds[node.inputs[0]]
            _set_relu(graph, st, i, l, u)
            continue
        b = rounded_interval(node.op, [st.bounds[j] for j in node.inputs], st.resid, i)
        if i in by_input:
            l, u = (t.reshape(N, *node.shape) for t in by_input[i])
            b = torch.maximum(b[0], l), torch.minimum(b[1], u)
        st.bounds[i] = b
    return st


def rounded_interval(op, bounds: list[Interval], resid: dict | None = None, i: int | None = None) -> Interval:
    """The interval image of ``op`` on ``bounds`` widened by its float64 residual (a rigorous
    enclosure of the exact image); the residual is stored in ``resid[i]`` where given."""
    b = op.interval(*bounds)
    if not ROUNDING_MARGIN:
        return b
    r = op.float64_residual([torch.maximum(lb.abs(), ub.abs()) for lb, ub in bounds])
    if r is None:
        return b
    if resid is not None:
        resid[i] = r
    return b[0] - r, b[1] + r


def spec_matrix(C: torch.Tensor | None, n_out: int, dtype) -> torch.Tensor:
    """The spec as (K, m, n_out): identity when None, (m, n_out) gets K = 1."""
    if C is None:
        C = torch.eye(n_out, dtype=dtype)
    return C.unsqueeze(0) if C.dim() == 2 else C


def output_bounds(graph: Graph, st: State, C: torch.Tensor | None = None) -> Interval:
    """CROWN (lower, upper) of ``C @ y`` (identity if None), (N, m), given the relaxations in ``st``."""
    Cs = spec_matrix(C, graph.output_dim, st.lo.dtype)
    m = Cs.shape[1]
    A = torch.cat([Cs, -Cs], 1).reshape(Cs.shape[0], 2 * m, *graph.nodes[graph.output].shape)
    r = backward(graph, graph.output, A, st, keep_lam=False).lower.expand(st.lo.shape[0], 2 * m)
    return r[:, :m], -r[:, m:]
