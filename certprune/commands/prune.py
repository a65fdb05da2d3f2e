"""``certprune prune MODEL --method NAME --amount A [--granularity G] [--finetune-epochs E]
[--steps K] [--finetune-fraction F] [--layer-caps K=F] --dataset NAME [--epsilon E] [--activate-while-pruning] [--protected ATTR] [--checkpoint DIR] --out PRUNED.onnx``.

``--method`` choices are read from the library's registries (the scoring criteria of
:mod:`certprune.pruning.criteria` and the mask learners of :mod:`certprune.pruning.learners`).
Scores, fine-tuning data: the training part of the data set (digits images 0..1499, MNIST test
images 0..7999, the parts the bundled models were trained on; the training split of a tabular set);
accuracy is reported on the rest (one-logit tabular models decide ``logit > 0``). ``--protected``
names the tabular feature that m-info-flow measures the flow of (mapped to its column through the
data set's schema); the one-logit tabular models are not fine-tuned (cross-entropy needs two
logits), so ``--finetune-epochs`` defaults to 0 there, and only the methods that do not score by
the loss (``TABULAR_METHODS``) are accepted on them.
``--checkpoint DIR`` makes the run resumable (:mod:`certprune.pruning.checkpoint`): a stopped run
(Ctrl-C: exit code 130, crash) started again with the same command continues from its last saved
epoch and writes what an uninterrupted run writes; a folder of another run, or a non-empty folder
without run.json, is bad input.
``--layer-caps K=F`` caps the K-th prunable layer (0 = the first; positions, because an ONNX
model's layer names are its node names) at a fraction F of its units removed, and
``--finetune-fraction F`` fine-tunes each step on a rotating share F of the data (Li et al.'s many
small steps at the same epochs); both are checked before the model is loaded where they can be.
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

from certprune.datasets.tabular import TABULAR_NAMES

TRAIN_END = {"digits": 1500, "mnist": 8000}
DATASETS = (*sorted(TRAIN_END), *TABULAR_NAMES)
GRANULARITIES = ("unstructured", "nm", "neuron", "channel", "structured")
# the L-inf radius (pixels in [0, 1]) of the README's certify tables for the bundled models
DEFAULT_EPSILON = {"digits": 0.02, "mnist": 0.02}
# fine-tuning epochs that keep held-out accuracy (magnitude, 50% of neurons: digits 0.91 -> 0.90 with 20,
# MNIST 0.955 -> 0.954 with 3; about 250 optimiser steps either way; 0 epochs: 0.31 and 0.58)
DEFAULT_FINETUNE_EPOCHS = {"digits": 20, "mnist": 3, **{name: 0 for name in TABULAR_NAMES}}
NEEDS_PROTECTED = ("m-info-flow",)
# methods whose scores do not use the cross-entropy gradient, which is identically zero on the one-logit
# tabular models (the ones pruning_fairness.py runs); the others are refused on tabular data sets
TABULAR_METHODS = ("m-info-flow", "magnitude", "l1", "l2", "random")
ACCURACY_DROP_WARNING = 0.05


def add_arguments(p: argparse.ArgumentParser) -> None:
    from certprune.commands._model_args import add_model_arguments

    add_model_arguments(p)
    criteria, learners = method_names()
    p.add_argument("--method", required=True, choices=(*criteria, *learners), metavar="NAME",
                   help=f"scoring criterion ({', '.join(criteria)}) or mask learner ({', '.join(learners)})")
    p.add_argument("--amount", type=float, default=None, help="fraction in [0, 1) of weights/units to remove")
    p.add_argument("--granularity", default="unstructured", choices=GRANULARITIES)
    p.add_argument("--structured", action="store_true", help="same as --granularity structured")
    p.add_argument("--n", type=int, default=2, help="N of N:M sparsity (default 2)")
    p.add_argument("--m", type=int, default=4, help="M of N:M sparsity (default 4)")
    p.add_argument("--scope", choices=("global", "local"), default=None,
                   help="one threshold over all layers or one per layer (default: global for unstructured, "
                        "otherwise the criterion's own: local for most, including stability)")
    p.add_argument("--min-keep", type=float, default=0.0,
                   help="fraction of every layer's units that is never removed (default 0)")
    p.add_argument("--steps", type=int, default=1, help="iterative prune/fine-tune steps (default 1: one-shot)")
    p.add_argument("--layer-caps", action="append", default=None, metavar="K=F",
                   help="the K-th prunable layer (0 = the first, in forward order) never loses more than the "
                        "fraction F in [0, 1) of its units; the other layers take the rest, so --amount is kept "
                        "(unit granularities; repeat or comma-separate, e.g. 0=0.5,1=0.7)")
    p.add_argument("--finetune-fraction", type=float, default=1.0, metavar="F",
                   help="each step fine-tunes on its own rotating share F in (0, 1] of the training part "
                        "(default 1: all of it); 12 steps at 0.5 cost the epochs of 6 steps at 1")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="epochs of fine-tuning on the training part after each step (default "
                        f"{DEFAULT_FINETUNE_EPOCHS['digits']} on digits, {DEFAULT_FINETUNE_EPOCHS['mnist']} on mnist, "
                        "which keeps held-out accuracy; 0 = none)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--stability-weight", type=float, default=0.0, help="weight of the stability loss in fine-tuning")
    p.add_argument("--activate-while-pruning", action="store_true",
                   help="after each step re-activate dead ReLUs (AP; wraps a scoring criterion, not a mask learner)")
    p.add_argument("--protected", default=None, metavar="ATTR",
                   help="protected attribute of a tabular --dataset (feature name; needed by "
                        f"{', '.join(NEEDS_PROTECTED)})")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", default=None, help="data root (default: $CERTPRUNE_DATA or ../shared/data)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="L-inf radius for stability scores and loss (default for --method stability or "
                        f"--stability-weight > 0: {DEFAULT_EPSILON['digits']:g} on digits and "
                        f"{DEFAULT_EPSILON['mnist']:g} on mnist)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output ONNX path; the manifest goes next to it")
    p.add_argument("--force", action="store_true", help="allow --out to overwrite the input model")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="folder that makes the run resumable: training state saved after every epoch; the same "
                        "command run again continues where a stopped run (Ctrl-C, crash) was; a folder of other "
                        "settings is refused; deleted when the run completes")


def run(args: argparse.Namespace) -> int:
    import torch

    from certprune.commands._model_args import load_from_args
    from certprune.pruning.api import prune
    from certprune.pruning.export import save_pruned

    check_out(args.model, args.out, args.force)
    if args.method == "gating":  # the gate cannot be exported to ONNX: refuse before training, not after
        from certprune.errors import UnsupportedModelError
        from certprune.pruning.learners.gating import REFUSAL
        raise UnsupportedModelError(f"--method gating cannot write {args.out}: {REFUSAL}")
    if args.finetune_epochs is None:
        args.finetune_epochs = DEFAULT_FINETUNE_EPOCHS[args.dataset]
    if args.finetune_epochs < 0:
        from certprune.errors import ConfigError
        raise ConfigError(f"--finetune-epochs must be >= 0, got {args.finetune_epochs}")
    protected = protected_column(args.method, args.dataset, args.protected)
    if args.dataset in TABULAR_NAMES and args.method not in TABULAR_METHODS:
        from certprune.errors import ConfigError
        raise ConfigError(f"--method {args.method} uses the cross-entropy loss, which is constant on the one-logit "
                          f"{args.dataset} models; on tabular data sets use one of {', '.join(TABULAR_METHODS)}")
    if args.dataset in TABULAR_NAMES and args.finetune_epochs > 0:
        from certprune.errors import ConfigError
        raise ConfigError(f"--finetune-epochs {args.finetune_epochs}: the one-logit {args.dataset} models cannot be "
                          "fine-tuned with cross-entropy; use --finetune-epochs 0")
    if not 0.0 < args.finetune_fraction <= 1.0:
        from certprune.errors import ConfigError
        raise ConfigError(f"--finetune-fraction must be in (0, 1], got {args.finetune_fraction:g}")
    parse_layer_caps(args.layer_caps or [])  # bad syntax refused before the model is loaded
    epsilon = _epsilon(args)
    network = load_from_args(args)
    (X, y), (X_test, y_test) = _splits(args.dataset, args.data_dir, network.info.input_shape)
    granularity = "structured" if args.structured else args.granularity
    options = dict(scope=args.scope, steps=args.steps, lr=args.lr, stability_weight=args.stability_weight,
                   min_keep=args.min_keep, finetune_fraction=args.finetune_fraction)
    if args.layer_caps:
        options["layer_caps"] = layer_caps(network, granularity, args.layer_caps)
    if protected is not None:
        options["protected"] = protected
    try:
        pruned, manifest = prune(network, method=args.method, amount=args.amount,
                                 granularity=granularity,
                                 data=(X, y), epsilon=epsilon, n=args.n, m=args.m, seed=args.seed,
                                 finetune_epochs=args.finetune_epochs,
                                 activate_while_pruning=args.activate_while_pruning, checkpoint=args.checkpoint,
                                 **options)
    except KeyboardInterrupt:
        if args.checkpoint is None:
            raise
        print(f"certprune: interrupted; run the same command again to resume from {args.checkpoint}", file=sys.stderr)
        return 130
    onnx_path, json_path = save_pruned(pruned, manifest, args.out)
    before, after = accuracy(network, X_test, y_test), accuracy(pruned, X_test, y_test)
    n_before = sum(p.numel() for p in network.parameters())
    nz_after = sum(int(torch.count_nonzero(p)) for p in pruned.parameters())
    amount = "learned" if manifest.amount is None else f"{manifest.amount:.3g}"
    print(f"{args.method} {manifest.granularity} {amount}: parameters {n_before} -> "
          f"{sum(p.numel() for p in pruned.parameters())} ({nz_after} non-zero); held-out accuracy "
          f"{before:.4f} -> {after:.4f} on {len(X_test)} {args.dataset} inputs")
    print(f"wrote {onnx_path} and {json_path}")
    if before - after > ACCURACY_DROP_WARNING:
        print(f"certprune: warning: held-out accuracy dropped by {100 * (before - after):.1f} points "
              f"({before:.4f} -> {after:.4f}); try more --finetune-epochs (now {args.finetune_epochs}), "
              "a smaller --amount or more --steps", file=sys.stderr)
    return 0


def method_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(scoring criteria, mask learners): every name ``prune(method=...)`` accepts, from the registries."""
    from certprune.pruning.criteria import METHODS as criteria
    from certprune.pruning.learners import METHODS as learners
    return tuple(criteria), tuple(learners)


