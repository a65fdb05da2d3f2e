"""SQLite store of per-partition audit results: written as partitions finish, read on resume.

One row per partition; each batch of finished partitions is one committed transaction (WAL
journal), so a run killed with SIGKILL loses no finished partition. ``meta`` holds the audit's
identity (model hash, spec, partitioning); reopening with a different identity is refused so a
resume never mixes two audits. 'unknown' rows are retried by the next run.

Safety: the store is locked for its lifetime (``audit.sqlite.lock``, see
:mod:`certprune.verifiers.store_lock`; forked workers join their parent's lock, another process
is refused), and a finished verdict (certified / falsified) is never replaced by a later write.
A file that is not a readable SQLite store is refused with a ConfigError.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable

import pandas as pd

from certprune.errors import ConfigError
from certprune.verifiers.store_lock import StoreLock, ensure_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS partitions (
  pid INTEGER PRIMARY KEY, verdict TEXT NOT NULL, nodes INTEGER, z3_calls INTEGER, seconds REAL,
  fair TEXT, unfair TEXT, pairs TEXT);
"""
FINISHED = ("certified", "falsified")
# upsert that keeps decided rows: a later write only replaces an undecided ('unknown') row
_COLUMNS = ("verdict", "nodes", "z3_calls", "seconds", "fair", "unfair", "pairs")
_UPSERT = (f"INSERT INTO partitions VALUES ({', '.join('?' * (1 + len(_COLUMNS)))}) ON CONFLICT(pid) DO UPDATE SET "
           + ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS)
           + " WHERE partitions.verdict NOT IN ('certified', 'falsified')")


class AuditStore:
    """Open (or create) ``path``; ``identity`` must match the stored one if the file exists."""

    def __init__(self, path: str | Path, identity: dict):
        self.path = Path(path)
        ensure_dir(self.path.parent)
        self.lock = StoreLock(self.path.with_name(self.path.name + ".lock"), "audit store").acquire()
        try:
            row = self._open()
            ident = json.dumps(identity, sort_keys=True)
            if row is None:
                self.conn.execute("INSERT INTO meta VALUES ('identity', ?)", (ident,))
            elif row[0] != ident:
                raise ConfigError(f"{self.path} holds results of a different audit (model, spec or partitioning "
                                  f"differ; a whole-domain audit with --workers N > 1 is cut into pieces, so "
                                  f"resume it with the same N); use another --out directory or delete it")
        except BaseException:
            if hasattr(self, "conn"):
                self.conn.close()
            self.lock.release()
            raise

    def _open(self):
        """Connect, create the tables, return the stored identity row (ConfigError if corrupt)."""
        try:
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            return self.conn.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{self.path} is not a readable audit store ({e}); it may be corrupt or "
                              "truncated: delete it or use another --out directory") from None

    def finished(self) -> set[int]:
        """Partition ids with a final verdict (certified / falsified)."""
        rows = self.conn.execute("SELECT pid FROM partitions WHERE verdict IN (?, ?)", FINISHED)
        return {r[0] for r in rows}

    def write(self, outcomes: Iterable) -> None:
        """Insert a batch of PartitionOutcome rows in one transaction; a decided (complete) row is
        never replaced, an undecided one is. Individual counts are stored as decimal text (exact,
        beyond 64 bits); ``pairs`` as JSON [[x, x', logit, logit'], ...] (undecided individuals and
        box sizes are derived from the partitioning, not stored)."""
        rows = [(o.pid, o.verdict, o.nodes, o.z3_calls, o.seconds, str(int(o.fair)), str(int(o.unfair)),
                 json.dumps([[list(map(int, a)), list(map(int, b)), float(la), float(lb)] for a, b, la, lb in o.pairs]))
                for o in outcomes]
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(_UPSERT, rows)

    def add_seconds(self, seconds: float) -> float:
        """Add this run's wall time to the audit's total (kept across resumes); returns the total."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='seconds'").fetchone()
        total = (float(row[0]) if row else 0.0) + float(seconds)
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('seconds', ?)", (repr(total),))
        return total

    def frame(self) -> pd.DataFrame:
        """All rows, ordered by partition id."""
        return pd.read_sql_query("SELECT * FROM partitions ORDER BY pid", self.conn)

    def close(self) -> None:
        """Close the connection and release the lock."""
        self.conn.close()
        self.lock.release()

