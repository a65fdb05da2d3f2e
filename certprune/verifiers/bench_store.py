"""The result store of ``certprune bench``: one folder, rows appended as instances finish.

    DIR/bench.json      identity of the run (instances file and its hash, timeout cap, config)
    DIR/config.toml     the effective verifier configuration (readable by ``--config``)
    DIR/results.csv     one row per finished instance: onnx, vnnlib, timeout, result, seconds, message
    DIR/counterexamples/<onnx>__<vnnlib>.txt   the VNN-COMP result file of each ``sat`` instance

A rerun into the same folder skips the rows already there, but only for the same identity: a
folder holding another run (other instances, cap or configuration), or a results.csv without its
bench.json, is refused with a ConfigError rather than mixed in; a second process on the same
folder is refused while the first holds ``DIR/bench.lock``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from certprune.errors import ConfigError

COLUMNS = ("onnx", "vnnlib", "timeout", "result", "seconds", "message")


class BenchStore:
    """Append-only CSV of instance rows with an identity check (see module doc)."""

    def __init__(self, folder: str | Path, identity: Mapping[str, Any], config: Mapping[str, Any]):
        self.folder = Path(folder)
        self.identity = dict(identity)
        self._open(config)

    @property
    def results_path(self) -> Path:
        return self.folder / "results.csv"

    def _open(self, config: Mapping[str, Any]) -> None:
        from certprune.verifiers.config_file import write_config

        from certprune.verifiers.store_lock import StoreLock, drop_partial_line, ensure_dir

        ensure_dir(self.folder)
        # one run per folder, as the fairness and certify stores (released by the kernel on exit)
        self.lock = StoreLock(self.folder / "bench.lock", "bench results folder").acquire()
        ident = self.folder / "bench.json"
        if ident.exists():
            try:
                stored = json.loads(ident.read_text())
            except json.JSONDecodeError:
                raise ConfigError(f"{ident} is corrupt; remove the folder or choose another --out") from None
            if stored != self.identity:
                diff = sorted(k for k in set(stored) | set(self.identity) if stored.get(k) != self.identity.get(k))
                raise ConfigError(f"{self.folder} holds results of another run (differs in: {', '.join(diff)}); "
                                  f"choose another --out")
        elif self.results_path.exists():
            raise ConfigError(f"{self.results_path} exists without its bench.json; choose another --out")
        else:
            ident.write_text(json.dumps(self.identity, indent=1, sort_keys=True) + "\n")
        write_config(self.folder / "config.toml", config)
        drop_partial_line(self.results_path)  # half a row of a killed run: cut once, under the lock (redone)

    def close(self) -> None:
        """Release the folder's lock."""
        self.lock.release()

    def done(self) -> dict[tuple[str, str], dict[str, str]]:
        """Rows already stored, by (onnx, vnnlib) as written in the instances file."""
        if not self.results_path.exists():
            return {}
        with open(self.results_path, newline="") as f:
            return {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(f) if _complete(r)}

    def append(self, row: Mapping[str, Any], x: np.ndarray | None = None, y: np.ndarray | None = None) -> None:
        """Write one finished row (flushed at once) and, for ``sat``, its counterexample file."""
        from certprune.vnncomp import write_result

        if row["result"] == "sat":
            write_result(self.counterexample_path(row["onnx"], row["vnnlib"]), "sat", x, y)
        new = not self.results_path.exists() or self.results_path.stat().st_size == 0
        with open(self.results_path, "a", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in COLUMNS})

    def counterexample_path(self, onnx: str, vnnlib: str) -> Path:
        name = f"{Path(onnx).name.removesuffix('.gz')}__{Path(vnnlib).name.removesuffix('.gz')}.txt"
        return self.folder / "counterexamples" / name


def _complete(row: Mapping[str, Any]) -> bool:
    """A row written whole (a torn last row lacks its later columns)."""
    from certprune.vnncomp import WORDS
    return row.get("message") is not None and row.get("result") in WORDS

