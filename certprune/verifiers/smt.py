"""Exact z3 back end for properties of a graph (any model ``build_graph`` takes, or a Graph).

The network's encoding comes from the graph IR (:mod:`certprune.graph.encode_z3`: the one walk
of the exact encodings with z3 terms as its back end); this module adds the solver side: input
variables, the violation formula, solver strategies and the sat/unsat/unknown outcome.

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
  exact ReLU. Without ``pre_bounds`` the solver computes interval bounds itself (the graph's
  IBP, widened the same way) unless ``SmtOptions(auto_bounds=False)``. ``pre_bounds[j]`` belongs
  to the j-th ReLU node of the graph in topological order (a chain's j-th ReLU layer).

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
from typing import Callable, Iterable, Sequence

import numpy as np

from certprune.errors import ConfigError, ShapeMismatchError, SpecError
from certprune.verifiers.problem import chain_graph
from certprune.graph.encode_z3 import RELU_ENCODINGS, encode_z3, interval_pre, rational, widen_pre
from certprune.specs import Property

__all__ = ["RELU_ENCODINGS", "STRATEGIES", "SmtOptions", "SmtOutcome", "as_graph", "input_variables",
           "make_solver", "rational", "solve_property", "violation_formula", "widen_bounds"]



@dataclass(frozen=True, eq=False)
class SmtOutcome:
    """``status`` is 'sat' (violation found, ``x`` set), 'unsat' (none exists) or 'unknown'."""

    status: str
    x: np.ndarray | None
    stats: dict = field(default_factory=dict)


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


def widen_bounds(model, lo: np.ndarray, hi: np.ndarray, pre) -> list[tuple[np.ndarray, np.ndarray]]:
    """ReLU-input bounds of ``model`` (any form :func:`as_graph` takes) widened so that they hold
    in exact arithmetic (:func:`certprune.graph.encode_z3.widen_pre`); ``lo``/``hi`` the flat box."""
    return widen_pre(chain_graph(model), lo, hi, pre)


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


def solve_property(model, prop: Property, timeout: float, pre_bounds=None,
                   extra_constraints: ExtraConstraints | None = None,
                   options: SmtOptions | None = None) -> SmtOutcome:
    """Search for an input of ``prop.region`` that satisfies a violation disjunct (module doc).

    ``model``: a Graph or anything :func:`certprune.graph.build_graph` takes (an AffineReluNet, a
    torch module, a loaded Network). ``timeout`` in seconds (> 0). ``extra_constraints``: z3
    formulas over the inputs (named ``x0, x1, ...``), or a callable ``(input variables, output
    terms) -> formulas``."""
    import torch
    import z3
    opt = options or SmtOptions()
    if not timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
    graph = chain_graph(model)
    region = prop.region
    if region.dim != graph.input_dim:
        raise ShapeMismatchError(f"the property's region has {region.dim} inputs, the network {graph.input_dim}")
    prop.check_outputs(graph.output_dim)
    t0 = time.perf_counter()
    lo, hi = region.lower.ravel().astype(np.float64), region.upper.ravel().astype(np.float64)
    if region.integer_mask is not None:
        m = region.integer_mask.ravel()
        lo, hi = np.where(m, np.ceil(lo), lo), np.where(m, np.floor(hi), hi)
    pre = pre_bounds if pre_bounds is not None else (interval_pre(graph, lo, hi) if opt.auto_bounds else None)
    pre = None if pre is None else widen_pre(graph, lo, hi, pre)
    variables, terms, cons = input_variables(region)
    enc = encode_z3(graph, terms, pre, relu=opt.relu, triangle=opt.triangle)
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
        y = graph.forward(torch.as_tensor(x[None], dtype=torch.float64)).reshape(1, -1).numpy()
        stats["float64_margin"] = float(prop.violation_margin(y)[0])
        return SmtOutcome("sat", x, stats)
    if res == z3.unsat:
        return SmtOutcome("unsat", None, stats)
    stats["reason_unknown"] = solver.reason_unknown()
    return SmtOutcome("unknown", None, stats)
