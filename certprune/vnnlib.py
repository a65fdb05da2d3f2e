"""VNN-LIB 1.0 reading and writing: ``read_vnnlib`` -> list of :class:`~certprune.specs.Property`.

Why a hand-written parser: the PyPI package ``vnnlib`` (1.0.2) implements the VNN-LIB *2.0*
grammar (``declare-network`` blocks) and rejects the VNN-LIB 1.0 files of VNN-COMP, ACAS Xu
included ("syntax error at line 3"). VNN-LIB 1.0 is a tiny SMT-LIB subset, so a ~150-line
s-expression reader is simpler than wrapping a C++ AST.

Supported: ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)``, ``(assert F)`` where F
nests ``and`` / ``or`` over comparisons ``<= >= < > =`` (chains allowed) between linear terms
built from numbers, variables, ``+``, ``-``, ``*`` by a constant and ``/`` by a constant.
Strict comparisons ``<`` / ``>`` on outputs become strict rows
(:attr:`~certprune.specs.LinearConstraints.strict`): the search and the bounds read them
non-strictly (the closure, as VNN-COMP does; a certificate of the closed property also certifies
the strict one), while a counterexample must satisfy them strictly on the float32 model. Strict
bounds on inputs mark the box bound open (``InputRegion.open_lower`` / ``open_upper``): bounds use
the closed box, a counterexample must lie strictly inside.

Semantics: the conjunction of all asserts is put in disjunctive normal form; every clause splits
into input atoms (bounds on one ``X_i`` each; general linear input constraints are rejected) and
output atoms (``a . y <= b`` rows). Clauses with the same input box form one Property whose
violation disjuncts are their output parts, so most files give exactly one Property (ACAS Xu
property 6 gives two: its input box is a disjunction). Input boxes are flat ``(num_inputs,)``
in ``X_i`` order; :func:`region_for_model` reshapes them row-major (C order, the VNN-COMP
convention) onto a model input shape.
"""
from __future__ import annotations

import gzip
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from certprune.errors import ShapeMismatchError, VNNLibError
from certprune.specs import InputRegion, LinearConstraints, Property

MAX_CLAUSES = 200_000
_TOKEN = re.compile(r"\s*(?:(;[^\n]*)|(\()|(\))|([^\s();]+))")
_VAR = re.compile(r"^([XY])_([0-9]+)$")  # ASCII digits only: X_\uff15 (fullwidth 5) is not X_5
# SMT-LIB decimals (and the scientific notation VNN-COMP files use), ASCII only; Python's float()
# would also accept "inf", "nan", "1_000" and non-ASCII digits
_NUMERAL = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


@dataclass(frozen=True)
class _Atom:
    """A token with the line it came from (for error messages)."""

    text: str
    line: int


Linear = dict  # {("X"|"Y", index) or None (constant): coefficient}
Atom = tuple  # (Linear, strict: bool) meaning ``lin < 0`` if strict else ``lin <= 0``


# ----------------------------------------------------------------------------- reading
def _tokenize(text: str) -> list[_Atom]:
    """Tokens ``(``, ``)`` and atoms with line numbers; ``;`` comments dropped.

    Hand-written (with one regex) rather than a general s-expression library so that every token
    keeps its line number for error messages."""
    out, pos, line = [], 0, 1
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace is left
            break
        start = m.start(m.lastindex) if m.lastindex else m.end()
        line += text.count("\n", pos, start)
        if m.lastindex and m.lastindex > 1:
            out.append(_Atom(m.group(m.lastindex), line))
        line += text.count("\n", start, m.end())
        pos = m.end()
    return out


def _parse(tokens: list[_Atom]) -> list:
    """Nested ``_SList``s of atoms; each list remembers the line of its ``(``."""
    stack: list[list] = [[]]
    opened: list[int] = []
    for t in tokens:
        if t.text == "(":
            stack.append([])
            opened.append(t.line)
        elif t.text == ")":
            if len(stack) == 1:
                raise VNNLibError(f"line {t.line}: unmatched ')'")
            done = stack.pop()
            stack[-1].append(_SList(done, opened.pop()))
        else:
            stack[-1].append(t)
    if len(stack) > 1:
        raise VNNLibError(f"line {opened[-1]}: '(' is never closed")
    return stack[0]