def protected_column(method: str, dataset: str, attr: str | None) -> int | None:
    """Input column of ``--protected ATTR`` in the tabular data set's schema; ConfigError when the
    method needs one and it is missing, or when the data set is not tabular."""
    from certprune.errors import ConfigError
    if attr is None:
        if method in NEEDS_PROTECTED:
            raise ConfigError(f"--method {method} needs --protected ATTR (a feature of a tabular --dataset: "
                              f"{', '.join(TABULAR_NAMES)})")
        return None
    if dataset not in TABULAR_NAMES:
        raise ConfigError(f"--protected needs a tabular --dataset ({', '.join(TABULAR_NAMES)}); {dataset} has no "
                          "feature schema")
    from certprune.datasets import get_schema
    return get_schema(dataset).index(attr)


def parse_layer_caps(values: list[str]) -> dict[int, float]:
    """{layer position: largest fraction removed} from ``--layer-caps`` values ``K=F`` (repeated or
    comma-separated); ConfigError on bad syntax, a repeated K, or F outside [0, 1)."""
    from certprune.errors import ConfigError

    caps: dict[int, float] = {}
    for item in [v for value in values for v in value.split(",") if v.strip()]:
        key, sep, frac = item.partition("=")
        try:
            k, f = int(key), float(frac)
        except ValueError:
            k = f = None
        if not sep or k is None or k < 0:
            raise ConfigError(f"--layer-caps expects K=F (K a layer position 0, 1, ..., F a fraction), e.g. 0=0.5; "
                              f"got {item!r}")
        if not 0.0 <= f < 1.0:
            raise ConfigError(f"--layer-caps {item}: the fraction must be in [0, 1), got {f:g}")
        if k in caps:
            raise ConfigError(f"--layer-caps gives layer {k} twice")
        caps[k] = f
    return caps


