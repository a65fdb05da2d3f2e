"""Shared ``MODEL`` arguments of the info/bounds commands (how to open PyTorch files)."""
from __future__ import annotations

import argparse


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``model`` plus the PyTorch-only options ``--input-shape``, ``--architecture``, ``--trust-pickle``."""
    p.add_argument("model", help="model file (.onnx, .onnx.gz, .h5, .pt)")
    p.add_argument("--input-shape", default=None, metavar="D1,D2,...",
                   help="per-sample input shape for PyTorch files that do not record it, e.g. 1,28,28")
    p.add_argument("--architecture", default=None, metavar="mlp:IN-H1-...-OUT",
                   help="architecture of a PyTorch state dict without an .arch.json sidecar")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling a full PyTorch pickle (runs code from the file: trusted files only)")


def load_from_args(args: argparse.Namespace):
    """The Network named by the parsed arguments."""
    from certprune.errors import ConfigError
    from certprune.network import load_model
    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(d) for d in args.input_shape.split(","))
        except ValueError:
            raise ConfigError(f"--input-shape must be comma-separated integers, got {args.input_shape!r}") from None
    return load_model(args.model, trust_pickle=args.trust_pickle, input_shape=shape, architecture=args.architecture)
