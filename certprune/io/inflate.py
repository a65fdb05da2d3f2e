"""Reading possibly gzip-compressed files with a cap on the inflated size (no gzip bombs).

A ``.gz`` file is inflated as a stream and refused as soon as it exceeds the cap, so a small file
that would inflate to gigabytes never allocates more than the cap. The cap is, in this order: the
``max_inflate`` argument, the environment variable ``CERTPRUNE_MAX_INFLATE`` (bytes, or with a
suffix ``K``/``M``/``G``, powers of 1024), or :data:`DEFAULT_MAX_INFLATE` (1 GiB, above the
largest VNN-COMP models).
"""
from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

from certprune.errors import CertpruneError, ConfigError

DEFAULT_MAX_INFLATE = 1 << 30  # 1 GiB
ENV_VAR = "CERTPRUNE_MAX_INFLATE"
_SIZE = re.compile(r"^\s*([0-9]+)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)
_CHUNK = 1 << 20


def max_inflate(override: int | None = None) -> int:
    """The cap in bytes: ``override``, else ``$CERTPRUNE_MAX_INFLATE``, else the default."""
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, int) or override < 1:
            raise ConfigError(f"max_inflate must be a positive number of bytes, got {override!r}")
        return override
    text = os.environ.get(ENV_VAR)
    if text is None or not text.strip():
        return DEFAULT_MAX_INFLATE
    return parse_size(text, ENV_VAR)


def parse_size(text: str, what: str = "size") -> int:
    """``"1073741824"``, ``"512M"``, ``"2G"``, ``"64KiB"`` -> bytes (powers of 1024)."""
    m = _SIZE.match(text)
    if m is None or int(m.group(1)) < 1:
        raise ConfigError(f"{what} must be a positive byte count such as 1073741824, 512M or 2G; got {text!r}")
    unit = (m.group(2) or "B")[0].upper()
    return int(m.group(1)) * {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]


def read_file_bytes(path: str | Path, error: type[CertpruneError], max_size: int | None = None,
                    what: str = "file") -> bytes:
    """The bytes of ``path``, inflated when its name ends in ``.gz``; raises ``error`` (naming the
    ``what``, e.g. "ONNX file") when the file cannot be read, is not valid gzip, or inflates beyond
    :func:`max_inflate` bytes."""
    p = Path(path)
    cap = max_inflate(max_size)
    try:
        if not p.name.lower().endswith(".gz"):
            return p.read_bytes()
        with gzip.open(p, "rb") as f:
            data = _read_capped(f, cap)
    except (OSError, EOFError, zlib.error) as e:
        raise error(f"cannot read {what} {p}: {e}") from None
    if data is None:
        raise error(f"{p.name} inflates to more than {_human(cap)} (the limit; raise it with "
                    f"{ENV_VAR}=<bytes|NNM|NNG> or max_inflate=...): refusing a possible gzip bomb")
    return data


def check_zip_size(path: str | Path, error: type[CertpruneError], max_size: int | None = None) -> None:
    """For a zip archive (PyTorch's file format): raise ``error`` when its members would inflate
    beyond :func:`max_inflate` bytes in total (read from the central directory; nothing inflated)."""
    import zipfile

    p = Path(path)
    cap = max_inflate(max_size)
    try:
        with zipfile.ZipFile(p) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: the loader reports what it is
    if total > cap:
        raise error(f"{p.name} inflates to {total} bytes, more than {_human(cap)} (the limit; raise it with "
                    f"{ENV_VAR}=<bytes|NNM|NNG> or max_inflate=...): refusing a possible zip bomb")


def _read_capped(f, cap: int) -> bytes | None:
    """All of ``f`` if it holds at most ``cap`` bytes, else None (reading at most cap + 1 MiB)."""
    parts, total = [], 0
    while True:
        chunk = f.read(min(_CHUNK, cap + 1 - total))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if total > cap:
            return None


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"
