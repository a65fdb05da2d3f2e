"""``certprune certify MODEL --dataset digits|mnist --eps E [-n N] [--timeout S] --out DIR``.

Clean, PGD and certified accuracy of a classifier on the held-out split of a data set, with
per-sample verdicts in ``DIR/samples.csv`` and totals in ``DIR/summary.json``; rerunning into the
same DIR resumes (finished samples are skipped). Default samples: the held-out part the bundled
models were not trained on: digits images 1500..1796, MNIST test images 8000..9999
(``--offset`` changes the start). ``--eps`` must lie in [0, 1] (pixels are in [0, 1]); ``-n`` may
not reach past the end of the data set (an error says how many samples remain). A rerun with
another model, eps, timeout, data set, offset or n into the same ``--out`` is refused, and so is
a second run on the same ``--out`` while the first is running. Exit code 0 when the run
finished, 2 on bad input.
"""
from __future__ import annotations

import argparse

HELD_OUT = {"digits": 1500, "mnist": 8000}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="classifier file (.onnx, .onnx.gz, .h5, .pt); inputs in [0, 1]")
    p.add_argument("--dataset", required=True, choices=sorted(HELD_OUT))
    p.add_argument("--eps", type=float, required=True, help="L-inf radius in [0, 1] pixel units")
    p.add_argument("-n", type=int, default=None, help="number of samples (default: the whole held-out split)")
    p.add_argument("--offset", type=int, default=None,
                   help="index of the first sample (default: start of the held-out split)")
    p.add_argument("--timeout", type=float, default=10.0, help="verification seconds per sample (default 10)")
    p.add_argument("--data-dir", default=None, help="data root (default: $CERTPRUNE_DATA or ../shared/data)")
    p.add_argument("--out", required=True, help="output folder (samples.csv, summary.json); reruns resume")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small networks gain little from more, and on a "
                        "busy machine 2 threads ran PGD 30x slower than 1 in our measurement)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from certprune.errors import ConfigError
    from certprune.network import load_model
    from certprune.verifiers.robustness import certify_robustness

    X, y = _dataset(args.dataset, args.data_dir)
    start = HELD_OUT[args.dataset] if args.offset is None else args.offset
    if not 0 <= start < len(X):
        raise ConfigError(f"--offset {start} is outside the {len(X)} images of {args.dataset}")
    if not 0.0 <= args.eps <= 1.0:
        raise ConfigError(f"--eps must lie in [0, 1] (pixel units), got {args.eps:g}")
    if args.n is not None and args.n < 1:
        raise ConfigError(f"-n must be >= 1, got {args.n}")
    if args.n is not None and start + args.n > len(X):
        raise ConfigError(f"-n {args.n} from offset {start} goes past the {len(X)} images of {args.dataset}: "
                          f"at most -n {len(X) - start}")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    import torch
    torch.set_num_threads(args.threads)
    stop = len(X) if args.n is None else start + args.n
    model = load_model(args.model)
    rep = certify_robustness(model, X[start:stop], y[start:stop], args.eps, timeout=args.timeout, out_dir=args.out,
                             indices=range(start, stop), progress=not args.no_progress,
                             dataset=args.dataset)
    c = rep.counts
    print(f"{args.dataset} samples {start}..{stop - 1} (n={rep.n}), eps={args.eps:g}, timeout {args.timeout:g} s/sample")
    print(f"clean accuracy     {rep.clean_accuracy:.4f}")
    print(f"PGD accuracy       {rep.pgd_accuracy:.4f}")
    print(f"certified accuracy {rep.certified_accuracy:.4f}  (certified {c['certified']}, falsified "
          f"{c['falsified']}, unknown {c['unknown']}, misclassified {c['misclassified']})")
    print(f"verification time  {rep.seconds['verify_total']:.1f} s total, median {rep.seconds['verify_median']:.2f} s; "
          f"this run {rep.seconds['this_run']:.1f} s -> {args.out}")
    return 0


def _dataset(name: str, data_dir):
    from certprune.datasets import load_digits, load_mnist
    return load_digits() if name == "digits" else load_mnist(data_dir)
