"""One VNN-COMP instance (model file + VNN-LIB file) decided to a result word.

``decide_instance`` is the one copy used by ``certprune verify``, ``certprune bench`` and the
experiment scripts. A VNN-LIB file can hold several input boxes (e.g. ACAS Xu property 6): the
instance is ``sat`` when any box is falsified, ``unsat`` when every box is certified; the time
budget is shared in order. A ``sat`` answer is re-checked here in float32 on the loaded model
(in the box, violating the property strictly where the property is strict) before it is returned.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

Progress = Callable[[dict], None]  # receives {"phase": ..., and phase-specific numbers}


@dataclass
class InstanceOutcome:
    """``word`` is a VNN-COMP result word; ``x`` / ``y`` (flat float32 values) only for ``sat``."""

    word: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    stats: dict = field(default_factory=dict)


def decide_instance(model_path: str, prop_path: str, timeout: float | None, start: float | None = None,
                    config: Mapping[str, Any] | None = None, progress: Progress | None = None,
                    model=None) -> InstanceOutcome:
    """Decide one instance within ``timeout`` seconds counted from ``start`` (a ``time.monotonic()``
    value; default now). ``config`` holds VerifyConfig fields. ``model`` (an already loaded Network
    for ``model_path``) skips loading. ``stats`` gets seconds since ``start`` after imports, after
    loading and at the first bound (``seconds_first_bound``: the root bound pass of the first box
    done; absent when the attack decided first), and each verify call's stats. Loading is not
    interruptible: when it leaves no time, the answer is ``timeout`` without a verify call."""
    from certprune.network import load_model
    from certprune.results import Verdict, merge
    from certprune.verifiers.verify import VerifyConfig, verify
    from certprune.vnnlib import property_for_model, read_vnnlib

    start = time.monotonic() if start is None else start
    cfg = VerifyConfig.from_dict(config)
    stats: dict = {"seconds_after_imports": time.monotonic() - start}
    _tell(progress, {"phase": "load"})
    model = load_model(model_path) if model is None else model
    shape, n_out = model.info.input_shape, model.info.num_outputs
    props = [property_for_model(p, shape, n_out)
             for p in read_vnnlib(prop_path, num_inputs=int(np.prod(shape)), num_outputs=n_out)]
    stats["seconds_after_loading"] = time.monotonic() - start
    stats["verify"] = []
    tell = _first_bound_stamp(stats, start, progress)
    words, parts = [], []
    for i, prop in enumerate(props):
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            words.append("timeout")
            break
        _tell(progress, {"phase": "property", "index": i + 1, "of": len(props)})
        res = verify(model, prop, timeout=left, config=cfg, progress=tell)
        stats["verify"].append(res.stats)
        if res.stats.get("phase") == "bound" and "time_bound" in res.stats:  # the root pass finished
            stats.setdefault("seconds_first_bound", time.monotonic() - start)
        parts.append(res.verdict)
        if res.verdict is Verdict.FALSIFIED:  # sat as soon as one box has a validated counterexample
            x, y = recheck(model, prop, res.counterexample)
            return InstanceOutcome("sat", x, y, stats)
        words.append(_word(res))
    whole = merge(parts + [Verdict.UNKNOWN] * (len(props) - len(parts)))  # boxes left unrun: unknown
    if whole is Verdict.CERTIFIED:
        return InstanceOutcome("unsat", stats=stats)
    return InstanceOutcome("timeout" if "timeout" in words else whole.vnncomp_word(), stats=stats)


def _first_bound_stamp(stats: dict, start: float, progress: Progress | None) -> Progress:
    """A progress callback that also stamps ``stats["seconds_first_bound"]`` when the first
    branch-and-bound phase starts (its root bound pass is done), then forwards the event."""
    def tell(event: dict) -> None:
        if event.get("phase") == "bab":
            stats.setdefault("seconds_first_bound", time.monotonic() - start)
        _tell(progress, event)
    return tell


def _tell(progress: Progress | None, event: dict) -> None:
    if progress is not None:
        progress(event)


def _word(res) -> str:
    """VNN-COMP word of one Result; UNKNOWN is ``timeout`` when the verifier ran out of time."""
    timed_out = res.stats.get("reason") == "timeout"
    return res.verdict.vnncomp_word(timed_out=timed_out)


def recheck(model, prop, cex) -> tuple[np.ndarray, np.ndarray]:
    """Belt and braces: the counterexample (float32) is in the box and violates the property on the
    loaded model; returns flat (x, y). A failed check is an internal error, never ``sat``."""
    from certprune.verifiers.problem import in_region_float32

    x = np.asarray(cex, dtype=np.float32).reshape(model.info.input_shape)
    y = model.run_float32(x)[0]
    # the same box test verify() uses: a coordinate may equal the float32 rounding of a bound
    # when no float32 number lies inside the box along that input (point boxes such as [0.1, 0.1]);
    # open (strict) bounds are excluded, and strict output rows must hold strictly (is_violated)
    inside = in_region_float32(prop.region, x)
    if not (inside.all() and prop.is_violated(y[None]).all()):
        raise RuntimeError("verifier returned a counterexample that does not violate the property in float32")
    return x.ravel(), y.ravel()
