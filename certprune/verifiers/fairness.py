"""``audit_fairness``: a sound and complete Fairify-style audit of individual fairness.

partition the integer domain -> decide every partition with the twin-network engine
(:mod:`fairness_bab`: bounds, integer splits, exhaustive small boxes, z3 leaves; serially, in local
processes or on Ray) -> store rows as they finish (SQLite, resumable) -> write summary.json,
partitions.csv, counterexamples.csv (+ a decoded copy) and report.html.

The unit is the individual (an integer point of the domain; unfair when some x' of the domain,
equal except on the protected features and relaxed ones within delta, gets the other decision).
Every partition is refined until each of its individuals is proven fair, proven unfair
or the budget ends (``undecided_tolerance``: stop once at most that share of the domain is open);
summary.json holds the exact counts. One :mod:`certprune.semantics` policy decides bounds and
points alike (``exact`` by default: real-arithmetic decisions; ``float32``: the original model run
in float32; summary.json's ``decisions`` says how); counterexample pairs are always re-run in
float32 on the original model. Partition verdicts: certified (every individual fair), falsified
(a validated pair), undecided.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from certprune.errors import ConfigError
from certprune.fairness_spec import FairnessSpec
from certprune.semantics import DEFAULT, Semantics, parse_semantics
from certprune.verifiers.fairness_bab import BabConfig, Float32Decider, TwinBab
from certprune.verifiers.partition import Partitioning, box_partition, box_points, domain_pieces, grid_partition


@dataclass
class EngineFactory:
    """Picklable recipe for a :class:`TwinBab` (local workers and Ray tasks build their own)."""

    exact: object
    module: torch.nn.Module
    spec: FairnessSpec
    config: BabConfig
    semantics: Semantics = DEFAULT

    def __call__(self) -> TwinBab:
        mod = self.module

        def run32(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return mod(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).reshape(len(x), -1).numpy()
        return TwinBab(self.exact, Float32Decider(run32), self.spec, self.config, self.semantics)


@dataclass
class AuditResult:
    """Summary dict (see :func:`summarize`), one row per partition, one row per counterexample pair,
    and the real records that are unfair individuals (when records were given)."""

    summary: dict
    partitions: pd.DataFrame
    counterexamples: pd.DataFrame
    out_dir: Path | None
    affected: pd.DataFrame | None = None


def _prepare_model(model) -> tuple[object, torch.nn.Module, str]:
    """(exact AffineReluNet, float32 copy of the original module, model hash)."""
    from certprune.network import Network, as_network, load_model
    from certprune.verifiers.bounds import affine_net
    if isinstance(model, (str, Path)):
        model = load_model(model)
    if not isinstance(model, Network):
        model = as_network(model)
    exact = affine_net(model)
    if not exact.exact:  # densified products round outside every margin (verifiers.affine doc)
        from certprune.errors import UnsupportedModelError
        raise UnsupportedModelError("fairness audits take chains of single Linear layers and ReLUs; this model "
                                    "composes affine layers (Linear after Linear, BatchNorm, scaling) between ReLUs")
    module = copy.deepcopy(model.module).float().eval()
    h = model.info.sha256 or hashlib.sha256(b"".join(w.numpy().tobytes() for w in exact.weights + exact.biases)).hexdigest()
    return exact, module, h


PIECES_PER_WORKER = 8  # whole-domain audits with local workers: pieces per worker process


def make_partitioning(spec: FairnessSpec, partition_size: int | None, partitions=None,
                      workers: int = 1) -> Partitioning:
    """Fairify's grid for ``partition_size`` T, the user's boxes (K, 2, n), or (neither given) the
    whole domain as one partition; with ``workers`` > 1 local processes, the whole domain in
    ``PIECES_PER_WORKER`` x workers pieces (:func:`partition.domain_pieces`) so that every worker
    has a share of it (each runs one search over its pieces, largest open volume first)."""
    if partitions is not None:
        return box_partition(partitions, spec.lower, spec.upper)
    if partition_size is None:
        if workers > 1:
            return box_partition(domain_pieces(spec.lower, spec.upper, spec.protected_indices,
                                               PIECES_PER_WORKER * workers), spec.lower, spec.upper)
        return box_partition(np.stack([spec.lower, spec.upper])[None], spec.lower, spec.upper)
    return grid_partition(spec.lower, spec.upper, partition_size, spec.protected_indices)


def _identity(model_hash: str, spec: FairnessSpec, part: Partitioning, semantics: Semantics) -> dict:
    pb = part.boxes.tolist() if part.boxes is not None else [s.tolist()[:1] + [len(s)] for s in part.starts]
    return {"model": model_hash, "features": list(spec.feature_names), "lower": spec.lower.tolist(),
            "upper": spec.upper.tolist(), "protected": list(spec.protected), "relaxed": [list(r) for r in spec.relaxed],
            "partitions": hashlib.sha256(json.dumps(pb).encode()).hexdigest(), "count": part.count,
            "semantics": semantics.value, "engine": "individuals-2"}


MAX_SAMPLES = 10 ** 6  # uniform points for the sampled unfair share (default 10^4); more is a typo


def audit_fairness(model, spec: FairnessSpec, partition_size: int | None = None, *, partitions=None,
                   timeout: float = 600.0, workers: int = 1, ray_address: str | None = None,
                   out_dir: str | Path | None = None, progress: bool = True, config: BabConfig | None = None,
                   report: bool = True, semantics: str | Semantics | None = None,
                   undecided_tolerance: float = 0.0, records: np.ndarray | None = None,
                   samples: int = 10000, map_features: tuple[str, str] | None = None) -> AuditResult:
    """Audit ``model`` (path, Network or ReLU nn.Module) for ``spec``, counting individuals.

    ``partition_size``: Fairify's grid chunk T (None and no ``partitions``: the whole domain, as
    ``PIECES_PER_WORKER`` x ``workers`` pieces when ``workers`` > 1, so every process has a share).
    ``timeout``: global budget in seconds; individuals still open then are undecided.
    ``undecided_tolerance``: stop refining once at most this share of the domain is undecided.
    ``semantics``: ``exact`` (default) or ``float32`` (see :mod:`certprune.semantics`).
    ``out_dir``: where the SQLite store and outputs go (a temporary store is used when None);
    rerunning with the same out_dir resumes (incomplete partitions are redone).
    ``workers`` > 1 forks local processes; ``ray_address`` uses Ray.
    ``records``: real records (N, n) to check one by one (exact: which of them are unfair
    individuals); ``samples``: uniform domain points for a sampled unfair share with a 95 %
    Wilson interval (0: none). Both are written into the summary. ``map_features``: two feature
    names for the report's map of the sampled unfair share.
    """
    if map_features is not None:
        map_features = tuple(map_features)
        if len(map_features) != 2:
            raise ConfigError(f"--map-features takes two feature names, got {len(map_features)}")
        for f in map_features:
            spec.index(f)
        if spec.index(map_features[0]) == spec.index(map_features[1]):
            raise ConfigError(f"--map-features needs two different features, got {map_features[0]} twice")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 0 <= samples <= MAX_SAMPLES:
        raise ConfigError(f"samples must be an integer in 0..{MAX_SAMPLES}, got {samples!r}")
    import tempfile
    from certprune.verifiers import parallel
    from certprune.verifiers.audit_store import AuditStore
    parallel.check_workers(workers, ray_address)
    if not (timeout > 0):
        raise ConfigError(f"timeout must be positive, got {timeout!r}")
    sem = parse_semantics(semantics)
    if not (0.0 <= undecided_tolerance <= 1.0):
        raise ConfigError(f"undecided tolerance must be a share in [0, 1], got {undecided_tolerance!r}")
    exact, module, mhash = _prepare_model(model)
    spec.check_model_inputs(exact.input_dim)
    part = make_partitioning(spec, partition_size, partitions, workers if not ray_address else 1)
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory()
        out = Path(tmp.name)
    else:
        out = Path(out_dir)
    ident = _identity(mhash, spec, part, sem)
    store_path = out / "audit.sqlite"
    store = AuditStore(store_path, ident)
    done = store.finished()
    todo = np.setdiff1d(np.arange(part.count, dtype=np.int64), np.fromiter(done, dtype=np.int64, count=len(done)))
    factory = EngineFactory(exact, module, spec, config or BabConfig(), sem)
    domain = float(box_points(spec.lower, spec.upper)[0])
    coverage = Progress(_decided(store.frame())) if not ray_address and not (workers > 1 and len(todo) > 1) else None
    job = parallel.Job(factory, part, time.monotonic() + timeout, undecided_tolerance * domain)
    bar = _progress(part.count, len(done), progress)
    t0 = time.perf_counter()

    def on_done(outs) -> None:
        store.write(outs)
        bar.update(sum(o.verdict != "unknown" for o in outs))

    try:
        if ray_address:
            parallel.run_ray(job, todo, ray_address, on_done)
        elif workers > 1 and len(todo) > 1:
            seen = [len(done)]

            def poll() -> None:
                n = len(store.finished())
                bar.update(n - seen[0])
                seen[0] = n
            parallel.run_local(job, todo, workers, lambda: AuditStore(store_path, ident), poll)
        else:
            parallel.run_serial(job, todo, on_done, coverage)
    finally:
        bar.close()
    frame = store.frame()
    seconds = store.add_seconds(time.perf_counter() - t0)
    store.close()
    who = _who_is_affected(factory, spec, records, samples)
    who[0].update(_audited(mhash, spec, timeout))
    if coverage is not None:
        who[0]["progress"] = coverage.as_dict(domain)
    result = _finish(frame, spec, part, seconds, out if out_dir is not None else None, report, sem,
                     undecided_tolerance, who, map_features)
    if tmp is not None:
        tmp.cleanup()
    return result


class Progress:
    """Coverage over time of a serial run: after each engine round, seconds since the run began and
    the individuals proven fair / unfair so far (``base``: those of partitions finished by an
    earlier run). Kept to at most ``cap`` samples (every other one dropped when full)."""

    def __init__(self, base: tuple[int, int] = (0, 0), cap: int = 400):
        self.t0, self.base, self.cap = time.perf_counter(), base, cap
        self.rows: list[tuple[float, int, int]] = [(0.0, *base)]

    def __call__(self, fair: int, unfair: int) -> None:
        row = (time.perf_counter() - self.t0, self.base[0] + fair, self.base[1] + unfair)
        if row[1:] == self.rows[-1][1:]:
            return
        self.rows.append(row)
        if len(self.rows) > self.cap:
            kept = self.rows[::2]
            self.rows = kept if kept[-1] is self.rows[-1] else kept + [self.rows[-1]]

    def as_dict(self, total: float) -> dict:
        """``{"seconds": [...], "fair_share": [...], "unfair_share": [...]}`` (shares of the domain)."""
        return {"seconds": [round(t, 3) for t, _, _ in self.rows],
                "fair_share": [f / total for _, f, _ in self.rows],
                "unfair_share": [u / total for _, _, u in self.rows]}


def _decided(frame: pd.DataFrame) -> tuple[int, int]:
    """Individuals proven fair / unfair in the finished rows of a store frame."""
    done = frame[frame["verdict"].isin(["certified", "falsified"])]
    return sum(int(v) for v in done["fair"]), sum(int(v) for v in done["unfair"])


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="partition", disable=not enabled, desc="fairness audit")


def _finish(frame: pd.DataFrame, spec: FairnessSpec, part: Partitioning, seconds: float, out: Path | None,
            report: bool, semantics: Semantics, tolerance: float, who: tuple, map_features=None) -> AuditResult:
    from certprune.report.tables import counterexample_frames, partition_frame, summarize
    parts = partition_frame(frame, part)
    summary = summarize(parts, spec, part, seconds, semantics.value, tolerance)
    summary.update(who[0])
    affected = who[1]
    cex, decoded = counterexample_frames(frame, spec)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        parts.to_csv(out / "partitions.csv", index=False)
        cex.to_csv(out / "counterexamples.csv", index=False)
        decoded.to_csv(out / "counterexamples_decoded.csv", index=False)
        if affected is not None:
            affected.to_csv(out / "affected_records.csv", index=False)
        if report:
            from certprune.report.html import write_report
            write_report(out / "report.html", summary, parts, decoded, spec, part, affected, who[2], map_features)
    return AuditResult(summary, parts, cex, out, affected)


def _audited(model_hash: str, spec: FairnessSpec, timeout: float) -> dict:
    """What was audited: model hash, tool version, budget, domain per feature."""
    from certprune import __version__
    return {"model_sha256": model_hash, "tool_version": __version__, "budget_seconds": float(timeout),
            "domain": {n: [int(lo), int(hi)] for n, lo, hi in zip(spec.feature_names, spec.lower, spec.upper)}}


def _who_is_affected(factory: EngineFactory, spec: FairnessSpec, records, samples: int) -> tuple[dict, pd.DataFrame | None, tuple | None]:
    """Summary entries (sampled unfair share, record counts), the decoded unfair records, and the
    samples with their exact verdicts (for the map)."""
    from certprune.verifiers.affected import affected_records, sample_points, share_estimate, unfair_individuals
    decide = factory().decide_points
    extra: dict = {}
    sampled = None
    if samples:
        X = sample_points(spec, int(samples))
        sampled = (X, unfair_individuals(decide, spec, X))
        extra["sampled_unfair_share"] = share_estimate(sampled[1]).as_dict()
    if records is None:
        return extra, None, sampled
    X = np.asarray(records, dtype=np.float64).reshape(len(records), -1)
    spec.check_model_inputs(X.shape[1])
    mask, inside = affected_records(decide, spec, X)
    extra["records"] = {"checked": int(len(X)), "in_domain": int(inside.sum()), "unfair": int(mask.sum()),
                        "unfair_share": float(mask.sum() / max(1, inside.sum()))}
    rows = [{"record": int(i), **spec.decode(X[i])} for i in np.flatnonzero(mask)]
    return extra, pd.DataFrame(rows, columns=["record", *spec.feature_names]), sampled
