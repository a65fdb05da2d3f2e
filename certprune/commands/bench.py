"""``certprune bench INSTANCES.csv [--timeout-cap S] [--out DIR] [--reference RESULTS.csv]
[--workers N | --ray ADDRESS]``.

Runs every instance of a VNN-COMP ``instances.csv`` in this process (start-up paid once), or in
N local worker processes / as Ray tasks (``certprune.verifiers.parallel``; this process alone
writes the results), with a progress bar on stderr; rows are appended to ``DIR/results.csv`` as
they finish (a rerun skips them; see :mod:`certprune.verifiers.bench_store`), then a summary
table is printed and written to ``DIR/summary.json``. ``--reference`` compares with another tool's results (VNN-COMP results CSV)
and prints every disagreement (one says sat, the other unsat).

Exit codes: 0 every instance ran (whatever the verdicts), 4 a disagreement with the reference,
2 bad input (missing or malformed instances / reference / config file, a DIR of another run).
"""
from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_USAGE, EXIT_DISAGREE = 0, 2, 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    from certprune.commands.verify import add_config_arguments

    p.add_argument("instances", help="VNN-COMP instances.csv (onnx,vnnlib,timeout_seconds; paths relative to it)")
    p.add_argument("--timeout-cap", type=float, default=None, metavar="S",
                   help="at most S seconds per instance (default: each instance's own timeout)")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="results folder (default ./bench-results); rerunning into it resumes")
    p.add_argument("--reference", default=None, metavar="RESULTS.csv",
                   help="another tool's results (VNN-COMP results CSV) to compare with")
    from certprune.commands.certify import add_scaleout_arguments
    add_scaleout_arguments(p, "instances")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from certprune.commands.verify import config_from_args
    from certprune.errors import ConfigError
    from certprune.verifiers import bench

    if args.timeout_cap is not None and not args.timeout_cap > 0:
        raise ConfigError(f"--timeout-cap must be a positive number of seconds, got {args.timeout_cap}")
    from certprune.commands.certify import check_scaleout
    check_scaleout(args)
    config = config_from_args(args)
    instances = bench.read_instances(args.instances)
    reference = bench.read_reference(args.reference) if args.reference else None
    store = _open_store(args, config)
    try:
        rows = _run_with_bar(bench, instances, store, args, config)
    finally:
        store.close()
    summary = bench.summarize(rows)
    summary["semantics"] = config["semantics"]
    print(bench.format_summary(summary))
    code = EXIT_OK
    if reference is not None:
        cmp = bench.compare(rows, reference)
        summary["reference"] = _report_comparison(cmp, args.reference)
        code = EXIT_DISAGREE if cmp.disagreements else EXIT_OK
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return code


def _open_store(args: argparse.Namespace, config: dict):
    from certprune.verifiers.bench import run_identity
    from certprune.verifiers.bench_store import BenchStore

    return BenchStore(args.out, run_identity(args.instances, args.timeout_cap, config), config)


def _run_with_bar(bench, instances, store, args: argparse.Namespace, config: dict) -> list:
    """run_bench with a tqdm bar on stderr (verbose progress lines printed above it)."""
    import time

    from tqdm import tqdm

    from certprune.commands._progress import ProgressPrinter

    bar = tqdm(total=len(instances), file=sys.stderr, unit="inst", dynamic_ncols=True, desc="bench")
    counts: dict[str, int] = {}

    def on_row(row: dict, fresh: bool) -> None:
        counts[row["result"]] = counts.get(row["result"], 0) + 1
        bar.set_postfix(counts, refresh=False)
        bar.update(1)

    progress = None
    if args.verbose:
        printer = ProgressPrinter(time.monotonic(), verbose=True, stream=_TqdmStream())
        progress = printer
    try:
        return bench.run_bench(instances, store, args.timeout_cap, config, on_row, progress,
                               workers=args.workers, ray_address=args.ray)
    finally:
        bar.close()


class _TqdmStream:
    """A text stream whose lines are written above the progress bar."""

    def write(self, text: str) -> None:
        from tqdm import tqdm
        if text.strip():
            tqdm.write(text.rstrip("\n"), file=sys.stderr)

    def flush(self) -> None:
        sys.stderr.flush()


def _report_comparison(cmp, ref_path: str) -> dict:
    """Print every disagreement and the agreement counts; return them for summary.json."""
    for onnx, vnn, ours, theirs in cmp.disagreements:
        print(f"DISAGREE {onnx} {vnn}: certprune {ours}, reference {theirs}")
    print(f"reference {ref_path}: {cmp.agree} agree, {len(cmp.disagreements)} disagree, "
          f"{cmp.only_ours} decided only by certprune, {cmp.only_reference} only by the reference, "
          f"{cmp.missing} not in the reference")
    return {"file": ref_path, "agree": cmp.agree, "only_certprune": cmp.only_ours,
            "only_reference": cmp.only_reference, "missing": cmp.missing,
            "disagreements": [{"onnx": o, "vnnlib": v, "certprune": a, "reference": b}
                              for o, v, a, b in cmp.disagreements]}
