"""One exclusive lock per result store, so two runs never write into the same ``--out`` at once.

``StoreLock(path).acquire()`` opens ``path`` (created if missing), takes a non-blocking
``fcntl.flock`` on it and writes the owner's pid into it. The lock belongs to the open file, so
the kernel drops it when the process ends, however it ends: a crashed or SIGKILLed run leaves no
stale lock, and the file itself is left in place (harmless; the pid inside is only for the
message). A second process gets :class:`~certprune.errors.StoreBusyError` naming the owner.

Forked children inherit the open file and with it the lock: the module keeps a per-process table
of held locks, copied by ``fork``, so a worker process forked by the lock's owner (fairness
``--workers``) opens the same store and *joins* instead of being refused. Release closes the file
without ``LOCK_UN``, so a child closing its copy never frees its parent's lock.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from certprune.errors import ConfigError, StoreBusyError

_HELD: dict[str, list] = {}  # resolved path -> [fd, refcount]; inherited by forked children


class StoreLock:
    """Exclusive, crash-safe lock on ``path`` (see module doc); use as a context manager or
    ``acquire()`` / ``release()``. ``what`` names the store in the refusal message."""

    def __init__(self, path: str | Path, what: str = "results folder"):
        self.path = Path(path)
        self.what = what
        self._key: str | None = None

    def acquire(self) -> "StoreLock":
        """Take the lock, or join the one this process (or its forking parent) already holds."""
        if self._key is not None:
            return self
        key = str(self.path.resolve())
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
            self._key = key
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise StoreBusyError(f"{self.path.parent} is in use by another certprune run{owner} "
                                 f"({self.what} locked by {self.path.name}); wait for it to finish or "
                                 "use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        """Drop this holder; the file is closed (lock freed) when the last holder in this process goes."""
        if self._key is None:
            return
        key, self._key = self._key, None
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _HELD[key]
            os.close(held[0])

    def __enter__(self) -> "StoreLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> str:
    """`` (pid N)`` from the lock file, or '' when it cannot be read."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def ensure_dir(path: str | Path) -> Path:
    """Create the output folder of a store, or ConfigError in one line (a file, no permission, ...)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output directory {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output directory {path}: {e.strerror or e}") from None
    return path


def drop_partial_line(path: str | Path) -> None:
    """Cut a last line without its newline (a run killed mid-write) so the next append starts a
    clean row; the CSV stores of ``certify`` and ``bench`` call it once when they open (under
    their folder lock, so no writer of this run is mid-row)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb+") as f:
        f.seek(0, 2)
        size = f.tell()
        if size == 0:
            return
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)
