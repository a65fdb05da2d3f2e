"""VNN-LIB 1.0 reading and writing: ``read_vnnlib`` -> list of :class:`~certprune.specs.Property`.

Why a hand-written parser: the PyPI package ``vnnlib`` (1.0.2) implements the VNN-LIB *2.0*
grammar (``declare-network`` blocks) and rejects the VNN-LIB 1.0 files of VNN-COMP, ACAS Xu
included ("syntax error at line 3"). VNN-LIB 1.0 is a tiny SMT-LIB subset, so a ~150-line
s-expression reader is simpler than wrapping a C++ AST.

Supported: ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)``, ``(assert F)`` where F
nests ``and`` / ``or`` over comparisons ``<= >= < > =`` (chains allowed) between linear terms
built from numbers, variables, ``+``, ``-``, ``*`` by a constant and ``/`` by a constant.
Strict comparisons are read as non-strict: the violation set becomes its closure, so a
certificate of the closed property also certifies the strict one (sound); counterexamples are
re-validated on the model anyway.

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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from certprune.errors import ShapeMismatchError, VNNLibError
from certprune.specs import InputRegion, LinearConstraints, Property

MAX_CLAUSES = 200_000
_TOKEN = re.compile(r"\s*(?:(;[^\n]*)|(\()|(\))|([^\s();]+))")
_VAR = re.compile(r"^([XY])_(\d+)$")


@dataclass(frozen=True)
class _Atom:
    """A token with the line it came from (for error messages)."""

    text: str
    line: int


Linear = dict  # {("X"|"Y", index) or None (constant): coefficient}


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


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def _linear(e, declared: dict) -> Linear:
    """A linear term as {var: coef, None: constant}."""
    if isinstance(e, _Atom):
        v = _number(e.text)
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
        c = float(np.prod([a.get(None, 0.0) for a in args if set(a) <= {None}]))
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


def _dnf(e, declared: dict) -> list[list[Linear]]:
    """Formula -> list of clauses; a clause is a list of atoms ``lin <= 0``."""
    op = _head(e)
    if op == "and":
        clauses: list[list[Linear]] = [[]]
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
        for a, b in zip(terms, terms[1:]):
            if op in ("<=", "<", "="):
                atoms.append(_sum([a, _scale(b, -1.0)]))
            if op in (">=", ">", "="):
                atoms.append(_sum([b, _scale(a, -1.0)]))
        return [atoms]
    raise VNNLibError(f"line {e.line}: unsupported construct {op!r} in {_show(e)}")


def _product(a: list[list[Linear]], b: list[list[Linear]], where) -> list[list[Linear]]:
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


def _read_text(path_or_text) -> tuple[str, str]:
    """(text, name): a string holding a declaration or assertion is VNN-LIB text; anything else
    names a file (``.gz`` decompressed)."""
    if isinstance(path_or_text, str) and ("(declare-const" in path_or_text or "(assert" in path_or_text):
        return path_or_text, ""
    p = Path(path_or_text)
    if not p.is_file():
        raise VNNLibError(f"VNN-LIB file not found: {p}")
    try:
        raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        return raw.decode("utf-8"), p.name
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise VNNLibError(f"cannot read VNN-LIB file {p}: {e}") from None


def read_vnnlib(path_or_text, num_inputs: int | None = None, num_outputs: int | None = None) -> list[Property]:
    """Parse a VNN-LIB 1.0 file (or its text) into Properties, one per distinct input box.

    ``num_inputs`` / ``num_outputs`` (the model's flat sizes) default to the declared variable
    counts; a variable index beyond them raises :class:`ShapeMismatchError`.
    """
    text, name = _read_text(path_or_text)
    where = f"{name}: " if name else ""
    try:
        return _build(_parse(_tokenize(text)), num_inputs, num_outputs, name)
    except VNNLibError as e:
        raise VNNLibError(f"{where}{e}") from None


def _build(exprs: list, num_inputs, num_outputs, name: str) -> list[Property]:
    declared: dict[str, tuple[str, int]] = {}
    clauses: list[list[Linear]] = [[]]
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


def _group(clauses: list[list[Linear]], n_in: int, n_out: int, name: str) -> list[Property]:
    """Split clauses into input boxes and output rows; group by identical box."""
    boxes: dict[bytes, tuple[np.ndarray, np.ndarray, list[LinearConstraints]]] = {}
    for clause in clauses:
        lo, hi = np.full(n_in, -np.inf), np.full(n_in, np.inf)
        rows, rhs = [], []
        for atom in clause:
            kinds = {k[0] for k, v in atom.items() if k is not None and v != 0}
            if kinds == {"X", "Y"}:
                raise VNNLibError("constraints mixing inputs and outputs are not supported")
            if kinds == {"X"}:
                _tighten(atom, lo, hi)
            else:
                row = np.zeros(n_out)
                for k, v in atom.items():
                    if k is not None:
                        row[k[1]] += v
                rows.append(row)
                rhs.append(-atom.get(None, 0.0))
        if np.any(lo > hi):
            continue  # empty input set: this clause can never be violated
        missing = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))
        if missing.size:
            names = ", ".join(f"X_{i}" for i in missing[:5]) + (" ..." if missing.size > 5 else "")
            raise VNNLibError(f"input variable(s) {names} lack a lower or an upper bound")
        if not rows:  # no output condition: every point of the box violates
            rows, rhs = [np.zeros(n_out)], [0.0]
        key = lo.tobytes() + hi.tobytes()
        entry = boxes.setdefault(key, (lo, hi, []))
        entry[2].append(LinearConstraints(np.array(rows), np.array(rhs)))
    if not boxes:
        raise VNNLibError("the input constraints are infeasible (every input box is empty)")
    stem = name.removesuffix(".gz").removesuffix(".vnnlib")
    return [Property(InputRegion(lo, hi), tuple(_dedupe(ds)), name=stem if len(boxes) == 1 else f"{stem}[{i}]",
                     meta={"source": name, "input_disjunct": i})
            for i, (lo, hi, ds) in enumerate(boxes.values())]


def _tighten(atom: Linear, lo: np.ndarray, hi: np.ndarray) -> None:
    """Intersect the box with ``c * x_i + k <= 0``."""
    terms = [(k, v) for k, v in atom.items() if k is not None and v != 0]
    if len(terms) != 1:
        raise VNNLibError("input constraints must bound one variable each (a box); got a linear combination")
    (_, i), c = terms[0]
    bound = -atom.get(None, 0.0) / c
    if c > 0:
        hi[i] = min(hi[i], bound)
    else:
        lo[i] = max(lo[i], bound)


def _dedupe(ds: list[LinearConstraints]) -> list[LinearConstraints]:
    seen, out = set(), []
    for d in ds:
        key = d.A.tobytes() + d.b.tobytes()
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
    mask = None if r.integer_mask is None else r.integer_mask.reshape(shape)
    return InputRegion(r.lower.reshape(shape), r.upper.reshape(shape), mask)


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
        lo, hi = props[0].region.lower.ravel(), props[0].region.upper.ravel()
        for i in range(n_in):
            lines += [f"(assert (>= X_{i} {_num(lo[i])}))", f"(assert (<= X_{i} {_num(hi[i])}))"]
        lines += ["", "(assert " + _output_or(props[0]) + ")"]
    else:
        lines.append("(assert (or")
        lines += [f"    (and {_box(p)}\n        {_output_or(p, pad='        ')})" for p in props]
        lines.append("))")
    return "\n".join(lines) + "\n"


def _box(p: Property) -> str:
    lo, hi = p.region.lower.ravel(), p.region.upper.ravel()
    return " ".join(f"(>= X_{i} {_num(lo[i])}) (<= X_{i} {_num(hi[i])})" for i in range(lo.size))


def _output_or(p: Property, pad: str = "") -> str:
    conj = ["(and " + " ".join(_row(a, b) for a, b in zip(d.A, d.b)) + ")" for d in p.disjuncts]
    return f"(or\n{pad}    " + f"\n{pad}    ".join(conj) + f"\n{pad})"


def write_vnnlib(prop: Property | Sequence[Property], path: str | Path) -> Path:
    """Write one or several properties (see :func:`format_vnnlib`) as VNN-LIB (gzip-compressed when the name ends in ``.gz``); returns the path."""
    path = Path(path)
    data = format_vnnlib(prop).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _num(v: float) -> str:
    return repr(float(v))


def _row(a: np.ndarray, b: float) -> str:
    """``a . y <= b`` as an s-expression; ``y_i - y_j <= 0`` is written ``(<= Y_i Y_j)``."""
    nz = np.flatnonzero(a)
    if len(nz) == 2 and b == 0 and sorted(a[nz]) == [-1.0, 1.0]:
        pos, neg = (nz[0], nz[1]) if a[nz[0]] > 0 else (nz[1], nz[0])
        return f"(<= Y_{pos} Y_{neg})"
    terms = [f"Y_{j}" if a[j] == 1 else f"(* {_num(a[j])} Y_{j})" for j in nz]
    lhs = "0.0" if not terms else terms[0] if len(terms) == 1 else "(+ " + " ".join(terms) + ")"
    return f"(<= {lhs} {_num(b)})"
