"""``certprune verify MODEL PROPERTY [--timeout S] [--results-file F]``: one VNN-COMP instance.

Prints the result word (``unsat`` / ``sat`` / ``timeout`` / ``unknown`` / ``error``) on stdout and
writes the VNN-COMP result file (see :mod:`certprune.vnncomp`). Exit codes: 0 decided (sat or
unsat), 3 undecided (timeout or unknown), 2 bad input (unreadable model, unknown VNN-LIB construct,
output index beyond the model, empty input box), 1 internal error.

A file can hold several input boxes (e.g. ACAS Xu property 6): the instance is ``sat`` when any
box is falsified, ``unsat`` when every box is certified; the time budget is shared in order.
Heavy modules (torch, the verifier) are imported inside :func:`run`, after argument parsing.
"""
from __future__ import annotations

import argparse
import sys
import time

EXIT_DECIDED, EXIT_INTERNAL, EXIT_USAGE, EXIT_UNDECIDED = 0, 1, 2, 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file (.onnx, .onnx.gz, .h5, .pt)")
    p.add_argument("property", help="VNN-LIB 1.0 property file (.vnnlib or .vnnlib.gz)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds for the whole instance, model loading included (default: no limit)")
    p.add_argument("--results-file", default=None, help="write the VNN-COMP result file here")
    p.add_argument("--stats-file", default=None,
                   help="write a JSON breakdown of the time (imports, model loading, each phase) here")
    p.add_argument("--fast-exit", action="store_true",
                   help="leave the process right after writing the results, skipping interpreter teardown "
                        "(0.5-4 s with torch loaded); for benchmark harnesses, never inside another program")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small networks gain little from more, and on a "
                        "busy machine 2 threads ran PGD 30x slower than 1 in our measurement)")
    p.add_argument("--strategy", choices=("auto", "input", "relu"), default="auto",
                   help="branching: input splitting, ReLU splitting, or chosen from the input size")


def run(args: argparse.Namespace) -> int:
    from certprune.errors import CertpruneError

    start = time.monotonic()
    if args.timeout is not None and not args.timeout > 0:
        _finish(args, "error")
        raise _config_error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.threads < 1:
        _finish(args, "error")
        raise _config_error(f"--threads must be >= 1, got {args.threads}")
    try:
        stats: dict = {}
        word, x, y = decide(args.model, args.property, args.timeout, start, args.strategy, stats, args.threads)
    except CertpruneError:
        _finish(args, "error")
        raise
    except Exception as e:  # internal error: one line, exit 1 (--debug shows the traceback)
        if getattr(args, "debug", False):
            raise
        _finish(args, "error")
        print(f"certprune: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    _finish(args, word, x, y)
    if args.stats_file:
        import json
        stats["seconds_total"] = time.monotonic() - start
        with open(args.stats_file, "w") as f:
            json.dump({"result": word, **stats}, f, indent=1, default=str)
    code = EXIT_DECIDED if word in ("sat", "unsat") else EXIT_UNDECIDED
    if getattr(args, "fast_exit", False):  # every file above is closed; only teardown is skipped
        import os
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _config_error(msg: str):
    from certprune.errors import ConfigError
    return ConfigError(msg)


def _finish(args, word: str, x=None, y=None) -> None:
    """Print the word; write the result file when asked."""
    print(word, flush=True)
    if args.results_file:
        from certprune.vnncomp import write_result
        write_result(args.results_file, word, x, y)


def decide(model_path: str, prop_path: str, timeout: float | None, start: float | None = None,
           strategy: str = "auto", stats: dict | None = None, threads: int | None = None):
    """(word, x, y) for one instance; x/y (flat float32 values) only for ``sat``. ``stats`` (if
    given) receives seconds since ``start`` after imports and after loading, and each verify's stats."""
    import numpy as np

    from certprune.network import load_model
    from certprune.vnnlib import property_for_model, read_vnnlib
    from certprune.verifiers.verify import verify

    start = time.monotonic() if start is None else start
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    stats = {} if stats is None else stats
    stats["seconds_after_imports"] = time.monotonic() - start
    model = load_model(model_path)
    shape, n_out = model.info.input_shape, model.info.num_outputs
    props = [property_for_model(p, shape, n_out)
             for p in read_vnnlib(prop_path, num_inputs=int(np.prod(shape)), num_outputs=n_out)]
    stats["seconds_after_loading"] = time.monotonic() - start
    stats["verify"] = []
    words = []
    for prop in props:
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            words.append("timeout")
            break
        res = verify(model, prop, timeout=left, config={"strategy": strategy})
        stats["verify"].append(res.stats)
        if res.verdict.value == "falsified":
            x, y = _recheck(model, prop, res.counterexample)
            return "sat", x, y
        words.append(_word(res))
    if words and all(w == "unsat" for w in words) and len(words) == len(props):
        return "unsat", None, None
    return ("timeout" if "timeout" in words else "unknown"), None, None


def _word(res) -> str:
    """VNN-COMP word of one Result; UNKNOWN is ``timeout`` when the verifier ran out of time."""
    timed_out = res.stats.get("reason") == "timeout"
    return res.verdict.vnncomp_word(timed_out=timed_out)


def _recheck(model, prop, cex):
    """Belt and braces: the counterexample (float32) is in the box and violates the property on the
    loaded model; returns flat (x, y). A failed check is an internal error, never ``sat``."""
    import numpy as np

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
