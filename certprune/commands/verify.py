"""``certprune verify MODEL PROPERTY [--timeout S] [--results-file F] [--config FILE.toml] [--semantics exact|float32] [--verbose]``.

Prints the result word (``unsat`` / ``sat`` / ``timeout`` / ``unknown`` / ``error``) on stdout and
writes the VNN-COMP result file (see :mod:`certprune.vnncomp`). Exit codes: 0 decided (sat or
unsat), 3 undecided (timeout or unknown), 2 bad input (unreadable model, unknown VNN-LIB construct,
output index beyond the model, empty input box, a results file that cannot be written, a bad
config file, out of memory), 1 internal error.

``--timeout`` counts from the process start (interpreter start-up and imports included) when the
process is the ``certprune`` command, from the call otherwise (``cli.main`` inside another program).
In the ``certprune`` process a watchdog thread (:class:`Answer`) answers ``timeout`` at 99 % of
``--timeout`` and leaves, so phases that cannot be interrupted (loading a large convnet, one bound
pass) cannot make the process overrun it. The
effective configuration (``--config`` file, then ``--strategy`` / ``--threads`` / ``--semantics``) is written beside
the result file as ``<results-file>.config.toml``. With a ``--timeout`` the ``certprune`` process
leaves right after writing its results (as with ``--fast-exit``), skipping interpreter teardown. Progress goes to stderr: every phase with
``--verbose``, otherwise a line every few seconds once a run has lasted 5 s.
Heavy modules (torch, the verifier) are imported inside :func:`run`, after argument parsing.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

EXIT_DECIDED, EXIT_INTERNAL, EXIT_USAGE, EXIT_UNDECIDED = 0, 1, 2, 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file (.onnx, .onnx.gz, .h5, .pt)")
    p.add_argument("property", help="VNN-LIB 1.0 property file (.vnnlib or .vnnlib.gz)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds for the whole process, start-up and model loading included (default: no limit)")
    p.add_argument("--results-file", default=None, help="write the VNN-COMP result file here")
    p.add_argument("--stats-file", default=None,
                   help="write a JSON breakdown of the time (imports, model loading, each phase) here")
    p.add_argument("--fast-exit", action="store_true",
                   help="leave the process right after writing the results, skipping interpreter teardown "
                        "(0.5-4 s with torch loaded); for benchmark harnesses, never inside another program")
    add_config_arguments(p)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--threads``, ``--strategy``, ``--semantics`` and ``--verbose`` (shared with ``bench``)."""
    from certprune.semantics import CHOICES, DEFAULT

    p.add_argument("--config", default=None, metavar="FILE.toml",
                   help="verifier configuration: TOML 'key = value' lines, one per VerifyConfig field "
                        "(e.g. cert_margin = 1e-6); unknown keys are refused")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1: these small networks gain little from more, and on a "
                        "busy machine 2 threads ran PGD 30x slower than 1 in our measurement)")
    p.add_argument("--strategy", choices=("auto", "input", "relu"), default=None,
                   help="branching: input splitting, ReLU splitting, or chosen from the input size (default auto)")
    p.add_argument("--semantics", choices=CHOICES, default=None,
                   help=f"soundness policy (default {DEFAULT.value}): exact = the real-arithmetic network, float64 "
                        "bounds with a 1e-7 relative margin; float32 = the certificate also holds for float32 "
                        "execution (rigorous rounding-error bound; chain MLPs only)")
    p.add_argument("--verbose", action="store_true",
                   help="print each phase, the domains in the queue and the global bound on stderr")


def config_from_args(args: argparse.Namespace) -> dict:
    """Every VerifyConfig field: the --config file's values, then --strategy / --threads / --semantics on top."""
    from certprune.verifiers.config_file import effective_config, read_config_file
    from certprune.verifiers.verify import MAX_THREADS

    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise _config_error(f"--threads must lie in 1..{MAX_THREADS}, got {args.threads}")
    values = read_config_file(args.config) if args.config else {}
    if args.strategy is not None:
        values["strategy"] = args.strategy
    if args.threads is not None:
        values["threads"] = args.threads
    if getattr(args, "semantics", None) is not None:
        values["semantics"] = args.semantics
    return effective_config(values)