class _SList(list):
    """A parenthesised list with the line of its ``(``."""

    def __init__(self, items, line: int):
        super().__init__(items)
        self.line = line


def _line(e) -> int:
    return e.line


def _head(e) -> str:
    if not isinstance(e, _SList) or not e or not isinstance(e[0], _Atom):
        raise VNNLibError(f"line {_line(e)}: expected an operator application, got {_show(e)}")
    return e[0].text


def _show(e) -> str:
    if isinstance(e, _Atom):
        return e.text
    s = "(" + " ".join(_show(x) for x in e) + ")"
    return s if len(s) <= 60 else s[:57] + "..."


def _number(atom: _Atom) -> float | None:
    """The value of a numeral atom, None if the atom is not a numeral; a numeral beyond the
    float64 range is an error."""
    if _NUMERAL.match(atom.text) is None:
        return None
    v = float(atom.text)
    if not np.isfinite(v):
        raise VNNLibError(f"line {atom.line}: number {atom.text} is outside the float64 range")
    return v


def _linear(e, declared: dict) -> Linear:
    """A linear term as {var: coef, None: constant}; every value a finite float64."""
    out = _linear_term(e, declared)
    if not all(math.isfinite(v) for v in out.values()):
        raise VNNLibError(f"line {_line(e)}: {_show(e)} overflows the float64 range")
    return out


def _linear_term(e, declared: dict) -> Linear:
    if isinstance(e, _Atom):
        v = _number(e)
        if v is not None:
            return {None: v}
        if e.text not in declared:
            raise VNNLibError(f"line {e.line}: undeclared variable {e.text!r}")
        return {declared[e.text]: 1.0}
    op, args = _head(e), [_linear(a, declared) for a in e[1:]]
    if op == "+" and args:
        return _sum(args)
    if op == "-" and args:
        return _scale(args[0], -1.0) if len(args) == 1 else _sum([args[0]] + [_scale(a, -1.0) for a in args[1:]])
    if op == "*" and args:
        variable = [a for a in args if not set(a) <= {None}]
        if len(variable) > 1:
            raise VNNLibError(f"line {e.line}: nonlinear product {_show(e)}")
        c = math.prod(a.get(None, 0.0) for a in args if set(a) <= {None})  # Python floats: no overflow warning
        return _scale(variable[0] if variable else {None: 1.0}, c)
    if op == "/" and len(args) == 2 and set(args[1]) <= {None} and args[1].get(None, 0.0) != 0:
        return _scale(args[0], 1.0 / args[1][None])
    raise VNNLibError(f"line {e.line}: unsupported arithmetic construct {_show(e)}")


def _sum(terms: list[Linear]) -> Linear:
    out: Linear = {}
    for t in terms:
        for k, v in t.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _scale(t: Linear, c: float) -> Linear:
    return {k: v * c for k, v in t.items()}


def _dnf(e, declared: dict) -> list[list[Atom]]:
    """Formula -> list of clauses; a clause is a list of atoms ``(lin, strict)``: ``lin <= 0``
    (``lin < 0`` when strict)."""
    op = _head(e)
    if op == "and":
        clauses: list[list[Atom]] = [[]]
        for sub in e[1:]:
            clauses = _product(clauses, _dnf(sub, declared), e)
        return clauses
    if op == "or":
        return [c for sub in e[1:] for c in _dnf(sub, declared)]
    if op in ("<=", ">=", "<", ">", "="):
        if len(e) < 3:
            raise VNNLibError(f"line {e.line}: comparison {_show(e)} needs two operands")
        terms = [_linear(a, declared) for a in e[1:]]
        atoms = []
        strict = op in ("<", ">")
        for a, b in zip(terms, terms[1:]):
            if op in ("<=", "<", "="):
                atoms.append((_sum([a, _scale(b, -1.0)]), strict))
            if op in (">=", ">", "="):
                atoms.append((_sum([b, _scale(a, -1.0)]), strict))
        return [atoms]
    raise VNNLibError(f"line {e.line}: unsupported construct {op!r} in {_show(e)}")


