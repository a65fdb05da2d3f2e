"""``certprune certify MODEL (--dataset digits|mnist|cifar10 | --data FILE) --eps E [-n N] [--timeout S] --out DIR``.

Clean, PGD and certified accuracy of a classifier on the held-out split of a data set, with
per-sample verdicts in ``DIR/samples.csv`` and totals in ``DIR/summary.json``; rerunning into the
same DIR resumes (finished samples are skipped). Default samples: the held-out part the bundled
models were not trained on: digits images 1500..1796, MNIST test images 8000..9999, all 100
CIFAR-10 test images (``--offset`` changes the start). ``MODEL`` may be ``default``: the bundled
digits / MNIST MLP, or for cifar10 the public OVAL21 base convnet from the shared data with its
normalisation (see ``certprune.datasets.cifar10``).

A user's own test set: ``--data FILE`` (.npz with X, y; .npy with ``--labels y.npy``; .csv with a
``--label-column``, default ``label``), all of it unless ``--offset``/``-n`` say otherwise. Inputs,
``eps`` and ``--input-range LO,HI`` (default 0,1) are in the data's units; ``--mean``/``--std`` (one
value or one per channel) are applied inside the model, ``model((x - mean) / std)``
(``certprune.datasets.user_data``). Inputs whose shape does not fit the model are refused.

``--eps`` must lie in [0, HI - LO]; ``-n`` may not reach past the end of the data set (an error
says how many samples remain). Falsified samples leave their float32-checked adversarial input in
``DIR/adversarial/<index>.npy`` (and ``grid.png`` for images). ``--workers N`` verifies in N local
processes, ``--ray ADDRESS`` on a Ray cluster; verdicts equal a serial run's. A rerun with another
model, eps, timeout, data set, offset or n into the same ``--out`` is refused, and so is a second
run on the same ``--out`` while the first is running. Exit code 0 when the run finished, 2 on bad
input.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HELD_OUT = {"digits": 1500, "mnist": 8000, "cifar10": 0}
_BUNDLED = {"digits": "digits_mlp.onnx", "mnist": "mnist_mlp.onnx"}


@dataclass(frozen=True)
class Inputs:
    """The samples of one run: ``X[start:stop]``, their name in stores and the ball's clip range."""

    X: np.ndarray
    y: np.ndarray
    start: int
    stop: int
    name: str
    clip: tuple[float, float]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="classifier file (.onnx, .onnx.gz, .h5, .pt), or 'default' (see --dataset)")
    add_data_arguments(p)
    add_run_arguments(p)
    p.add_argument("--out", required=True, help="output folder (samples.csv, summary.json); reruns resume")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The data options shared by certify and compare."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=sorted(HELD_OUT), help="a named data set")
    src.add_argument("--data", metavar="FILE", help="your test set: .npz (X, y), .npy (with --labels) or .csv")
    p.add_argument("--labels", metavar="FILE", help="labels .npy for an .npy --data file")
    p.add_argument("--label-column", default="label", help="label column of a CSV --data file (default label)")
    p.add_argument("--input-range", default="0,1", metavar="LO,HI",
                   help="range of valid inputs, in the data's units (default 0,1); the eps-ball is clipped to it")
    p.add_argument("--mean", help="normalisation the model expects, applied inside it: (x - mean) / std; "
                                  "one value or one per channel")
    p.add_argument("--std", help="see --mean")
    p.add_argument("-n", type=int, default=None, help="number of samples (default: the whole held-out split)")
    p.add_argument("--offset", type=int, default=None,
                   help="index of the first sample (default: start of the held-out split; 0 for --data)")
    p.add_argument("--data-dir", default=None, help="data root (default: $CERTPRUNE_DATA or ../shared/data)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The certification options shared by certify and compare."""
    p.add_argument("--eps", type=float, required=True, help="L-inf radius in input units (pixels: [0, 1])")
    p.add_argument("--timeout", type=float, default=10.0, help="verification seconds per sample (default 10)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small networks gain little from more, and on a "
                        "busy machine 2 threads ran PGD 30x slower than 1 in our measurement)")
    add_scaleout_arguments(p, "verification")
    from certprune.semantics import CHOICES, DEFAULT
    p.add_argument("--semantics", choices=CHOICES, default=DEFAULT.value,
                   help=f"soundness policy (default {DEFAULT.value}; see 'certprune verify --help'): exact = the "
                        "real-arithmetic network; float32 = also holds for float32 execution (chain MLPs only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_scaleout_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """``--workers N`` and ``--ray ADDRESS`` (certify, compare, bench; checked by :func:`check_scaleout`)."""
    p.add_argument("--workers", type=int, default=1, help=f"local worker processes for {what} (default 1)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help=f"{what} as tasks on the Ray cluster at ADDRESS ('local' starts one in this process)")


def check_scaleout(args: argparse.Namespace) -> None:
    """ConfigError unless ``--workers`` is valid for this machine and not given with ``--ray``
    (``parallel.check_workers``)."""
    from certprune.verifiers.parallel import check_workers
    check_workers(args.workers, args.ray, "--workers")


def run(args: argparse.Namespace) -> int:
    from certprune.verifiers.robustness import certify_robustness

    inputs = load_inputs(args)
    check_run_arguments(args, inputs)
    net = load_network(args.model, args)
    X = fit_inputs(inputs, net)
    rep = certify_robustness(net, X, inputs.y[inputs.start:inputs.stop], args.eps, timeout=args.timeout,
                             out_dir=args.out, indices=range(inputs.start, inputs.stop),
                             progress=not args.no_progress, dataset=inputs.name, clip=inputs.clip,
                             workers=args.workers, ray_address=args.ray, semantics=args.semantics)
    c = rep.counts
    print(f"{inputs.name} samples {inputs.start}..{inputs.stop - 1} (n={rep.n}), eps={args.eps:g}, "
          f"timeout {args.timeout:g} s/sample, semantics {rep.semantics}")
    print(f"clean accuracy     {rep.clean_accuracy:.4f}")
    print(f"PGD accuracy       {rep.pgd_accuracy:.4f}")
    print(f"certified accuracy {rep.certified_accuracy:.4f}  (certified {c['certified']}, falsified "
          f"{c['falsified']}, unknown {c['unknown']}, misclassified {c['misclassified']})")
    print(f"verification time  {rep.seconds['verify_total']:.1f} s total, median {rep.seconds['verify_median']:.2f} s; "
          f"this run {rep.seconds['this_run']:.1f} s -> {args.out}")
    return 0


def load_inputs(args: argparse.Namespace) -> Inputs:
    """The named data set or the user's file, with offset / n / input range checked (ConfigError, DatasetError)."""
    from certprune.datasets.user_data import check_range, load_data_file, parse_floats
    from certprune.errors import ConfigError

    if args.data is not None:
        X, y = load_data_file(args.data, args.labels, args.label_column)
        name, default_start = f"file:{Path(args.data).name}", 0
    else:
        if args.labels is not None:
            raise ConfigError("--labels goes with --data FILE.npy, not with --dataset")
        X, y = _dataset(args.dataset, args.data_dir)
        name, default_start = args.dataset, HELD_OUT[args.dataset]
    rng = parse_floats(args.input_range, "--input-range")
    if len(rng) != 2:
        raise ConfigError(f"--input-range takes LO,HI, got {args.input_range!r}")
    check_range(X, rng[0], rng[1], name)
    start = default_start if args.offset is None else args.offset
    if not 0 <= start < len(X):
        raise ConfigError(f"--offset {start} is outside the {len(X)} images of {name}")
    if args.n is not None and args.n < 1:
        raise ConfigError(f"-n must be >= 1, got {args.n}")
    if args.n is not None and start + args.n > len(X):
        raise ConfigError(f"-n {args.n} from offset {start} goes past the {len(X)} images of {name}: "
                          f"at most -n {len(X) - start}")
    stop = len(X) if args.n is None else start + args.n
    return Inputs(X, y, start, stop, name, (float(rng[0]), float(rng[1])))


def check_run_arguments(args: argparse.Namespace, inputs: Inputs) -> None:
    """eps within the input range's width, threads and workers >= 1, torch threads set."""
    from certprune.errors import ConfigError

    width = inputs.clip[1] - inputs.clip[0]
    units = "pixel units" if inputs.clip == (0.0, 1.0) else "input units"
    if not 0.0 <= args.eps <= width:
        raise ConfigError(f"--eps must lie in [0, {width:g}] ({units}), got {args.eps:g}")
    from certprune.verifiers.verify import MAX_THREADS
    if not 1 <= args.threads <= MAX_THREADS:
        raise ConfigError(f"--threads must lie in 1..{MAX_THREADS}, got {args.threads}")
    check_scaleout(args)
    import torch
    torch.set_num_threads(args.threads)


def load_network(model: str, args: argparse.Namespace):
    """The model file (or ``default``) wrapped with ``--mean``/``--std`` (the OVAL21 constants for
    the default CIFAR-10 model)."""
    from certprune.datasets.user_data import parse_floats, with_normalization
    from certprune.errors import ConfigError
    from certprune.network import load_model

    mean = None if args.mean is None else parse_floats(args.mean, "--mean")
    std = None if args.std is None else parse_floats(args.std, "--std")
    if model != "default":
        return with_normalization(load_model(model), mean, std)
    if args.dataset is None:
        raise ConfigError("MODEL 'default' needs a named --dataset (digits, mnist or cifar10)")
    if mean is not None or std is not None:
        raise ConfigError("MODEL 'default' comes with its own normalisation; drop --mean/--std")
    if args.dataset == "cifar10":
        from certprune.datasets.cifar10 import OVAL21_MEAN, OVAL21_STD, default_model_path
        return with_normalization(load_model(default_model_path(args.data_dir)), OVAL21_MEAN, OVAL21_STD)
    return load_model(Path(__file__).resolve().parents[1] / "models" / _BUNDLED[args.dataset])


def fit_inputs(inputs: Inputs, net) -> np.ndarray:
    """The run's samples shaped for the model (ShapeMismatchError when they do not fit)."""
    from certprune.datasets.user_data import fit_to_model
    return fit_to_model(inputs.X[inputs.start:inputs.stop], tuple(net.info.input_shape), inputs.name)


def _dataset(name: str, data_dir):
    from certprune.datasets import load_digits, load_mnist
    if name == "cifar10":
        from certprune.datasets.cifar10 import load_cifar10
        return load_cifar10(data_dir)
    return load_digits() if name == "digits" else load_mnist(data_dir)
