"""Exact z3 back end for :class:`~certprune.verifiers.affine.AffineReluNet` properties.

Conventions
- Arithmetic is exact: every float64 weight, bias and bound becomes the rational it denotes
  (``fractions.Fraction(float)``), never a decimal string. ``unsat`` therefore means "no point
  of the region violates the property in exact real arithmetic"; callers that certify a float32
  model must build their margin into the property (see ``certprune.verify``).
- Inputs marked in ``region.integer_mask`` are z3 ``Int`` variables (used through ``ToReal``),
  the others ``Real``. A ``sat`` answer returns the flat input ``x`` (float64; integral on the
  integer dims); it is a *candidate*: callers re-run it in float32 on the original model.
- ``pre_bounds[j] = (l, u)`` are sound pre-activation bounds of ReLU layer j (each (n_j,)). They
  are widened by a small margin (:func:`widen_bounds`) to absorb float64 round-off of whoever computed
  them, then: ``u <= 0`` -> the neuron is dropped (output 0), ``l >= 0`` -> identity, otherwise
  ``l <= z <= u`` and the triangle relaxation are added as redundant constraints next to the
  exact ReLU. Without ``pre_bounds`` the encoder computes interval bounds itself (float64
  interval arithmetic, widened the same way) unless ``SmtOptions(auto_bounds=False)``.

Where it pays off (measured, experiments/bench_smt.py): low-dimensional integer regions such as
Fairify partitions through the twin network (30 of 36 sampled queries decided within 5 s, 20
without bounds). Where it does not: dense real-valued regions. On the bundled digits MLP (64
real inputs) an eps = 0.01 robustness query with only 3 unstable ReLUs times out after 15 s:
z3's exact simplex is slow on dense 64-variable systems whatever the weights' bit length (the
same happens with weights rounded to 6 bits). Real boxes with many unstable ReLUs are also out
of reach: random 5-12-12-2 nets on [-1, 1]^5 (float32 weights), 0 of 16 queries decided in 8 s
(4 of 16 with weights rounded to 6 bits: the 24-bit rationals of float32 weights cost z3 a lot).
Use ``certprune.verify`` (bounds, branch and bound, LP leaves) there; z3 is for small leaves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable, Sequence

import numpy as np

from certprune.errors import ConfigError, ShapeMismatchError, SpecError
from certprune.specs import Property
from certprune.verifiers.affine import AffineReluNet

RELU_ENCODINGS = ("ite", "disjunction")
_REL_MARGIN = 1e-9   # relative widening of float64 bounds (float64 round-off is ~1e-16 per op)
_ABS_MARGIN = 1e-12
_BOUND_BITS = 20     # significant bits kept when rounding bounds outward (see _round_out)


@dataclass(frozen=True, eq=False)
class SmtOutcome:
    """``status`` is 'sat' (violation found, ``x`` set), 'unsat' (none exists) or 'unknown'."""

    status: str
    x: np.ndarray | None
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class NetworkEncoding:
    """z3 terms of one encoded network: real-valued ``outputs``, the ``constraints`` that define
    them, and counts of stable/unstable neurons in ``stats``."""

    outputs: list
    constraints: list
    stats: dict


def rational(v: float):
    """The exact z3 rational of a float (no decimal rounding)."""
    import z3
    return z3.RealVal(str(Fraction(float(v))))   # "n/d" is parsed by z3 as an exact rational


def input_variables(region, prefix: str = "x") -> tuple[list, list, list]:
    """``(variables, real terms, box constraints)`` for the flat inputs of ``region``."""
    import z3
    lo, hi = region.lower.ravel(), region.upper.ravel()
    mask = np.zeros(lo.size, bool) if region.integer_mask is None else region.integer_mask.ravel()
    olo, ohi = region.open_lower_mask.ravel(), region.open_upper_mask.ravel()  # strict bounds
    variables, terms, cons = [], [], []
    for i in range(lo.size):
        if mask[i]:
            v = z3.Int(f"{prefix}{i}")
            cons += [v >= int(np.ceil(lo[i])), v <= int(np.floor(hi[i]))]
            terms.append(z3.ToReal(v))
        else:
            v = z3.Real(f"{prefix}{i}")
            cons += [v > rational(lo[i]) if olo[i] else v >= rational(lo[i]),
                     v < rational(hi[i]) if ohi[i] else v <= rational(hi[i])]
            terms.append(v)
        variables.append(v)
    return variables, terms, cons


def _affine_terms(w: np.ndarray, b: np.ndarray, inputs: Sequence) -> list:
    """Exact ``w @ inputs + b`` per row, skipping zero weights and constant-zero inputs."""
    import z3
    live = [j for j, t in enumerate(inputs) if t is not None]
    out = []
    for r in range(w.shape[0]):
        terms = [rational(w[r, j]) * inputs[j] for j in live if w[r, j] != 0.0]
        bias = rational(b[r])
        out.append(z3.Sum(terms + [bias]) if terms else bias)
    return out


def _interval_bounds(net: AffineReluNet, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float64 interval pre-activation bounds of each ReLU layer (widened later by widen_bounds)."""
    pre = []
    for w, b in zip(net.weights[:-1], net.biases[:-1]):
        w, b = w.numpy(), b.numpy()
        c, r = (lo + hi) / 2, (hi - lo) / 2
        zc, zr = w @ c + b, np.abs(w) @ r
        pre.append((zc - zr, zc + zr))
        lo, hi = np.maximum(zc - zr, 0), np.maximum(zc + zr, 0)
    return pre


