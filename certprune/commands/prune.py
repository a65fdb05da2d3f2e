"""``certprune prune MODEL --method NAME --amount A [--granularity G] [--finetune-epochs E]
--dataset digits|mnist [--epsilon E] --out PRUNED.onnx``.

Scores, fine-tuning data: the training part of the data set (digits images 0..1499, MNIST test
images 0..7999, the parts the bundled models were trained on); accuracy is reported on the rest.
Writes PRUNED.onnx and PRUNED.manifest.json (the manifest is also stored in the ONNX metadata).
``--out`` must not be the input model (refused unless ``--force``) nor a directory; both are
checked before any work. Defaults a newcomer can rely on: ``--finetune-epochs`` of
``DEFAULT_FINETUNE_EPOCHS`` (fine-tuning on the training part after pruning, so accuracy is
kept), and for stability scores or the stability loss an ``--epsilon`` of the data set's usual
radius (``DEFAULT_EPSILON``). A warning
goes to stderr when held-out accuracy drops by more than 5 points. Exit code 0 on success, 2 on
bad input.
"""
from __future__ import annotations

import argparse
import sys

TRAIN_END = {"digits": 1500, "mnist": 8000}
GRANULARITIES = ("unstructured", "nm", "neuron", "channel", "structured")
# the L-inf radius (pixels in [0, 1]) of the README's certify tables for the bundled models
DEFAULT_EPSILON = {"digits": 0.02, "mnist": 0.02}
# fine-tuning epochs that keep held-out accuracy (magnitude, 50% of neurons: digits 0.91 -> 0.90 with 20,
# MNIST 0.955 -> 0.954 with 3; about 250 optimiser steps either way; 0 epochs: 0.31 and 0.58)
DEFAULT_FINETUNE_EPOCHS = {"digits": 20, "mnist": 3}
ACCURACY_DROP_WARNING = 0.05


