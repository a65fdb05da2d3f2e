"""Compare a dense model with its pruned variants on one data set: one certify run per model (its
own store under ``out_dir/<name>/``, so a rerun resumes) plus the pruning size metrics.

Columns (:data:`COLUMNS`), per model: ``method``/``amount`` from its pruning manifest (``dense``
and 0 for a model without one); ``params`` and ``nonzeros`` (parameters, non-zero parameters);
``sparsity`` = 1 - nonzeros / params of the reference (first) model; ``macs`` / ``nonzero_macs``
(:func:`certprune.pruning.metrics.mac_counts`); accuracies as fractions of the n samples:
``clean_acc``, ``pgd_acc``, ``cert_acc_bounds`` (certified by :func:`~certprune.verifiers.verify.verify`'s
root bounds, CROWN then alpha-CROWN, without branching), ``cert_acc_bab`` (certified at all:
bounds, then branch and bound with LP/MILP leaves), ``unknown`` (samples left undecided at the
timeout); ``unstable_per_input`` (mean number of ReLUs CROWN leaves unstable on a sample's ball)
and ``verify_s_per_input`` (mean seconds of PGD + verification per sample). Soundness policy:
``exact`` (verify's; the store rows say how each sample was decided).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from certprune.errors import ConfigError

COLUMNS = ["model", "method", "amount", "params", "nonzeros", "sparsity", "macs", "nonzero_macs", "clean_acc",
           "pgd_acc", "cert_acc_bounds", "cert_acc_bab", "unknown", "unstable_per_input", "verify_s_per_input"]
SEMANTICS = "exact"


@dataclass(frozen=True)
class Comparison:
    """The table (one row per model, :data:`COLUMNS`) and each model's certify rows (for plots)."""

    table: pd.DataFrame
    rows: dict[str, list[dict]]


def store_names(paths: list[str]) -> list[str]:
    """Folder-safe distinct names for models: the file stem, ``_2``, ``_3``... on repeats."""
    names: list[str] = []
    for p in paths:
        base = Path(p).name
        for ext in (".gz", ".onnx", ".h5", ".hdf5", ".pt", ".pth"):
            base = base[: -len(ext)] if base.lower().endswith(ext) else base
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in base) or "model"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def pruning_info(net, path: str | Path | None = None) -> tuple[str, float]:
    """(method, amount) from the manifest in the ONNX metadata or ``NAME.manifest.json`` beside the
    file; ``("dense", 0.0)`` when there is none."""
    from certprune.pruning.manifest import Manifest, manifest_path
    text = net.info.extra.get("metadata", {}).get("certprune_pruning_manifest")
    if text is None and path is not None and manifest_path(path).is_file():
        text = manifest_path(path).read_text()
    if text is None:
        return "dense", 0.0
    m = Manifest.from_json(text)
    return f"{m.method} ({m.granularity})", float(m.amount)


def compare_models(models: dict[str, object], X, y, eps: float, out_dir: str | Path, *, paths=None,
                   indices=None, timeout: float = 10.0, clip=(0.0, 1.0), dataset: str | None = None,
                   workers: int = 1, ray_address: str | None = None, progress: bool = False,
                   config=None) -> Comparison:
    """Certify every model on the same samples (see module doc); ``models`` maps store names to
    Networks, the first being the reference; ``paths`` (same keys) locate pruning manifests."""
    from certprune.verifiers.robustness import certify_robustness
    if not models:
        raise ConfigError("compare needs at least one model")
    shape = tuple(next(iter(models.values())).info.input_shape)
    bad = [n for n, m in models.items() if tuple(m.info.input_shape) != shape]
    if bad:
        raise ConfigError(f"models must share one input shape {shape}; {', '.join(bad)} differ")
    ref_params = _params(next(iter(models.values())))[0]
    table, rows = [], {}
    for name, net in models.items():
        rep = certify_robustness(net, X, y, eps, timeout=timeout, out_dir=Path(out_dir) / name, indices=indices,
                                 clip=clip, config=config, progress=progress, dataset=dataset, workers=workers,
                                 ray_address=ray_address)
        method, amount = pruning_info(net, (paths or {}).get(name))
        table.append({"model": name, "method": method, "amount": amount,
                      **size_row(net, shape, ref_params), **accuracy_row(rep.rows)})
        rows[name] = rep.rows
    return Comparison(pd.DataFrame(table, columns=COLUMNS), rows)


def _params(net) -> tuple[int, int]:
    ps = list(net.module.parameters())
    return sum(p.numel() for p in ps), sum(int(torch.count_nonzero(p)) for p in ps)


def size_row(net, shape: tuple[int, ...], ref_params: int) -> dict:
    """params, nonzeros, sparsity against ``ref_params``, dense and non-zero MACs."""
    from certprune.pruning.metrics import mac_counts
    params, nonzeros = _params(net)
    macs, nz_macs = mac_counts(net.module, shape)
    return {"params": params, "nonzeros": nonzeros, "sparsity": 1.0 - nonzeros / max(ref_params, 1),
            "macs": macs, "nonzero_macs": nz_macs}


def accuracy_row(rows: list[dict]) -> dict:
    """The accuracy and cost columns from one certify run's rows (see module doc)."""
    n = max(len(rows), 1)
    cert = [r for r in rows if r["verdict"] == "certified"]
    unstable = [float(r["unstable_relus"]) for r in rows if r["unstable_relus"] not in ("", None)]
    secs = [float(r["seconds_pgd"]) + float(r["seconds_verify"]) for r in rows]
    return {"clean_acc": sum(_true(r["clean_correct"]) for r in rows) / n,
            "pgd_acc": sum(_true(r["pgd_robust"]) for r in rows) / n,
            "cert_acc_bounds": sum(r["phase"] == "bound" for r in cert) / n,
            "cert_acc_bab": len(cert) / n,
            "unknown": sum(r["verdict"] == "unknown" for r in rows),
            "unstable_per_input": float(np.mean(unstable)) if unstable else float("nan"),
            "verify_s_per_input": float(np.mean(secs)) if secs else 0.0}


def _true(v) -> bool:
    return v is True or str(v) == "True"
