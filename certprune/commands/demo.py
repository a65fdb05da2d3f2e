"""``certprune demo [--out DIR] [--timeout S] [--undecided-tolerance P] [--workers N]``: audit the
bundled German-credit model for age over Fairify's whole German domain (one partition, certprune's
default) and write the report into ./demo_out. The audit refines undecided boxes until
``--undecided-tolerance`` (default 0) is met or the budget ends; the bundled model is hard (about
9 % of its individuals are unfair by sampling, along a decision boundary that crosses the whole
domain), so within the short budget (``--timeout`` default 15 s) it proves about 1.4 % of the
individuals fair (1.3e13 of 8.7e14, measured at commit 525de97 on a loaded 2-core machine) and
shows counterexamples and the report. On Fairify's
grid (T = 100, 201 partitions) the same budget is spread over 201 boxes and proves none.

Needs no data download: the model and its schema ship inside the package. Exit codes as for
``certprune fairness`` (0 fully decided, 3 some partitions undecided, 2 bad input).
"""
from __future__ import annotations

import argparse
from pathlib import Path


UNDECIDED_TOLERANCE = 0.0  # share of the domain the demo may leave undecided (as in fairness)
TIMEOUT = 15.0  # default budget, seconds: the audit refines until the budget ends


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output directory (default ./demo_out)")
    p.add_argument("--timeout", type=float, default=TIMEOUT, help=f"global budget in seconds (default {TIMEOUT:g})")
    p.add_argument("--undecided-tolerance", type=float, default=UNDECIDED_TOLERANCE, metavar="P",
                   help=f"stop once at most this share of the domain is undecided (default {UNDECIDED_TOLERANCE:g}: "
                        "refine until complete or out of time)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def bundled_german_model() -> Path:
    """Path of the bundled German-credit model (certprune/models/german*.onnx)."""
    from certprune.errors import ModelLoadError
    models = Path(__file__).resolve().parents[1] / "models"
    found = sorted(models.glob("german*.onnx"))
    if not found:
        raise ModelLoadError(f"no bundled German-credit model (german*.onnx) in {models}")
    return found[0]


def run(args: argparse.Namespace) -> int:
    from certprune.commands.fairness import EXIT_UNDECIDED, print_summary
    from certprune.datasets.tabular import get_schema
    from certprune.fairness_spec import FairnessSpec
    from certprune.network import load_model
    from certprune.verifiers.fairness import audit_fairness
    from certprune.verifiers.parallel import check_workers
    check_workers(args.workers, None, "--workers")
    path = bundled_german_model()
    spec = FairnessSpec.from_schema(get_schema("german"), ("age",), name="german (bundled model)")
    print(f"certprune demo: auditing {path.name} for age on German credit (whole domain, {args.timeout:g} s)")
    res = audit_fairness(load_model(path), spec, None, timeout=args.timeout, workers=args.workers,
                         out_dir=args.out, progress=not args.no_progress,
                         undecided_tolerance=args.undecided_tolerance)
    print_summary(res.summary, args.out)
    cex = Path(args.out) / "counterexamples_decoded.csv"
    if len(res.counterexamples):
        import pandas as pd
        d = pd.read_csv(cex).head(3)
        show = ["partition", "x.age", "x_prime.age", "x.credit_amount", "x.month", "logit_x", "logit_x_prime"]
        print("first counterexamples (decoded):")
        print(d[[c for c in show if c in d.columns]].to_string(index=False))
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0 if res.summary["fully_decided"] else EXIT_UNDECIDED