def _product(a: list[list[Atom]], b: list[list[Atom]], where) -> list[list[Atom]]:
    if len(a) * len(b) > MAX_CLAUSES:
        raise VNNLibError(f"line {_line(where)}: formula expands to more than {MAX_CLAUSES} disjuncts")
    return [x + y for x in a for y in b]


def _declare(e, declared: dict) -> None:
    if len(e) != 3 or not all(isinstance(x, _Atom) for x in e[1:]):
        raise VNNLibError(f"line {e.line}: malformed declaration {_show(e)}")
    name, sort = e[1].text, e[2].text
    m = _VAR.match(name)
    if m is None:
        raise VNNLibError(f"line {e.line}: variable {name!r} is neither an input X_i nor an output Y_j")
    if sort != "Real":
        raise VNNLibError(f"line {e.line}: variable {name} has sort {sort!r}; only Real is supported")
    declared[name] = (m.group(1), int(m.group(2)))


def _read_text(path_or_text, max_inflate: int | None = None) -> tuple[str, str]:
    """(text, name): a string holding a declaration or assertion is VNN-LIB text; anything else
    names a file (``.gz`` decompressed, at most ``max_inflate`` bytes: :mod:`certprune.io.inflate`)."""
    from certprune.io.inflate import read_file_bytes

    if isinstance(path_or_text, str) and ("(declare-const" in path_or_text or "(assert" in path_or_text):
        return path_or_text, ""
    p = Path(path_or_text)
    if not p.is_file():
        raise VNNLibError(f"VNN-LIB file not found: {p}")
    raw = read_file_bytes(p, VNNLibError, max_inflate, "VNN-LIB file")
    try:
        return raw.decode("utf-8"), p.name
    except UnicodeDecodeError as e:
        raise VNNLibError(f"cannot read VNN-LIB file {p}: {e}") from None


def read_vnnlib(path_or_text, num_inputs: int | None = None, num_outputs: int | None = None,
                max_inflate: int | None = None) -> list[Property]:
    """Parse a VNN-LIB 1.0 file (or its text) into Properties, one per distinct input box.

    ``num_inputs`` / ``num_outputs`` (the model's flat sizes) default to the declared variable
    counts; a variable index beyond them raises :class:`ShapeMismatchError`. ``max_inflate``
    caps the inflated size of a ``.gz`` file in bytes (default ``$CERTPRUNE_MAX_INFLATE`` or 1 GiB).
    """
    text, name = _read_text(path_or_text, max_inflate)
    where = f"{name}: " if name else ""
    try:
        return _build(_parse(_tokenize(text)), num_inputs, num_outputs, name)
    except VNNLibError as e:
        raise VNNLibError(f"{where}{e}") from None


def _build(exprs: list, num_inputs, num_outputs, name: str) -> list[Property]:
    declared: dict[str, tuple[str, int]] = {}
    clauses: list[list[Atom]] = [[]]
    for e in exprs:
        op = _head(e)
        if op == "declare-const":
            _declare(e, declared)
        elif op == "assert":
            if len(e) != 2:
                raise VNNLibError(f"line {e.line}: assert takes exactly one formula")
            clauses = _product(clauses, _dnf(e[1], declared), e)
        elif op in ("set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"):
            continue
        else:
            raise VNNLibError(f"line {e.line}: unsupported command {op!r}")
    n_in = _size(declared, "X", num_inputs, "input")
    n_out = _size(declared, "Y", num_outputs, "output")
    return _group(clauses, n_in, n_out, name)


def _size(declared: dict, kind: str, given: int | None, word: str) -> int:
    idx = [i for k, i in declared.values() if k == kind]
    top = max(idx) + 1 if idx else 0
    if given is not None and top > given:
        raise ShapeMismatchError(f"the property uses {word} {kind}_{top - 1} but the model has {given} {word}s")
    if given is None and top == 0:
        raise VNNLibError(f"no {word} variables ({kind}_0, ...) are declared")
    return given if given is not None else top