def run(args: argparse.Namespace) -> int:
    from certprune.commands._clock import command_start
    from certprune.errors import CertpruneError

    start = command_start()
    if args.results_file:
        check_writable(args.results_file, "--results-file")  # before any work: an answer is never lost
    if args.stats_file:
        check_writable(args.stats_file, "--stats-file")  # not after the answer was printed (then exit 2)
    args.answer = Answer()
    try:
        if args.timeout is not None and not args.timeout > 0:
            raise _config_error(f"--timeout must be a positive number of seconds, got {args.timeout}")
        if args.timeout is not None and is_certprune_process():
            args.answer.watch(args, start + WATCHDOG_SHARE * args.timeout)
        config = config_from_args(args)
        if args.results_file:
            from certprune.verifiers.config_file import write_config
            write_config(args.results_file + ".config.toml", config)
        out = decide_with_progress(args, config, start)
    except (CertpruneError, MemoryError):  # bad input (out of memory too): cli.main prints the one line, exit 2
        args.answer.give(args, "error")
        raise
    except Exception as e:  # internal error: one line, exit 1 (--debug shows the traceback)
        if getattr(args, "debug", False):
            raise
        args.answer.give(args, "error")
        print(f"certprune: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    args.answer.give(args, out.word, out.x, out.y)
    if args.stats_file:
        _write_stats(args.stats_file, out, start, config["semantics"])
    code = EXIT_DECIDED if out.word in ("sat", "unsat") else EXIT_UNDECIDED
    if _fast_exit(args):  # every file above is closed; only teardown is skipped
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


WATCHDOG_SHARE = 0.99  # the watchdog answers at this share of --timeout after the process start


class Answer:
    """The one answer of a ``verify`` process, given once: by the verifier, or by the watchdog.

    The verifier's own deadline (``verify``: 95 % of the time left) ends most runs, but model
    loading, the VNN-LIB parser and one bound pass on a large convnet are not interruptible, and
    on a loaded machine they overran a 30 s ``--timeout`` by up to 2.5x. So the ``certprune``
    process also starts a watchdog thread: at ``WATCHDOG_SHARE * --timeout`` after the process
    start it prints ``timeout``, writes the result file and leaves at once (``os._exit(3)``),
    unless the verifier answered first. ``timeout`` is always a sound answer. torch releases the
    GIL in its kernels and pure-Python loops yield it every few ms, so the thread runs on time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._given = False
        self._timer: threading.Timer | None = None

    def give(self, args: argparse.Namespace, word: str, x=None, y=None) -> bool:
        """Print / write ``word`` unless an answer was given already; True when this call gave it."""
        with self._lock:
            if self._given:
                return False
            self._given = True
            if self._timer is not None:
                self._timer.cancel()
            _finish(args, word, x, y)
            return True

    def watch(self, args: argparse.Namespace, at: float) -> None:
        """Start the watchdog thread that answers ``timeout`` at ``time.monotonic()`` value ``at``."""
        t = threading.Timer(max(0.0, at - time.monotonic()), self._fire, args=(args,))
        t.daemon = True
        self._timer = t
        t.start()

    def _fire(self, args: argparse.Namespace) -> None:
        with self._lock:
            if self._given:
                return
            self._given = True
            try:
                _finish(args, "timeout")
                if args.stats_file:
                    _write_json(args.stats_file, {"result": "timeout", "watchdog": True})
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_UNDECIDED)


def is_certprune_process() -> bool:
    from certprune.commands._clock import is_certprune_process as check
    return check()


def _fast_exit(args: argparse.Namespace) -> bool:
    """Skip interpreter teardown when asked, or when a --timeout binds the ``certprune`` process
    itself (teardown with torch loaded takes 0.3-4 s, which the timeout would not cover)."""
    return bool(getattr(args, "fast_exit", False)) or (args.timeout is not None and is_certprune_process())


def decide_with_progress(args: argparse.Namespace, config: dict, start: float):
    """Run the instance with a stderr progress printer (see module doc)."""
    from certprune.commands._progress import ProgressPrinter
    from certprune.verifiers.instance import decide_instance

    printer = ProgressPrinter(start, verbose=args.verbose)
    return decide_instance(args.model, args.property, args.timeout, start, config, printer)


def check_writable(path: str, flag: str) -> None:
    """ConfigError (exit 2) unless ``path`` can be written as a file: not a directory, and its
    nearest existing parent folder writable."""
    p = Path(path)
    if p.is_dir():
        raise _config_error(f"{flag} {path} is a directory; give a file name")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise _config_error(f"{flag} {path} is not writable")
        return
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise _config_error(f"{flag} {path}: cannot create a file in {parent}")


def _write_stats(path: str, out, start: float, semantics: str) -> None:
    stats = dict(out.stats, seconds_total=time.monotonic() - start)
    stats.setdefault("semantics", semantics)
    _write_json(path, {"result": out.word, **stats})


def _write_json(path: str, data: dict) -> None:
    import json
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=str)


def _config_error(msg: str):
    from certprune.errors import ConfigError
    return ConfigError(msg)


def _finish(args, word: str, x=None, y=None) -> None:
    """Print the word; write the result file when asked."""
    print(word, flush=True)
    if args.results_file:
        from certprune.vnncomp import write_result
        write_result(args.results_file, word, x, y)
