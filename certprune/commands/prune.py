"""``certprune prune MODEL --method NAME --amount A [--granularity G] [--finetune-epochs E]
--dataset digits|mnist [--epsilon E] --out PRUNED.onnx``.

Scores, fine-tuning data: the training part of the data set (digits images 0..1499, MNIST test
images 0..7999, the parts the bundled models were trained on); accuracy is reported on the rest.
Writes PRUNED.onnx and PRUNED.manifest.json (the manifest is also stored in the ONNX metadata).
Exit code 0 on success, 2 on bad input.
"""
from __future__ import annotations

import argparse

TRAIN_END = {"digits": 1500, "mnist": 8000}
GRANULARITIES = ("unstructured", "nm", "neuron", "channel", "structured")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from certprune.commands._model_args import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--method", required=True, help="random, magnitude, l1, l2, taylor, obd, snip, slimming, stability")
    p.add_argument("--amount", type=float, default=None, help="fraction in [0, 1) of weights/units to remove")
    p.add_argument("--granularity", default="unstructured", choices=GRANULARITIES)
    p.add_argument("--structured", action="store_true", help="same as --granularity structured")
    p.add_argument("--n", type=int, default=2, help="N of N:M sparsity (default 2)")
    p.add_argument("--m", type=int, default=4, help="M of N:M sparsity (default 4)")
    p.add_argument("--scope", choices=("global", "local"), default=None)
    p.add_argument("--steps", type=int, default=1, help="iterative prune/fine-tune steps (default 1: one-shot)")
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--stability-weight", type=float, default=0.0, help="weight of the stability loss in fine-tuning")
    p.add_argument("--dataset", required=True, choices=sorted(TRAIN_END))
    p.add_argument("--data-dir", default=None, help="data root (default: $CERTPRUNE_DATA or ../shared/data)")
    p.add_argument("--epsilon", type=float, default=None, help="L-inf radius for stability scores and loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output ONNX path; the manifest goes next to it")


def run(args: argparse.Namespace) -> int:
    import torch

    from certprune.commands._model_args import load_from_args
    from certprune.pruning.api import prune
    from certprune.pruning.export import save_pruned

    network = load_from_args(args)
    X, y = _dataset(args.dataset, args.data_dir, network.info.input_shape)
    cut = TRAIN_END[args.dataset]
    options = dict(scope=args.scope, steps=args.steps, lr=args.lr, stability_weight=args.stability_weight)
    pruned, manifest = prune(network, method=args.method, amount=args.amount,
                             granularity="structured" if args.structured else args.granularity,
                             data=(X[:cut], y[:cut]), epsilon=args.epsilon, n=args.n, m=args.m, seed=args.seed,
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
    return 0


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
