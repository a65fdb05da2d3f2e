"""Certified accuracy of a classifier over a data set: clean, PGD and certified accuracy, per sample.

``certify_robustness(model, X, y, eps, timeout=..., out_dir=...)`` for each sample ``(x, label)``
and the L-inf ball ``|x' - x| <= eps`` clipped to ``[clip_min, clip_max]`` (``RobustnessSpec``):

1. clean: ``argmax f(x) == label`` (float32); misclassified samples get verdict ``misclassified``;
2. PGD: one batched attack over all remaining samples on the margin ``f_label - max_{j!=label} f_j``;
   a point counts only after it is re-run in float32 on the original model, lies in the ball and
   violates the property there (verdict ``falsified``, ``pgd_robust = False``);
3. root CROWN, once, batched over all samples (:func:`crown_margins`, also the evidence below):
   under the exact policy a sample whose margin clears ``verify``'s criterion is certified here
   (phase ``bound``; ``verify`` would compute the same bound again);
4. verify: :func:`certprune.verifiers.verify.verify` with ``timeout`` seconds per remaining sample
   (verdicts ``certified`` / ``falsified`` / ``unknown``).

Accuracies are fractions of the samples asked for: certified <= PGD <= clean. With ``out_dir``
every finished sample is appended (and flushed) to ``out_dir/samples.csv``; a rerun into the same
folder skips the samples already there, after checking that the run's identity (model hash, eps,
timeout, clip, data set name, first index, n and a hash of the samples) equals the one in
``out_dir/config.json``; ``out_dir/summary.json`` is rewritten from exactly the samples asked for.
A ``samples.csv`` without its ``config.json`` is refused, and the folder is locked while the run
writes (:mod:`certprune.verifiers.store_lock`): a second process on it gets a StoreBusyError.

Evidence per row (every sample): ``crown_margin`` is the float64 CROWN lower bound, over the whole ball, of the
worst logit margin ``min_{j != label} f_label - f_j`` (> 0: CROWN alone certifies; certified rows
with ``crown_margin <= 0`` were closed by alpha-CROWN or branch and bound; empty where the model
is not a feed-forward ReLU net), ``unstable_relus`` the number of ReLUs CROWN leaves unstable on
the ball. A falsified row names its adversarial input (``adversarial/<index>.npy`` under
``out_dir``, float32, the model's input shape), which was re-run in float32 on the model just
before it was saved; ``adversarial_margin`` is that run's ``f_label - max_{j != label} f_j``
(<= 0). A point that fails this last check does not make the row falsified (it becomes unknown).
For image inputs ``adversarial/grid.png`` shows clean and adversarial images side by side.

``workers`` > 1 verifies the samples left after PGD in that many forked processes, and
``ray_address`` as Ray tasks (:mod:`certprune.verifiers.parallel`); only this process writes the
store, and verdicts equal a serial run's (``verify`` is deterministic for a fixed seed; a sample
near its timeout may still differ).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from certprune.errors import ConfigError, ShapeMismatchError, SpecError

FIELDS = ["index", "label", "predicted", "clean_correct", "pgd_robust", "verdict", "phase",
          "seconds_pgd", "seconds_verify", "crown_margin", "unstable_relus", "adversarial", "adversarial_margin"]
STORE_VERSION = 2  # 2: evidence columns (crown_margin, unstable_relus, adversarial, adversarial_margin)
VERDICTS = ("certified", "falsified", "unknown", "misclassified")


@dataclass(frozen=True)
class RobustnessReport:
    """Totals over all rows (fractions in [0, 1]); ``rows`` are the per-sample dicts (FIELDS)."""

    n: int
    eps: float
    clean_accuracy: float
    pgd_accuracy: float
    certified_accuracy: float
    counts: dict[str, int]
    seconds: dict[str, float]
    rows: list[dict[str, Any]] = field(repr=False, default_factory=list)
    semantics: str = "exact"  # the soundness policy (certprune.semantics) of the certified rows

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals (no rows)."""
        d = asdict(self)
        d.pop("rows")
        return d


