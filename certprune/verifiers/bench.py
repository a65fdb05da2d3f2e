"""Benchmark runner: every instance of a VNN-COMP ``instances.csv``, in this one process or on
the shared runner of :mod:`certprune.verifiers.parallel` (local workers, Ray).

``instances.csv`` lines are ``onnx,vnnlib,timeout_seconds`` with paths relative to the file's
folder (a path whose file is missing is also tried with ``.gz``, as in the VNN-COMP benchmark
repositories). Each instance gets its own timeout, or ``timeout_cap`` when that is smaller;
start-up (imports, :func:`warm_up`) is paid once, model loading is counted in each instance's time. Rows go to a
:class:`~certprune.verifiers.bench_store.BenchStore` as they finish, so a rerun resumes.

Reference results (``--reference``) are read in the VNN-COMP results format, one line per
instance ``category,onnx,vnnlib,prepare_seconds,result,run_seconds`` (no header; the 2021 words
``holds`` / ``violated`` read as ``unsat`` / ``sat``), or a results.csv written by this runner.
Instances are matched on the file names of onnx and vnnlib without ``.gz``. A disagreement is a
``sat`` against an ``unsat``: one of the two tools is wrong.
"""
from __future__ import annotations

import csv
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from certprune.errors import CertpruneError, ConfigError

DECIDED = ("sat", "unsat")
_OLD_WORDS = {"holds": "unsat", "violated": "sat"}


@dataclass(frozen=True)
class Instance:
    """One line of an instances file: paths as written there, resolved files, timeout (s)."""

    onnx: str
    vnnlib: str
    timeout: float
    onnx_path: Path
    vnnlib_path: Path

    @property
    def key(self) -> tuple[str, str]:
        return instance_key(self.onnx, self.vnnlib)


def instance_key(onnx: str, vnnlib: str) -> tuple[str, str]:
    """Tool-independent name of an instance: the two file names without ``.gz``."""
    return Path(onnx.strip()).name.removesuffix(".gz"), Path(vnnlib.strip()).name.removesuffix(".gz")


def read_instances(path: str | Path) -> list[Instance]:
    """The instances of a VNN-COMP ``instances.csv``; ConfigError for a malformed line or a missing file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"instances file {path} does not exist")
    out = []
    for n, row in enumerate(_csv_rows(path, "instances file"), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 3:
            raise ConfigError(f"{path}:{n}: expected 'onnx,vnnlib,timeout_seconds', got {','.join(row)!r}")
        try:
            timeout = float(row[2])
        except ValueError:
            raise ConfigError(f"{path}:{n}: timeout {row[2]!r} is not a number") from None
        if not 0 < timeout < float("inf"):  # inf (or 1e400) would make every instance an 'error' row
            raise ConfigError(f"{path}:{n}: timeout must be a positive finite number of seconds, got {row[2]}")
        onnx, vnn = row[0].strip(), row[1].strip()
        out.append(Instance(onnx, vnn, timeout, resolve_path(path.parent, onnx), resolve_path(path.parent, vnn)))
    if not out:
        raise ConfigError(f"instances file {path} lists no instances")
    return out


def _csv_rows(path: Path, what: str) -> list[list[str]]:
    """Every row of a CSV file; ConfigError naming the file when it is not UTF-8 text or not CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{what} {path} is not a UTF-8 CSV file: {e}") from None


def resolve_path(root: Path, rel: str) -> Path:
    """``root / rel``, or its ``.gz`` twin when only that exists (instances.csv names the plain file)."""
    p = root / rel
    gz = p.with_name(p.name + ".gz")
    return gz if not p.exists() and gz.exists() else p


def run_identity(instances_path: str | Path, timeout_cap: float | None, config: Mapping[str, Any]) -> dict:
    """What makes two bench runs the same run (checked by the store before resuming)."""
    from certprune.network import file_sha256

    path = Path(instances_path).resolve()
    return {"instances": str(path), "instances_sha256": file_sha256(path), "timeout_cap": timeout_cap,
            "config": dict(config)}


def budget(inst: Instance, timeout_cap: float | None) -> float:
    """The instance's timeout, or the cap when that is smaller."""
    return inst.timeout if timeout_cap is None else min(inst.timeout, timeout_cap)


Row = dict[str, Any]


def run_instance(inst: Instance, timeout: float, config: Mapping[str, Any],
                 progress: Callable[[dict], None] | None = None):
    """(row, outcome) for one instance; a bad instance is an ``error`` row, never an exception."""
    from certprune.verifiers.instance import InstanceOutcome, decide_instance

    t0 = time.monotonic()
    message = ""
    try:
        out = decide_instance(str(inst.onnx_path), str(inst.vnnlib_path), timeout, t0, config, progress)
    except CertpruneError as e:
        out, message = InstanceOutcome("error"), str(e)
    except Exception as e:  # an internal error on one instance must not stop the benchmark
        out, message = InstanceOutcome("error"), f"internal error: {type(e).__name__}: {e}"
    row = {"onnx": inst.onnx, "vnnlib": inst.vnnlib, "timeout": timeout, "result": out.word,
           "seconds": round(time.monotonic() - t0, 3), "message": message}
    return row, out