def layer_caps(network, granularity: str, values: list[str]) -> dict[str, float]:
    """``prune(layer_caps=...)``: the ``--layer-caps`` positions mapped to the names of the model's
    prunable layers at ``granularity`` (the order prune() removes units in); ConfigError for a
    position past the last layer or a granularity without units."""
    from certprune.errors import ConfigError
    from certprune.pruning.layers import unit_layers

    if granularity not in ("neuron", "channel", "structured"):
        raise ConfigError(f"--layer-caps applies to unit pruning (--granularity neuron, channel or structured), "
                          f"not {granularity}")
    layers = unit_layers(network, granularity)
    caps = parse_layer_caps(values)
    past = sorted(k for k in caps if k >= len(layers))
    if past:
        known = ", ".join(f"{i} ({l.width} units)" for i, l in enumerate(layers))
        raise ConfigError(f"--layer-caps: no prunable layer {', '.join(map(str, past))}; this model has {known}")
    return {layers[k].name: f for k, f in caps.items()}


def accuracy(model, X, y) -> float:
    """Share of ``X`` classified as ``y``: argmax of the logits, or ``logit > 0`` for a one-logit model."""
    import torch
    with torch.no_grad():
        out = model(X).reshape(len(X), -1)
    pred = (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(1)
    return float((pred == y).float().mean())


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
    if args.dataset not in DEFAULT_EPSILON:
        from certprune.errors import ConfigError
        raise ConfigError(f"stability scores and loss need --epsilon on {args.dataset} (no default radius)")
    eps = DEFAULT_EPSILON[args.dataset]
    print(f"certprune: using --epsilon {eps:g} (the default for {args.dataset})", file=sys.stderr)
    return eps


def _splits(name: str, data_dir, input_shape):
    """((X, y) for scoring and fine-tuning, (X, y) held out) as tensors, X in the model's input shape."""
    if name in TABULAR_NAMES:
        import torch

        from certprune.datasets import load_tabular
        from certprune.errors import ShapeMismatchError
        d = load_tabular(name, data_dir)
        n = int(torch.Size(input_shape).numel())
        if d.X_train.shape[1] != n:
            raise ShapeMismatchError(f"{name} rows have {d.X_train.shape[1]} features; the model expects input shape "
                                     f"{input_shape}")
        return ((torch.from_numpy(d.X_train).float(), torch.from_numpy(d.y_train)),
                (torch.from_numpy(d.X_test).float(), torch.from_numpy(d.y_test)))
    X, y = _dataset(name, data_dir, input_shape)
    cut = TRAIN_END[name]
    return (X[:cut], y[:cut]), (X[cut:], y[cut:])


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
