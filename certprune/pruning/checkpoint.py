"""Resumable :func:`certprune.pruning.prune` runs: one checkpoint folder per run.

The folder holds ``run.json`` (what the run is: method, amount, granularity, seed, epochs, every
option, and hashes of the input model and of the data) and one file per training phase: the
phase's :func:`~certprune.pruning.finetune.train_loop` checkpoint (saved after every epoch), and
after a learner has finished, its result (``learned.pt``), so that an interrupted fine-tuning
does not learn the masks again. Started again with the same folder and the same settings, a run
continues from the last saved epoch and ends with the weights and masks of an uninterrupted run;
a folder of another run (other settings, model or data) is refused with a ConfigError, and so is
a folder that already holds files but no ``run.json`` (e.g. a model folder). When the run
completes, only the files a run writes (:data:`RUN_FILES`) are deleted, never other files.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from torch import nn

from certprune.errors import ConfigError

VERSION = 1

#: The files a prune run writes into its folder (besides ``run.json``): ``learn.pt`` (a learner's
#: train_loop), ``learn-round.pt`` (a brain round), ``learned.pt`` (a learner's result),
#: ``steps.pt`` (finished prune steps), ``finetune.pt`` / ``finetune<k>.pt`` (fine-tuning
#: phases), each also as ``<name>.tmp`` while :func:`atomic_save` writes it.
RUN_FILES = re.compile(r"(learn|learn-round|learned|steps|finetune\d*)\.pt(\.tmp)?")


def data_digest(*tensors: torch.Tensor | None) -> str:
    """Hash of the exact bytes, dtypes and shapes of ``tensors`` (None hashes as empty)."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        if t is not None:
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def run_identity(model: nn.Module, X, y, **settings) -> dict:
    """The JSON-able identity of a prune run: ``settings`` (repr of each value), model and data hashes."""
    from certprune.verifiers.bounds import _fingerprint

    ident = {k: repr(v) for k, v in sorted(settings.items())}
    ident.update(version=VERSION, model=_fingerprint(model)[0], data=data_digest(X, y))
    return ident


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class RunCheckpoint:
    """The checkpoint folder of one prune run (see the module doc)."""

    IDENTITY = "run.json"

    def __init__(self, folder: str | Path, identity: dict):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"checkpoint {self.folder} is not a folder")
        path = self.folder / self.IDENTITY
        if path.is_file():
            self._check(path, identity)
        else:
            if self.folder.is_dir() and any(self.folder.iterdir()):
                raise ConfigError(f"checkpoint {self.folder} is a non-empty folder without {self.IDENTITY}; "
                                  "use an empty or new folder")
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(identity, indent=1))

    def _check(self, path: Path, identity: dict) -> None:
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it to start over") from None
        if old != identity:
            keys = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k)) if isinstance(old, dict) else ["all"]
            raise ConfigError(f"checkpoint {self.folder} belongs to another prune run (differs in {', '.join(keys)}); "
                              "delete it or use another folder")

    def phase(self, name: str) -> Path:
        """The file of training phase ``name`` (for train_loop's ``checkpoint=``)."""
        return self.folder / f"{name}.pt"

    def saved(self, name: str):
        """The object stored by :meth:`save` under ``name``, or None."""
        path = self.phase(name)
        if not path.is_file():
            return None
        try:
            return torch.load(path, weights_only=False)
        except Exception as exc:  # a truncated or foreign file
            raise ConfigError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it to start over") from None

    def save(self, name: str, obj) -> None:
        """Store ``obj`` (a finished phase's result) under ``name``."""
        atomic_save(obj, self.phase(name))

    def finish(self) -> None:
        """Delete the files the run wrote (:data:`RUN_FILES`, ``run.json``) and the folder if it is
        then empty: the run is complete. Other files stay."""
        for path in self.folder.iterdir():
            if path.is_file() and RUN_FILES.fullmatch(path.name):
                path.unlink()
        (self.folder / self.IDENTITY).unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:  # the folder holds other files: leave it
            pass


def open_run(folder, model: nn.Module, X, y, **settings) -> RunCheckpoint | None:
    """The :class:`RunCheckpoint` of a prune run of ``model`` on ``(X, y)`` with ``settings``
    (every argument that changes its result), or None without a folder."""
    if folder is None:
        return None
    from certprune.pruning.layers import base_module

    settings = {k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in settings.items()}
    return RunCheckpoint(folder, run_identity(base_module(model), X, y, **settings))


def phase_file(checkpoint: RunCheckpoint | None, name: str) -> Path | None:
    """``checkpoint.phase(name)``, or None without a checkpoint."""
    return None if checkpoint is None else checkpoint.phase(name)
