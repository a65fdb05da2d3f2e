"""The ``certprune`` command. Each sub-command lives in ``certprune/commands/<name>.py`` and
provides ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their
sub-command runs, so start-up stays fast.

Exit codes: 0 success / decided; 2 usage or input error (one clear line on stderr, traceback only
with --debug); other codes are documented by each sub-command (e.g. verify: 3 unknown/timeout).
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
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _command_module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from certprune.errors import CertpruneError
    try:
        return int(_command_module(args.command).run(args) or 0)
    except CertpruneError as e:
        if args.debug:
            raise
        print(f"certprune: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("certprune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `certprune info M | head`: stop quietly like other Unix tools
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