def add_arguments(p: argparse.ArgumentParser) -> None:
    from certprune.commands._model_args import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--method", required=True, help="random, magnitude, l1, l2, taylor, obd, snip, slimming, stability")
    p.add_argument("--amount", type=float, default=None, help="fraction in [0, 1) of weights/units to remove")
    p.add_argument("--granularity", default="unstructured", choices=GRANULARITIES)
    p.add_argument("--structured", action="store_true", help="same as --granularity structured")
    p.add_argument("--n", type=int, default=2, help="N of N:M sparsity (default 2)")
    p.add_argument("--m", type=int, default=4, help="M of N:M sparsity (default 4)")
    p.add_argument("--scope", choices=("global", "local"), default=None,
                   help="one threshold over all layers or one per layer (default: global for unstructured and "
                        "stability, local otherwise)")
    p.add_argument("--min-keep", type=float, default=0.0,
                   help="fraction of every layer's units that is never removed (default 0)")
    p.add_argument("--steps", type=int, default=1, help="iterative prune/fine-tune steps (default 1: one-shot)")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="epochs of fine-tuning on the training part after each step (default "
                        f"{DEFAULT_FINETUNE_EPOCHS['digits']} on digits, {DEFAULT_FINETUNE_EPOCHS['mnist']} on mnist, "
                        "which keeps held-out accuracy; 0 = none)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--stability-weight", type=float, default=0.0, help="weight of the stability loss in fine-tuning")
    p.add_argument("--dataset", required=True, choices=sorted(TRAIN_END))
    p.add_argument("--data-dir", default=None, help="data root (default: $CERTPRUNE_DATA or ../shared/data)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="L-inf radius for stability scores and loss (default for --method stability or "
                        f"--stability-weight > 0: {DEFAULT_EPSILON['digits']:g} on digits and "
                        f"{DEFAULT_EPSILON['mnist']:g} on mnist)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output ONNX path; the manifest goes next to it")
    p.add_argument("--force", action="store_true", help="allow --out to overwrite the input model")


def run(args: argparse.Namespace) -> int:
    import torch

    from certprune.commands._model_args import load_from_args
    from certprune.pruning.api import prune
    from certprune.pruning.export import save_pruned

    check_out(args.model, args.out, args.force)
    if args.finetune_epochs is None:
        args.finetune_epochs = DEFAULT_FINETUNE_EPOCHS[args.dataset]
    if args.finetune_epochs < 0:
        from certprune.errors import ConfigError
        raise ConfigError(f"--finetune-epochs must be >= 0, got {args.finetune_epochs}")
    epsilon = _epsilon(args)
    network = load_from_args(args)
    X, y = _dataset(args.dataset, args.data_dir, network.info.input_shape)
    cut = TRAIN_END[args.dataset]
    options = dict(scope=args.scope, steps=args.steps, lr=args.lr, stability_weight=args.stability_weight,
                   min_keep=args.min_keep)
    pruned, manifest = prune(network, method=args.method, amount=args.amount,
                             granularity="structured" if args.structured else args.granularity,
                             data=(X[:cut], y[:cut]), epsilon=epsilon, n=args.n, m=args.m, seed=args.seed,
                             finetune_epochs=args.finetune_epochs, **options)
    onnx_path, json_path = save_pruned(pruned, manifest, args.out)
    with torch.no_grad():
        before = float((network(X[cut:]).argmax(1) == y[cut:]).float().mean())
        after = float((pruned(X[cut:]).argmax(1) == y[cut:]).float().mean())
    n_before = sum(p.numel() for p in network.parameters())
    nz_after = sum(int(torch.count_nonzero(p)) for p in pruned.parameters())
    print(f"{args.method} {manifest.granularity} {manifest.amount:.3g}: parameters {n_before} -> "
          f"{sum(p.numel() for p in pruned.parameters())} ({nz_after} non-zero); held-out accuracy "
          f"{before:.4f} -> {after:.4f} on {len(X) - cut} {args.dataset} images")
    print(f"wrote {onnx_path} and {json_path}")
    if before - after > ACCURACY_DROP_WARNING:
        print(f"certprune: warning: held-out accuracy dropped by {100 * (before - after):.1f} points "
              f"({before:.4f} -> {after:.4f}); try more --finetune-epochs (now {args.finetune_epochs}), "
              "a smaller --amount or more --steps", file=sys.stderr)
    return 0


def check_out(model: str, out: str, force: bool) -> None:
    """ConfigError before any work when ``out`` is the input model (unless ``force``), a directory,
    or in a folder that does not exist or cannot be written."""
    import os
    from pathlib import Path

    from certprune.errors import ConfigError
    dst = Path(out)
    if dst.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the path of the ONNX file to write, e.g. {dst / 'pruned.onnx'}")
    same = dst.resolve() == Path(model).resolve() or (dst.exists() and os.path.samefile(dst, model))
    if same and not force:
        raise ConfigError(f"--out {out} is the input model; choose another path (or --force to overwrite it)")
    parent = dst.resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--out {out}: folder {parent} is not writable")


def _epsilon(args: argparse.Namespace) -> float | None:
    """``--epsilon``, or the data set's default when stability scores or loss need one (said on stderr)."""
    if args.epsilon is not None or not (args.method == "stability" or args.stability_weight > 0):
        return args.epsilon
    eps = DEFAULT_EPSILON[args.dataset]
    print(f"certprune: using --epsilon {eps:g} (the default for {args.dataset})", file=sys.stderr)
    return eps


def _dataset(name: str, data_dir, input_shape):
    """(X, y) tensors of the data set, X reshaped to the model's input shape."""
    import torch

    from certprune.errors import ShapeMismatchError
    if name == "digits":
        from certprune.datasets import load_digits
        X, y = load_digits()
    else:
        from certprune.datasets import load_mnist
        X, y = load_mnist(data_dir)
    X = torch.from_numpy(X)
    if X[0].numel() != int(torch.Size(input_shape).numel()):
        raise ShapeMismatchError(f"{name} images have {X[0].numel()} values; the model expects input shape {input_shape}")
    return X.reshape(len(X), *input_shape), torch.from_numpy(y)