def certify_robustness(model, X, y, eps: float, timeout: float = 10.0, out_dir: str | Path | None = None, *,
                       indices=None, clip: tuple[float, float] = (0.0, 1.0), config=None,
                       pgd_steps: int = 40, pgd_restarts: int = 4, progress: bool = False,
                       dataset: str | None = None, workers: int = 1,
                       ray_address: str | None = None, semantics: str | None = None) -> RobustnessReport:
    """Clean / PGD / certified accuracy of ``model`` on ``X`` (N, *input_shape), labels ``y``; see module doc.

    ``indices`` names the samples in the CSV (default ``0..N-1``); ``config`` goes to ``verify``;
    ``dataset`` names the data set in the stored run identity; ``workers`` / ``ray_address``
    choose the runner of the verification phase. ``semantics`` (exact | float32, default exact; or
    ``config["semantics"]``) is the soundness policy (:mod:`certprune.semantics`), stored in the run
    identity (``config.json``) and the summary.
    """
    from certprune.network import as_network

    net = as_network(model) if not isinstance(model, (str, Path)) else _load(model)
    X, y, idx = _check_inputs(net, X, y, eps, timeout, indices)
    config, sem = _with_semantics(config, semantics)
    if sem == "float32":
        from certprune.verifiers.problem import require_float32_chain
        require_float32_chain(net)
    from certprune.verifiers.parallel import check_workers
    check_workers(workers, ray_address)
    runner = (workers, ray_address)
    if out_dir is None:
        return _certify(net, X, y, idx, eps, timeout, clip, config, pgd_steps, pgd_restarts, progress, None, runner)
    store = _Store(out_dir, {**_identity(net, X, y, idx, eps, timeout, clip, dataset), "semantics": sem})
    try:
        return _certify(net, X, y, idx, eps, timeout, clip, config, pgd_steps, pgd_restarts, progress, store, runner)
    finally:
        store.close()


def _with_semantics(config, semantics) -> tuple[Any, str]:
    """(verify config carrying the semantics, its name): ``semantics`` wins over the config's."""
    from certprune.verifiers.verify import _config

    cfg = _config(config)
    if semantics is not None:
        cfg = dataclasses.replace(cfg, semantics=semantics)  # validated again in __post_init__
    return cfg, cfg.semantics


def _certify(net, X, y, idx, eps, timeout, clip, config, steps, restarts, progress, store,
             runner=(1, None)) -> RobustnessReport:
    """Resume from ``store`` (or None), run the missing samples, report over exactly ``idx``."""
    asked = {int(i) for i in idx}
    done = {i: r for i, r in store.load().items() if i in asked} if store else {}
    todo = [k for k in range(len(X)) if int(idx[k]) not in done]
    rows = list(done.values())
    t0 = time.monotonic()
    for row in _run(net, X[todo], y[todo], idx[todo], eps, timeout, clip, config, steps, restarts, progress, runner):
        adv = row.pop("_adversarial", None)
        if store and adv is not None:
            row["adversarial"] = store.save_adversarial(row["index"], adv)
        rows.append(row)
        if store:
            store.append(row)
    report = dataclasses.replace(_report(rows, eps, time.monotonic() - t0), semantics=config.semantics)
    if store:
        store.write_summary(report)
        store.write_grid(X, idx)
    return report


def _identity(net, X, y, idx, eps, timeout, clip, dataset) -> dict[str, Any]:
    """What a resumed run must share with the stored one (see module doc)."""
    import hashlib
    h = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(np.ascontiguousarray(idx).tobytes())
    return {"model_sha256": net.info.sha256 or _module_digest(net), "eps": float(eps), "timeout": timeout,
            "clip": [float(c) for c in clip], "dataset": dataset,
            "offset": int(idx[0]) if len(idx) else None, "n": int(len(idx)), "samples_sha256": h.hexdigest(),
            "store_version": STORE_VERSION}


def _load(path):
    from certprune.network import load_model
    return load_model(path)