def run_bench(instances: Iterable[Instance], store, timeout_cap: float | None, config: Mapping[str, Any],
              on_row: Callable[[Row, bool], None] | None = None,
              progress: Callable[[dict], None] | None = None, *, workers: int = 1,
              ray_address: str | None = None) -> list[Row]:
    """Run every instance not yet in ``store`` (a BenchStore), appending each row as it finishes;
    returns the rows of all ``instances`` in order (stored ones included). ``on_row(row, fresh)``
    is called after each instance (``fresh`` False for a row found in the store; stored rows first).

    ``workers`` > 1 runs the instances in that many forked processes, ``ray_address`` as Ray tasks
    (:func:`certprune.verifiers.parallel.map_items`, the runner of certify and the fairness audit);
    only this process writes the store, so it stays the one record of the run. ``progress`` (the
    verbose lines) is passed to serial runs only."""
    from functools import partial

    from certprune.verifiers.parallel import map_items

    done = store.done()
    instances = list(instances)
    rows: dict[int, Row] = {k: done[(i.onnx, i.vnnlib)] for k, i in enumerate(instances) if (i.onnx, i.vnnlib) in done}
    for k in sorted(rows):
        if on_row is not None:
            on_row(rows[k], False)
    todo = [(k, inst) for k, inst in enumerate(instances) if k not in rows]
    if todo:
        warm_up()  # before forking: workers inherit the imports
    serial = workers <= 1 and ray_address is None
    fn = partial(_run_item, timeout_cap=timeout_cap, config=dict(config), progress=progress if serial else None)
    for k, row, x, y in map_items(fn, todo, workers=workers, ray_address=ray_address):
        store.append(row, x, y)
        rows[k] = row
        if on_row is not None:
            on_row(row, True)
    return [rows[k] for k in range(len(instances))]


def _run_item(item: tuple[int, Instance], timeout_cap, config, progress=None) -> tuple:
    """(position, row, counterexample input, output) of one instance, in whichever process runs it."""
    k, inst = item
    warm_up()  # a Ray worker's first instance would otherwise pay the imports in its time
    row, out = run_instance(inst, budget(inst, timeout_cap), config, progress)
    return k, row, out.x, out.y


def warm_up() -> None:
    """Import what the first instance would otherwise pay for (onnx, onnxruntime for the load-time
    self-check, the verifier's modules): the start-up is paid once, outside every instance's time."""
    import importlib

    for name in ("onnx", "onnxruntime", "certprune.network", "certprune.io.onnx_loader", "certprune.io.onnx_check",
                 "certprune.vnnlib", "certprune.verifiers.verify", "certprune.verifiers.attack",
                 "certprune.verifiers.problem", "certprune.verifiers.bab", "certprune.verifiers.lp_leaf",
                 "certprune.graph.encode"):
        try:
            importlib.import_module(name)
        except ImportError:  # optional (onnxruntime): the instance pays for nothing it does not use
            pass


def summarize(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts per result word, solved (sat + unsat), total and median seconds over all rows."""
    words = [r["result"] for r in rows]
    seconds = [float(r["seconds"]) for r in rows]
    counts = {w: words.count(w) for w in ("unsat", "sat", "timeout", "unknown", "error")}
    return {"instances": len(rows), "solved": counts["unsat"] + counts["sat"], **counts,
            "total_seconds": round(sum(seconds), 3),
            "median_seconds": round(statistics.median(seconds), 3) if seconds else 0.0}


def format_summary(summary: Mapping[str, Any]) -> str:
    """A two-line text table of :func:`summarize`'s numbers."""
    cols = ("instances", "solved", "unsat", "sat", "timeout", "unknown", "error", "total_seconds", "median_seconds")
    heads = ("instances", "solved", "unsat", "sat", "timeout", "unknown", "error", "total s", "median s")
    cells = [str(summary[c]) for c in cols]
    widths = [max(len(h), len(c)) for h, c in zip(heads, cells)]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in (heads, cells))


def read_reference(path: str | Path) -> dict[tuple[str, str], str]:
    """{instance key: result word} from a VNN-COMP results CSV or a results.csv of this runner."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"reference file {path} does not exist")
    rows = [r for r in _csv_rows(path, "reference file") if r]
    if rows and "result" in [c.strip() for c in rows[0]]:  # our own results.csv (with a header)
        head = [c.strip() for c in rows[0]]
        missing = [c for c in ("onnx", "vnnlib") if c not in head]
        if missing:
            raise ConfigError(f"{path}: the header {','.join(head)!r} has a 'result' column but no "
                              f"{' and no '.join(repr(c) for c in missing)} column")
        return {instance_key(r[head.index("onnx")], r[head.index("vnnlib")]): _ref_word(r[head.index("result")])
                for r in rows[1:] if len(r) == len(head)}
    out = {}
    for n, r in enumerate(rows, 1):
        if len(r) < 5:
            raise ConfigError(f"{path}:{n}: expected 'category,onnx,vnnlib,prepare_time,result,run_time', "
                              f"got {','.join(r)!r}")
        out[instance_key(r[1], r[2])] = _ref_word(r[4])
    return out


def _ref_word(word: str) -> str:
    w = word.strip().lower()
    return _OLD_WORDS.get(w, w)


@dataclass
class Comparison:
    """How our rows compare with a reference: disagreements (sat vs unsat) and who solved what."""

    disagreements: list[tuple[str, str, str, str]]  # (onnx, vnnlib, ours, reference)
    agree: int
    only_ours: int
    only_reference: int
    missing: int  # our instances the reference does not list


def compare(rows: list[Mapping[str, Any]], reference: Mapping[tuple[str, str], str]) -> Comparison:
    """Compare result words instance by instance (see module doc for the matching)."""
    cmp = Comparison([], 0, 0, 0, 0)
    for r in rows:
        theirs = reference.get(instance_key(r["onnx"], r["vnnlib"]))
        ours = r["result"]
        if theirs is None:
            cmp.missing += 1
        elif ours in DECIDED and theirs in DECIDED:
            if ours == theirs:
                cmp.agree += 1
            else:
                cmp.disagreements.append((r["onnx"], r["vnnlib"], ours, theirs))
        elif ours in DECIDED:
            cmp.only_ours += 1
        elif theirs in DECIDED:
            cmp.only_reference += 1
    return cmp