def widen_bounds(net: AffineReluNet, lo: np.ndarray, hi: np.ndarray, pre) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float64 pre-activation bounds widened per neuron by ``1e-9`` times the round-off scale
    ``|W| @ max|a| + |b| + |l| + |u|`` (plus 1e-12), so they enclose the exact-arithmetic values
    even where float64 summation cancelled; ``lo``/``hi`` is the flat input box."""
    mag = np.maximum(np.abs(lo), np.abs(hi))
    out = []
    for (w, b), (l, u) in zip(zip(net.weights[:-1], net.biases[:-1]), _check_pre_bounds(net, pre)):
        scale = np.abs(w.numpy()) @ mag + np.abs(b.numpy()) + np.abs(l) + np.abs(u)
        m = _REL_MARGIN * scale + _ABS_MARGIN
        wl, wu = _round_out(l - m, u + m)
        out.append((wl, wu))
        mag = np.maximum(wu, 0)
    return out


def _round_out(l: np.ndarray, u: np.ndarray, bits: int = _BOUND_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Round ``l`` down and ``u`` up to ``bits`` significant bits: still sound (only wider), and
    short rationals keep z3's simplex fast (float64 bounds as exact rationals carry 53-bit
    numerators that make pivoting slow)."""
    _, e = np.frexp(np.maximum(np.abs(l), np.abs(u)) + 1e-300)
    g = np.ldexp(1.0, e - bits)
    return np.floor(l / g) * g, np.ceil(u / g) * g


def _check_pre_bounds(net: AffineReluNet, pre_bounds) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(pre_bounds) != net.num_layers - 1:
        raise ShapeMismatchError(f"pre_bounds has {len(pre_bounds)} layers, the network has "
                                 f"{net.num_layers - 1} ReLU layers")
    out = []
    for j, ((l, u), n) in enumerate(zip(pre_bounds, net.relu_sizes)):
        l = np.asarray(l.detach().cpu() if hasattr(l, "detach") else l, dtype=np.float64).reshape(-1)
        u = np.asarray(u.detach().cpu() if hasattr(u, "detach") else u, dtype=np.float64).reshape(-1)
        if l.shape != (n,) or u.shape != (n,):
            raise ShapeMismatchError(f"pre_bounds[{j}] has shapes {l.shape}/{u.shape}, layer has {n} neurons")
        out.append((l, u))
    return out


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


