"""Where data lives: an explicit ``data_dir`` argument, else ``$CERTPRUNE_DATA``, else
``../shared/data`` next to the repository checkout (the layout CI uses)."""
from __future__ import annotations

import os
from pathlib import Path

from certprune.errors import DatasetError

_REPO = Path(__file__).resolve().parents[2]


def data_root(data_dir: str | Path | None = None) -> Path:
    """The data root directory (not checked for existence)."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("CERTPRUNE_DATA")
    if env:
        return Path(env)
    return _REPO.parent / "shared" / "data"


def require_file(root: Path, *parts: str) -> Path:
    """``root/parts...`` if it exists, else a DatasetError that says where it looked and how to fix it."""
    p = root.joinpath(*parts)
    if not p.exists():
        raise DatasetError(f"data file not found: {p} (set CERTPRUNE_DATA or pass a data directory)")
    return p
