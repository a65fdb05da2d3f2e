"""The ``certprune`` command. Each sub-command lives in ``certprune/commands/<name>.py`` and
provides ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their
sub-command runs, so start-up stays fast.

Exit codes: 0 success / decided; 2 usage or input error (one clear line on stderr; with --debug
the traceback is printed too, the exit code stays 2); other codes are documented by each
sub-command (e.g. verify: 3 unknown/timeout). Besides certprune's own errors, file-system errors
(OSError), a corrupt SQLite store (sqlite3.Error) and unreadable JSON (json.JSONDecodeError) are
input errors, and so is running out of memory (MemoryError: a size the machine cannot hold).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "info": "show a model's layers, parameter count and input shape",
    "bounds": "print output bounds of a model over a VNN-LIB property's input box",
    "verify": "decide a VNN-LIB property (VNN-COMP result format)",
    "certify": "certified accuracy of a classifier over a data set",
    "compare": "certify a dense model and its pruned variants: one table, plots and an HTML page",
    "fairness": "audit individual fairness of a tabular model over its whole domain",
    "prune": "prune a model (structured or unstructured) and export ONNX + manifest",
    "demo": "the main job on the bundled default model (no download needed)",
    "bench": "run every instance of a VNN-COMP instances.csv, resumable, with a summary table",
}
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit 2
        self.exit(EXIT_USAGE, f"certprune: error: {message}\n")


def _command_module(name: str):
    return importlib.import_module(f"certprune.commands.{name}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Top-level parser; only the chosen sub-command's module is imported."""
    parser = _Parser(prog="certprune", description="Prune ReLU networks, certify robustness and fairness.")
    parser.add_argument("--debug", action="store_true", help="also print the traceback of an error (exit code unchanged)")
    parser.add_argument("--version", action="version", version=f"certprune {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _command_module(name).add_arguments(p)
    return parser


def _version() -> str:
    """The installed package's version (``certprune.__version__`` when run from a checkout)."""
    from certprune import __version__
    return __version__


def _input_errors() -> tuple[type[BaseException], ...]:
    """Exception types reported as bad input: one line on stderr, exit code 2."""
    import json
    import sqlite3

    from certprune.errors import CertpruneError
    return (CertpruneError, OSError, sqlite3.Error, json.JSONDecodeError)


def _describe(e: BaseException) -> str:
    """One line naming the problem: certprune's message, or the OS / SQLite / JSON error and its file."""
    import json
    import sqlite3

    from certprune.errors import CertpruneError
    if isinstance(e, CertpruneError):
        return str(e)
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    if isinstance(e, sqlite3.Error):
        return f"SQLite store: {e} (corrupt or truncated file? use another --out)"
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON: {e}"
    return str(e) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the ``certprune`` command line; returns the exit code (see module doc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from certprune.heap import keep_heap
    keep_heap()
    try:
        return int(_command_module(args.command).run(args) or 0)
    except _input_errors() as e:
        if isinstance(e, BrokenPipeError):  # e.g. `certprune info M | head`: stop quietly like other Unix tools
            import os
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if args.debug:
            import traceback
            traceback.print_exc()
        print(f"certprune: error: {_describe(e).replace(chr(10), ' ')}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as e:  # a size this machine cannot hold: the same one line and exit code as bad input
        if args.debug:
            import traceback
            traceback.print_exc()
        print(f"certprune: error: out of memory ({str(e)[:160] or 'MemoryError'}); try smaller sizes or budgets "
              "(e.g. attack_samples, batch, input_batch, queue_cap of verify's --config)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("certprune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