def encode_network(net: AffineReluNet, inputs: Sequence, pre_bounds=None, prefix: str = "n",
                   relu: str = "ite", triangle: bool = True) -> NetworkEncoding:
    """Encode ``y = net(inputs)`` over real z3 terms ``inputs`` (flat, length ``input_dim``).

    ``pre_bounds``: (l, u) per ReLU layer that hold in EXACT arithmetic (pass float64 bounds
    through :func:`widen_bounds` first) or None (every ReLU exact, nothing dropped). Variables
    are named ``{prefix}{layer}_{j}`` and ``{prefix}out_{j}``: use distinct prefixes to encode
    two copies of a network in one solver. ``triangle`` adds the (redundant) triangle upper face
    on unstable neurons, which helped z3 on Fairify partitions (experiments/bench_smt.py)."""
    import z3
    if relu not in RELU_ENCODINGS:
        raise ConfigError(f"unknown ReLU encoding {relu!r}; choose one of {', '.join(RELU_ENCODINGS)}")
    if len(inputs) != net.input_dim:
        raise ShapeMismatchError(f"{len(inputs)} input terms for a network with {net.input_dim} inputs")
    pre = None if pre_bounds is None else _check_pre_bounds(net, pre_bounds)
    cons, stats = [], {"inactive": 0, "active": 0, "unstable": 0}
    acts: list = list(inputs)
    for k, (w, b) in enumerate(zip(net.weights, net.biases)):
        zs = _affine_terms(w.numpy(), b.numpy(), acts)
        if k == net.num_layers - 1:
            ys = [z3.Real(f"{prefix}out_{j}") for j in range(len(zs))]
            cons += [y == z for y, z in zip(ys, zs)]
            return NetworkEncoding(ys, cons, stats)
        acts = []
        for j, zt in enumerate(zs):
            l, u = (-np.inf, np.inf) if pre is None else (float(pre[k][0][j]), float(pre[k][1][j]))
            if u <= 0:
                stats["inactive"] += 1
                acts.append(None)
                continue
            z = z3.Real(f"{prefix}{k}_{j}")
            cons.append(z == zt)
            if l >= 0:
                stats["active"] += 1
                cons += [z >= rational(l), z <= rational(u)] if np.isfinite(u) else [z >= rational(l)]
                acts.append(z)
                continue
            stats["unstable"] += 1
            a = z3.Real(f"{prefix}{k}_{j}_relu")
            if np.isfinite(l) and np.isfinite(u):
                cons += _relu(z, a, float(l), float(u), relu, triangle)
            else:
                cons.append(a == z3.If(z > 0, z, 0))
            acts.append(a)
    raise AssertionError("unreachable: the last layer returns")


def violation_formula(prop: Property, outputs: Sequence):
    """z3 formula: OR over disjuncts of AND of ``A y <= b`` (``<`` on strict rows; exact rationals)."""
    import z3
    ors = []
    for d in prop.disjuncts:
        rows = []
        for a_row, b_val, strict in zip(d.A, d.b, d.strict):
            terms = [rational(c) * outputs[i] for i, c in enumerate(a_row) if c != 0.0]
            lhs = z3.Sum(terms) if terms else z3.RealVal(0)
            rows.append(lhs < rational(b_val) if strict else lhs <= rational(b_val))
        ors.append(z3.And(rows))
    return ors[0] if len(ors) == 1 else z3.Or(ors)


def _model_point(model, variables) -> np.ndarray:
    """Flat float64 input from a z3 model (rationals rounded to the nearest float64)."""
    import z3
    x = np.empty(len(variables))
    for i, v in enumerate(variables):
        val = model.eval(v, model_completion=True)
        x[i] = float(val.as_long()) if z3.is_int_value(val) else float(val.as_fraction())
    return x


STRATEGIES = ("default", "elim-ite", "solve-eqs")