def _check_inputs(net, X, y, eps, timeout, indices):
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64).ravel()
    shape = tuple(net.info.input_shape)
    if X.ndim == len(shape):
        X = X[None]
    if tuple(X.shape[1:]) != shape:
        raise ShapeMismatchError(f"samples have shape {tuple(X.shape[1:])} but the model expects {shape}")
    if len(X) != len(y):
        raise ShapeMismatchError(f"{len(X)} samples but {len(y)} labels")
    if len(y) and not (y.min() >= 0 and y.max() < net.info.num_outputs):
        raise SpecError(f"labels must lie in 0..{net.info.num_outputs - 1}, got {y.min()}..{y.max()}")
    if not (np.isfinite(eps) and eps >= 0):
        raise SpecError(f"eps must be a finite number >= 0, got {eps}")
    if not (timeout is None or (np.isfinite(timeout) and timeout > 0)):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout}")
    idx = np.arange(len(X)) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    if len(idx) != len(X) or len(set(idx.tolist())) != len(idx):
        raise ConfigError("indices must give one distinct index per sample")
    return X, y, idx


def _run(net, X, y, idx, eps, timeout, clip, config, steps, restarts, progress, runner=(1, None)):
    """Yield one finished row per sample: first misclassified and PGD-falsified ones, then verified
    ones (in completion order). A falsified row carries its checked point under ``_adversarial``."""
    n_out = net.info.num_outputs
    t0 = time.monotonic()
    pred = np.argmax(net.run_float32(X), axis=1) if len(X) else np.zeros(0, np.int64)
    props = [_prop(X[k], eps, int(y[k]), clip, n_out) for k in range(len(X))]
    broken, points = _pgd_hits(net, X, y, props, steps, restarts) if len(X) else (np.zeros(0, bool), {})
    t_pgd = (time.monotonic() - t0) / max(len(X), 1)
    t0 = time.monotonic()
    margins, unstable = _root_margins(net, props, y)
    t_crown = (time.monotonic() - t0) / max(len(X), 1)
    pending = []
    for k in range(len(X)):
        base = {"index": int(idx[k]), "label": int(y[k]), "predicted": int(pred[k]),
                "clean_correct": bool(pred[k] == y[k]), "seconds_pgd": round(t_pgd, 4), "crown_margin": margins[k],
                "unstable_relus": unstable[k], "adversarial": "", "adversarial_margin": ""}
        if not base["clean_correct"]:
            yield {**base, "pgd_robust": False, "verdict": "misclassified", "phase": "clean", "seconds_verify": 0.0}
        elif broken[k]:
            yield _with_evidence(net, props[k], {**base, "pgd_robust": False, "verdict": "falsified", "phase": "pgd",
                                                 "seconds_verify": 0.0}, points[k])
        elif _crown_certifies(margins[k], config):
            yield {**base, "pgd_robust": True, "verdict": "certified", "phase": "bound",
                   "seconds_verify": round(t_crown, 4)}
        else:
            pending.append((k, base))
    verified = _verify_all(net, [(props[k], base) for k, base in pending], timeout, config, runner)
    for prop, row, cex in _progress(verified, progress, len(pending)):
        yield _with_evidence(net, prop, row, cex) if cex is not None else row


def _crown_certifies(margin, config) -> bool:
    """The batched root CROWN margin already certifies the sample under ``verify``'s own exact
    criterion (lower bound of every row ``f_label - f_j`` > ``cert_margin * (1 + 0)``), so verify
    would only compute that bound again. Float32 semantics always goes through ``verify`` (its
    certificate adds the rigorous rounding-error bound)."""
    return config.semantics == "exact" and margin != "" and margin > config.cert_margin


def _verify_job(net, job: tuple, timeout, config) -> tuple:
    """(prop, finished row, counterexample or None) of one ``(prop, base row)`` job through ``verify``."""
    from certprune.verifiers.verify import verify
    prop, base = job
    t1 = time.monotonic()
    res = verify(net, prop, timeout=timeout, config=config)
    row = {**base, "pgd_robust": True, "verdict": _verdict(res), "phase": res.stats.get("phase", ""),
           "seconds_verify": round(time.monotonic() - t1, 4)}
    return prop, row, res.counterexample


def _verify_all(net, jobs: list, timeout, config, runner):
    """``_verify_job`` over ``jobs`` ((prop, base) pairs) serially, in local workers or on Ray."""
    from functools import partial

    from certprune.verifiers.parallel import map_items
    workers, address = runner
    fn = partial(_verify_job, net, timeout=timeout, config=config)
    return map_items(fn, jobs, workers=workers, ray_address=address)