def _group(clauses: list[list[Atom]], n_in: int, n_out: int, name: str) -> list[Property]:
    """Split clauses into input boxes and output rows; group by identical box."""
    if not clauses:  # the DNF of an empty (or) is no clause at all, not an empty input box
        raise VNNLibError("the assertions can never hold (an empty disjunction '(or)'): the file describes no "
                          "counterexample region")
    boxes: dict[bytes, tuple[_Box, list[LinearConstraints]]] = {}
    for clause in clauses:
        box = _Box.unbounded(n_in)
        rows, rhs, strict = [], [], []
        for atom, is_strict in clause:
            kinds = {k[0] for k, v in atom.items() if k is not None and v != 0}
            if kinds == {"X", "Y"}:
                raise VNNLibError("constraints mixing inputs and outputs are not supported")
            if kinds == {"X"}:
                box.tighten(atom, is_strict)
            else:
                row = np.zeros(n_out)
                for k, v in atom.items():
                    if k is not None:
                        row[k[1]] += v
                rows.append(row)
                rhs.append(-atom.get(None, 0.0))
                strict.append(is_strict)
        if box.empty():
            continue  # empty input set: this clause can never be violated
        missing = np.flatnonzero(~(np.isfinite(box.lo) & np.isfinite(box.hi)))
        if missing.size:
            names = ", ".join(f"X_{i}" for i in missing[:5]) + (" ..." if missing.size > 5 else "")
            raise VNNLibError(f"input variable(s) {names} lack a lower or an upper bound")
        if not rows:  # no output condition: every point of the box violates
            rows, rhs, strict = [np.zeros(n_out)], [0.0], [False]
        entry = boxes.setdefault(box.key(), (box, []))
        entry[1].append(LinearConstraints(np.array(rows), np.array(rhs), np.array(strict, dtype=bool)))
    if not boxes:
        raise VNNLibError("the input constraints are infeasible (every input box is empty)")
    stem = name.removesuffix(".gz").removesuffix(".vnnlib")
    return [Property(box.region(), tuple(_dedupe(ds)), name=stem if len(boxes) == 1 else f"{stem}[{i}]",
                     meta={"source": name, "input_disjunct": i})
            for i, (box, ds) in enumerate(boxes.values())]


@dataclass
class _Box:
    """A box being built from input atoms; ``open_lo`` / ``open_hi`` mark bounds set by ``<``/``>``."""

    lo: np.ndarray
    hi: np.ndarray
    open_lo: np.ndarray
    open_hi: np.ndarray

    @classmethod
    def unbounded(cls, n: int) -> "_Box":
        return cls(np.full(n, -np.inf), np.full(n, np.inf), np.zeros(n, bool), np.zeros(n, bool))

    def tighten(self, atom: Linear, strict: bool) -> None:
        """Intersect the box with ``c * x_i + k <= 0`` (``< 0`` when strict)."""
        terms = [(k, v) for k, v in atom.items() if k is not None and v != 0]
        if len(terms) != 1:
            raise VNNLibError("input constraints must bound one variable each (a box); got a linear combination")
        (_, i), c = terms[0]
        bound = -atom.get(None, 0.0) / c
        side, is_open, tighter = (self.hi, self.open_hi, bound < self.hi[i]) if c > 0 else \
            (self.lo, self.open_lo, bound > self.lo[i])
        if tighter:
            side[i], is_open[i] = bound, strict
        elif bound == side[i]:
            is_open[i] |= strict

    def empty(self) -> bool:
        return bool(np.any(self.lo > self.hi) or np.any((self.lo == self.hi) & (self.open_lo | self.open_hi)))

    def key(self) -> bytes:
        return self.lo.tobytes() + self.hi.tobytes() + self.open_lo.tobytes() + self.open_hi.tobytes()

    def region(self) -> InputRegion:
        return InputRegion(self.lo, self.hi, open_lower=self.open_lo if self.open_lo.any() else None,
                           open_upper=self.open_hi if self.open_hi.any() else None)


def _dedupe(ds: list[LinearConstraints]) -> list[LinearConstraints]:
    seen, out = set(), []
    for d in ds:
        key = d.A.tobytes() + d.b.tobytes() + d.strict.tobytes()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