def make_solver(strategy: str = "default"):
    """A z3 solver: ``default`` = ``z3.Solver()``; ``elim-ite`` and ``solve-eqs`` preprocess with
    tactics (turn If-terms into case splits / substitute the defining equations) before ``smt``.
    Measured on Fairify partitions (experiments/bench_smt.py): elim-ite decided the most."""
    import z3
    if strategy == "default":
        return z3.Solver()
    if strategy == "elim-ite":
        return z3.Then("simplify", "elim-term-ite", "solve-eqs", "smt").solver()
    if strategy == "solve-eqs":
        return z3.Then("simplify", "solve-eqs", "smt").solver()
    raise ConfigError(f"unknown z3 strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


ExtraConstraints = Iterable | Callable[[list, list], Iterable]


@dataclass(frozen=True)
class SmtOptions:
    """Encoding and solver choices. ``relu``: 'ite' (``a == If(z > 0, z, 0)``) or 'disjunction';
    ``strategy``: see :func:`make_solver`; ``triangle``: add the redundant triangle face;
    ``auto_bounds``: without ``pre_bounds``, compute interval bounds to drop stable neurons.
    Defaults = the fastest combination measured by experiments/bench_smt.py."""

    relu: str = "ite"
    strategy: str = "elim-ite"
    triangle: bool = True
    auto_bounds: bool = True

    def __post_init__(self) -> None:
        if self.relu not in RELU_ENCODINGS:
            raise ConfigError(f"unknown ReLU encoding {self.relu!r}; choose one of {', '.join(RELU_ENCODINGS)}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown z3 strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")


def solve_property(net: AffineReluNet, prop: Property, timeout: float, pre_bounds=None,
                   extra_constraints: ExtraConstraints | None = None,
                   options: SmtOptions | None = None) -> SmtOutcome:
    """Search for an input of ``prop.region`` that satisfies a violation disjunct (module doc).

    ``timeout`` in seconds (> 0). ``extra_constraints``: z3 formulas over the inputs (named
    ``x0, x1, ...``), or a callable ``(input variables, output terms) -> formulas``."""
    import torch
    import z3
    opt = options or SmtOptions()
    if not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
    region = prop.region
    if region.dim != net.input_dim:
        raise ShapeMismatchError(f"the property's region has {region.dim} inputs, the network {net.input_dim}")
    prop.check_outputs(net.output_dim)
    t0 = time.perf_counter()
    lo, hi = region.lower.ravel().astype(np.float64), region.upper.ravel().astype(np.float64)
    if region.integer_mask is not None:
        m = region.integer_mask.ravel()
        lo, hi = np.where(m, np.ceil(lo), lo), np.where(m, np.floor(hi), hi)
    pre = pre_bounds if pre_bounds is not None else (_interval_bounds(net, lo, hi) if opt.auto_bounds else None)
    pre = None if pre is None else widen_bounds(net, lo, hi, pre)
    variables, terms, cons = input_variables(region)
    enc = encode_network(net, terms, pre, relu=opt.relu, triangle=opt.triangle)
    solver = make_solver(opt.strategy)
    solver.set("timeout", max(1, int(round(timeout * 1000))))
    solver.add(cons + enc.constraints)
    solver.add(violation_formula(prop, enc.outputs))
    if extra_constraints is not None:
        extra = extra_constraints(variables, enc.outputs) if callable(extra_constraints) else extra_constraints
        try:
            solver.add(list(extra))
        except (z3.Z3Exception, TypeError) as e:
            raise SpecError(f"extra_constraints must be z3 Boolean formulas: {e}") from None
    t1 = time.perf_counter()
    res = solver.check()
    t2 = time.perf_counter()
    stats = dict(enc.stats, encode_s=t1 - t0, solve_s=t2 - t1, relu=opt.relu, strategy=opt.strategy)
    if res == z3.sat:
        x = _model_point(solver.model(), variables)
        y = net.forward(torch.as_tensor(x[None])).numpy()
        stats["float64_margin"] = float(prop.violation_margin(y)[0])
        return SmtOutcome("sat", x, stats)
    if res == z3.unsat:
        return SmtOutcome("unsat", None, stats)
    stats["reason_unknown"] = solver.reason_unknown()
    return SmtOutcome("unknown", None, stats)