def _with_evidence(net, prop, row: dict, x) -> dict:
    """The falsified ``row`` with its point re-run in float32 on ``net`` (see module doc); a point
    that does not violate the property there turns the row into ``unknown``."""
    from certprune.verifiers.problem import in_box_float32
    x = np.asarray(x, dtype=np.float32).reshape(net.info.input_shape)
    out = net.run_float32(x[None]).astype(np.float64)
    inside = bool(in_box_float32(x.reshape(1, -1).astype(np.float64), prop.region.lower.ravel(),
                                 prop.region.upper.ravel(), None)[0])
    if not (inside and bool(prop.is_violated(out)[0])):
        return {**row, "verdict": "unknown", "phase": f"{row['phase']}-recheck"}
    label = row["label"]
    m = out[0, label] - np.max(np.delete(out[0], label))
    return {**row, "adversarial_margin": float(m), "_adversarial": x}


def crown_margins(model, lower, upper, labels) -> tuple[np.ndarray, np.ndarray]:
    """Per box ``[lower[i], upper[i]]`` (float64, (N, *input_shape)): the float64 CROWN lower bound
    of ``min_{j != labels[i]} f_label - f_j`` over the box and the number of ReLUs CROWN leaves
    unstable on it (native engine, chunked to bound memory). The one copy: certify's evidence and
    shortcut, and :func:`certprune.pruning.metrics.crown_certified`, call it. CertpruneError
    (UnsupportedModelError) where the native engine does not take the model."""
    import torch

    from certprune.verifiers.bounds import compute_bounds, graph_of
    lower, upper = torch.as_tensor(lower, dtype=torch.float64), torch.as_tensor(upper, dtype=torch.float64)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    shape = tuple(lower.shape[1:])
    graph = graph_of(model, shape)  # convolutions stay convolutions (no densified affine runs)
    k = graph.output_dim
    chunk = max(1, int(_CROWN_CELLS // (2 * max(graph.relu_sizes + [k]) * graph.input_dim)))
    eye = torch.eye(k, dtype=torch.float64)
    margins, unstable = [np.zeros(0)], [np.zeros(0, np.int64)]
    for s in range(0, len(lower), chunk):
        ys = labels[s:s + chunk]
        C = eye[ys].unsqueeze(1) - eye.unsqueeze(0)
        b = compute_bounds(graph, lower[s:s + chunk], upper[s:s + chunk], method="crown", C=C,
                           return_intermediate=True, input_shape=shape, engine="native")
        margins.append(b.lower.masked_fill(torch.eye(k, dtype=torch.bool)[ys], torch.inf).min(1).values.numpy())
        unstable.append(sum(((lo < 0) & (up > 0)).reshape(len(ys), -1).sum(1) for lo, up in b.intermediate)
                        .numpy().astype(np.int64)
                        if b.intermediate else np.zeros(len(ys), np.int64))
    return np.concatenate(margins), np.concatenate(unstable)


_CROWN_CELLS = 4e7  # float64 cells of one CROWN chunk (about 320 MB)


def _root_margins(net, props, y) -> tuple[list, list]:
    """:func:`crown_margins` on each property's region, as store values (float, int; empty strings
    where the native engine does not take the model)."""
    from certprune.errors import CertpruneError
    if not props:
        return [], []
    lo = np.stack([p.region.lower for p in props])
    hi = np.stack([p.region.upper for p in props])
    try:
        m, u = crown_margins(net, lo, hi, y)
    except CertpruneError:
        return [""] * len(props), [""] * len(props)
    return [float(v) for v in m], [int(v) for v in u]


def _verdict(res) -> str:
    v = res.verdict.value
    return v if v in VERDICTS else "unknown"


def _prop(x, eps, label, clip, n_out):
    from certprune.specs import RobustnessSpec
    return RobustnessSpec(x, eps, label, clip_min=clip[0], clip_max=clip[1]).to_property(n_out)


def _progress(items, enabled: bool, total: int | None = None):
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, desc="verify", unit="sample", total=total)


def _pgd_hits(net, X, y, props, steps: int, restarts: int, chunk: int = 256) -> tuple[np.ndarray, dict]:
    """(boolean per sample: batched PGD found a point that the float32 re-check confirms,
    {sample: that point, float32 of the input shape}).

    Hand-written rather than ``attack.falsify``: that attacks one region at a time, here every
    sample has its own ball and one batched pass over all of them is much faster.
    """
    hits = np.zeros(len(X), bool)
    points: dict[int, np.ndarray] = {}
    for s in range(0, len(X), chunk):
        sl = slice(s, s + chunk)
        cands = _pgd_batch(net, X[sl], y[sl], [p.region for p in props[sl]], steps, restarts)
        for j, pts in enumerate(cands):
            p = props[s + j]
            pts = pts.reshape(len(pts), *p.region.shape)
            ok = p.region.contains(pts.astype(np.float64))
            if ok.any():
                out = net.run_float32(pts[ok])
                bad = p.is_violated(out.astype(np.float64))
                hits[s + j] = bool(bad.any())
                if hits[s + j]:
                    points[s + j] = pts[ok][int(np.argmax(bad))].astype(np.float32)
    return hits, points


def _pgd_batch(net, X, y, regions, steps: int, restarts: int) -> np.ndarray:
    """(N, restarts+1, *shape) best float32 points per sample and start (center + random starts)."""
    import copy

    import torch
    module = copy.deepcopy(net.module).float().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    lo = torch.from_numpy(np.stack([r.lower for r in regions]).astype(np.float32))
    hi = torch.from_numpy(np.stack([r.upper for r in regions]).astype(np.float32))
    # float32 rounding of a float64 bound may leave the box: pull the float32 box inwards
    lo = torch.where(lo.double() < torch.from_numpy(np.stack([r.lower for r in regions])), torch.nextafter(lo, hi), lo)
    hi = torch.where(hi.double() > torch.from_numpy(np.stack([r.upper for r in regions])), torch.nextafter(hi, lo), hi)
    R = restarts + 1
    g = torch.Generator().manual_seed(0)
    lo_r, hi_r = lo.repeat_interleave(R, 0), hi.repeat_interleave(R, 0)
    x = lo_r + torch.rand(lo_r.shape, generator=g) * (hi_r - lo_r)
    x[::R] = torch.from_numpy(X).clamp(lo, hi)
    labels = torch.from_numpy(y).repeat_interleave(R)
    best, best_m = x.clone(), torch.full((len(x),), float("inf"))
    width = hi_r - lo_r
    for k in range(steps + 1):
        x = x.detach().requires_grad_(True)
        out = module(x).reshape(len(x), -1)
        true = out.gather(1, labels[:, None])[:, 0]
        other = out.masked_fill(torch.nn.functional.one_hot(labels, out.shape[1]).bool(), float("-inf")).max(1).values
        margin = true - other
        with torch.no_grad():
            better = margin < best_m
            best[better], best_m[better] = x.detach()[better], margin.detach()[better]
        if k == steps:
            break
        (grad,) = torch.autograd.grad(margin.sum(), x)
        step = width * 0.25 * (0.05 ** (k / max(steps - 1, 1)))
        with torch.no_grad():
            x = torch.minimum(torch.maximum(x - step * grad.sign(), lo_r), hi_r)
    return best.reshape(len(X), R, *X.shape[1:]).numpy()


def _report(rows: list[dict], eps: float, seconds: float) -> RobustnessReport:
    n = len(rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    frac = (lambda k: k / n) if n else (lambda k: 0.0)
    ver = [float(r["seconds_verify"]) for r in rows if r["verdict"] not in ("misclassified",) and r["phase"] != "pgd"]
    secs = {"this_run": round(seconds, 3), "verify_total": round(sum(ver), 3),
            "verify_median": round(float(np.median(ver)), 3) if ver else 0.0,
            "pgd_total": round(sum(float(r["seconds_pgd"]) for r in rows), 3)}
    return RobustnessReport(n, eps, frac(sum(_true(r["clean_correct"]) for r in rows)),
                            frac(sum(_true(r["pgd_robust"]) for r in rows)), frac(counts["certified"]),
                            counts, secs, sorted(rows, key=lambda r: r["index"]))


def _true(v) -> bool:
    return v is True or str(v) == "True"


class _Store:
    """``samples.csv`` (append + flush per row), ``config.json`` (run identity), ``summary.json``;
    the folder is locked (``samples.lock``) from construction to :meth:`close`."""

    def __init__(self, out_dir, identity: dict[str, Any]):
        from certprune.verifiers.store_lock import StoreLock, ensure_dir
        self.dir = ensure_dir(out_dir)
        self.csv = self.dir / "samples.csv"
        self.config = identity
        self.lock = StoreLock(self.dir / "samples.lock", "certify store").acquire()

    def close(self) -> None:
        """Release the folder's lock."""
        self.lock.release()

    def load(self) -> dict[int, dict]:
        """Rows already in ``samples.csv`` by index, after checking the stored identity."""
        cfg_path = self.dir / "config.json"
        if cfg_path.exists():
            old = _read_config(cfg_path)
            diff = [k for k in self.config if old.get(k) != self.config[k]]
            if diff:
                raise ConfigError(f"{self.dir} holds results of another run (different {', '.join(diff)}); "
                                  "use a new --out folder")
        elif self.csv.exists():
            raise ConfigError(f"{self.csv} has no config.json beside it, so it cannot be told which run it "
                              "belongs to; move it away or use a new --out folder")
        else:
            cfg_path.write_text(json.dumps(self.config, indent=1))
        from certprune.verifiers.store_lock import drop_partial_line
        if not self.csv.exists():
            return {}
        drop_partial_line(self.csv)
        rows = {}
        for r in csv.DictReader(open(self.csv, newline="")):
            if r.get("verdict") in VERDICTS:  # a row cut off by a crash is redone
                r = {**r, "index": int(r["index"]), "label": int(r["label"]), "predicted": int(r["predicted"]),
                     "clean_correct": _true(r["clean_correct"]), "pgd_robust": _true(r["pgd_robust"])}
                rows[r["index"]] = r
        return rows

    def append(self, row: dict) -> None:
        new = not self.csv.exists() or self.csv.stat().st_size == 0
        with open(self.csv, "a", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)
            f.flush()

    def write_summary(self, report: RobustnessReport) -> None:
        (self.dir / "summary.json").write_text(json.dumps({**self.config, **report.summary()}, indent=1))

    def save_adversarial(self, index: int, x: np.ndarray) -> str:
        """Write ``adversarial/<index>.npy`` (float32); returns that path relative to the folder."""
        rel = f"adversarial/{int(index)}.npy"
        (self.dir / "adversarial").mkdir(exist_ok=True)
        np.save(self.dir / rel, np.asarray(x, dtype=np.float32))
        return rel

    def write_grid(self, X: np.ndarray, idx: np.ndarray) -> None:
        """``adversarial/grid.png`` over the asked samples with a saved adversarial input (images only)."""
        from certprune.report.evidence import adversarial_grid, is_image_shape
        found = [(k, self.dir / "adversarial" / f"{int(i)}.npy") for k, i in enumerate(idx)]
        found = [(k, f) for k, f in found if f.exists()]
        if not found or not is_image_shape(tuple(X.shape[1:])):
            return
        clean = [X[k] for k, _ in found]
        adv = [np.load(f).reshape(X.shape[1:]) for _, f in found]
        png = adversarial_grid(clean, adv, [f"#{int(idx[k])}" for k, _ in found], tuple(self.config["clip"]))
        (self.dir / "adversarial" / "grid.png").write_bytes(png)


def _read_config(path: Path) -> dict:
    """The stored identity, or ConfigError when ``config.json`` is not a JSON object."""
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is corrupt ({e}); delete the folder or use a new --out") from None
    if not isinstance(old, dict):
        raise ConfigError(f"{path} is corrupt (not a JSON object); delete the folder or use a new --out")
    return old


def _module_digest(net) -> str:
    """Hash of the weights, for models that did not come from a file."""
    import hashlib
    h = hashlib.sha256()
    for t in net.module.state_dict().values():
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()
