"""``certprune info MODEL``: layers (type, output shape, parameters), input shape, outputs, hash,
and whether the load-time onnxruntime self-check ran.

Exit codes: 0 shown; 2 unreadable or unsupported model (one line on stderr).
"""
from __future__ import annotations

import argparse

from certprune.commands._model_args import add_model_arguments, load_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)


def run(args: argparse.Namespace) -> int:
    from certprune.io.onnx_check import describe_check

    net = load_from_args(args)
    table = layer_table(net)
    print(f"model:        {args.model}")
    print(f"format:       {net.info.source_format}" + (f" (opset {net.info.extra['opset']})" if "opset" in net.info.extra else ""))
    print(f"input shape:  {net.info.input_shape}" + (f"  name {net.info.input_names[0]!r}" if net.info.input_names else ""))
    print(f"outputs:      {net.info.num_outputs}"
          + (f"  (final {net.info.output_activation} stripped: module outputs logits)" if net.info.output_activation else ""))
    print(f"parameters:   {int(table['params'].sum()):,}")
    print(f"sha256:       {net.info.sha256}")
    print(f"onnxruntime check: {describe_check(net)}")
    print(f"native bound engine: {_native_support(net)}")
    print()
    print(table.to_string(index=False))
    return 0


def layer_table(net):
    """One row per leaf module in execution order: layer, type, output shape, params (incl. constants)."""
    import pandas as pd
    import torch

    rows, hooks = [], []
    leaves = [(name, m) for name, m in net.module.named_modules() if not list(m.children())]
    if isinstance(net.module, torch.jit.ScriptModule):  # no hooks on TorchScript: list layers, no shapes
        rows = [{"layer": name, "type": getattr(m, "original_name", type(m).__name__), "output shape": "?",
                 "params": _count(m), "details": ""} for name, m in leaves]
        return pd.DataFrame(rows, columns=["layer", "type", "output shape", "params", "details"])
    for name, m in leaves:
        hooks.append(m.register_forward_hook(lambda mod, _i, out, name=name: rows.append(
            {"layer": name, "type": type(mod).__name__, "output shape": tuple(out.shape[1:]), "params": _count(mod),
             "details": mod.extra_repr()[:60]})))
    try:
        with torch.no_grad():
            net(torch.zeros(1, *net.info.input_shape))
    finally:
        for h in hooks:
            h.remove()
    return pd.DataFrame(rows, columns=["layer", "type", "output shape", "params", "details"])


def _count(m) -> int:
    """Parameters plus constant tensors (ONNX constants), excluding BatchNorm running statistics."""
    n = sum(p.numel() for p in m.parameters(recurse=False))
    n += sum(b.numel() for name, b in m.named_buffers(recurse=False)
             if b.is_floating_point() and not name.startswith("running_"))
    return int(n)


def _native_support(net) -> str:
    from certprune.errors import CertpruneError
    from certprune.verifiers.affine import AffineReluNet
    try:
        a = AffineReluNet.from_module(net)
    except CertpruneError as e:
        return f"no ({e})"
    return f"yes ({a.num_layers} affine layers, ReLU widths {a.relu_sizes})"