# ----------------------------------------------------------------------------- model shapes
def region_for_model(prop: Property, input_shape: Sequence[int]) -> InputRegion:
    """The property's flat box reshaped row-major (C order) to ``input_shape`` (no batch dim)."""
    shape = tuple(int(d) for d in input_shape)
    r = prop.region
    if r.dim != int(np.prod(shape)):
        raise ShapeMismatchError(f"the property has {r.dim} inputs but the model input shape {shape} "
                                 f"has {int(np.prod(shape))}")
    return r.reshaped(shape)


def property_for_model(prop: Property, input_shape: Sequence[int], num_outputs: int | None = None) -> Property:
    """The property with its region reshaped to ``input_shape``; checks ``num_outputs`` if given."""
    if num_outputs is not None:
        prop.check_outputs(num_outputs)
    return prop.with_region(region_for_model(prop, input_shape))


# ----------------------------------------------------------------------------- writing
def format_vnnlib(prop: Property | Sequence[Property]) -> str:
    """VNN-LIB 1.0 text of one property or of several (one input box each, same sizes, joined by
    ``or``); inputs are flattened row-major; floats are written exactly (``repr``). An
    ``integer_mask`` has no VNN-LIB 1.0 form and is not written."""
    props = [prop] if isinstance(prop, Property) else list(prop)
    if not props or len({(p.region.dim, p.num_outputs) for p in props}) != 1:
        raise ShapeMismatchError("format_vnnlib needs properties with equal input and output sizes")
    n_in, n_out = props[0].region.dim, props[0].num_outputs
    lines = [f"; {props[0].name or 'certprune property'}", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(n_in)] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)] + [""]
    if len(props) == 1:
        lines += [f"(assert {atom})" for atom in _bounds(props[0])]
        lines += ["", "(assert " + _output_or(props[0]) + ")"]
    else:
        lines.append("(assert (or")
        lines += [f"    (and {_box(p)}\n        {_output_or(p, pad='        ')})" for p in props]
        lines.append("))")
    return "\n".join(lines) + "\n"


def _bounds(p: Property) -> list[str]:
    """Two bound atoms per input (``>`` / ``<`` for open bounds)."""
    r = p.region
    lo, hi = r.lower.ravel(), r.upper.ravel()
    olo, ohi = r.open_lower_mask.ravel(), r.open_upper_mask.ravel()
    return [a for i in range(lo.size) for a in (f"({'>' if olo[i] else '>='} X_{i} {_num(lo[i])})",
                                                 f"({'<' if ohi[i] else '<='} X_{i} {_num(hi[i])})")]


def _box(p: Property) -> str:
    return " ".join(_bounds(p))


def _output_or(p: Property, pad: str = "") -> str:
    conj = ["(and " + " ".join(_row(a, b, s) for a, b, s in zip(d.A, d.b, d.strict)) + ")" for d in p.disjuncts]
    return f"(or\n{pad}    " + f"\n{pad}    ".join(conj) + f"\n{pad})"


def write_vnnlib(prop: Property | Sequence[Property], path: str | Path) -> Path:
    """Write one or several properties (see :func:`format_vnnlib`) as VNN-LIB (gzip-compressed when the name ends in ``.gz``); returns the path."""
    path = Path(path)
    data = format_vnnlib(prop).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _num(v: float) -> str:
    return repr(float(v))


def _row(a: np.ndarray, b: float, strict: bool = False) -> str:
    """``a . y <= b`` (``<`` when strict) as an s-expression; ``y_i - y_j <= 0`` is written
    ``(<= Y_i Y_j)``."""
    op = "<" if strict else "<="
    nz = np.flatnonzero(a)
    if len(nz) == 2 and b == 0 and sorted(a[nz]) == [-1.0, 1.0]:
        pos, neg = (nz[0], nz[1]) if a[nz[0]] > 0 else (nz[1], nz[0])
        return f"({op} Y_{pos} Y_{neg})"
    terms = [f"Y_{j}" if a[j] == 1 else f"(* {_num(a[j])} Y_{j})" for j in nz]
    lhs = "0.0" if not terms else terms[0] if len(terms) == 1 else "(+ " + " ".join(terms) + ")"
    return f"({op} {lhs} {_num(b)})"
