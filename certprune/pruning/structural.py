"""Physical removal of neurons (Linear) and channels (Conv2d) with everything that depends on them.

Uses Torch-Pruning's dependency graph (Fang et al. 2023, "DepGraph: Towards Any Structural
Pruning"): removing output unit i of a layer also removes the matching BatchNorm entries and the
input columns / channels (including the Flatten -> Linear blocks) of the layers that consume it,
for plain Sequentials and general graphs alike. ``masked_copy`` builds the reference semantics
(the unit's post-ReLU activation forced to 0) that the equivalence tests compare against.
"""
from __future__ import annotations

import copy

import numpy as np

import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.layers import UnitLayer, base_module, unit_layers


def _tp():
    try:
        import torch_pruning
    except ImportError:
        raise ConfigError("structured pruning needs the torch-pruning package: pip install 'certprune[pruning]'") from None
    return torch_pruning


def check_removal(layers: dict[str, UnitLayer], removal: dict[str, list[int]]) -> None:
    """Raise ConfigError for unknown layers, indices out of range, duplicates, or zero width."""
    for name, idxs in removal.items():
        if name not in layers:
            raise ConfigError(f"no prunable hidden layer named {name!r}; known: {', '.join(layers)}")
        width = layers[name].width
        bad = [i for i in idxs if not 0 <= int(i) < width]
        if bad:
            raise ConfigError(f"unit indices {bad[:5]} out of range for layer {name!r} of width {width}")
        if len(set(idxs)) != len(idxs):
            raise ConfigError(f"duplicate unit indices for layer {name!r}")
        if len(set(idxs)) >= width:
            raise ConfigError(f"pruning would remove all {width} units of layer {name!r} (zero width); "
                              "lower the amount or prune locally")


def remove_units(model: nn.Module, removal: dict[str, list[int]], example_input: torch.Tensor) -> nn.Module:
    """Physically remove ``removal[layer] = [unit indices]`` from ``model`` in place; returns it.

    ``example_input`` (one batch, any size >= 1) is traced to build the dependency graph.
    """
    module = base_module(model)
    layers = {l.name: l for l in unit_layers(module)}
    removal = {k: sorted(int(i) for i in v) for k, v in removal.items() if len(v)}
    check_removal(layers, removal)
    if not removal:
        return model
    tp = _tp()
    was_training = module.training
    module.eval()
    with torch.enable_grad():  # the dependency graph is traced through autograd
        graph = tp.DependencyGraph().build_dependency(module, example_inputs=example_input.to(torch.float32))
        for name, idxs in removal.items():
            mod = layers[name].module
            fn = tp.prune_linear_out_channels if isinstance(mod, nn.Linear) else tp.prune_conv_out_channels
            graph.get_pruning_group(mod, fn, idxs=idxs).prune()
    module.train(was_training)
    return model


def masked_copy(model: nn.Module, removal: dict[str, list[int]]) -> nn.Module:
    """A deep copy whose removed units output 0 after their ReLU (forward hooks), shapes unchanged."""
    model = copy.deepcopy(model)
    layers = {l.name: l for l in unit_layers(base_module(model))}
    for name, idxs in removal.items():
        layer = layers[name]
        keep = torch.ones(layer.width)
        keep[list(idxs)] = 0.0
        shape = (1, -1) + (1,) * (2 if isinstance(layer.module, nn.Conv2d) else 0)
        layer.relu.register_forward_hook(lambda _m, _i, out, k=keep.reshape(shape): out * k.to(out.dtype))
    return model


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters (not buffers)."""
    return sum(p.numel() for p in base_module(model).parameters())


def select_units(scores: dict[str, torch.Tensor], amount: float, scope: str = "global",
                 min_keep: float = 0.0) -> dict[str, list[int]]:
    """Unit indices to remove: the ``round(amount * n)`` lowest scores, over all layers with one
    threshold (global) or per layer (local). ``min_keep``: fraction of each layer's units (its
    best-scored, at least one when > 0) that are never removed. ConfigError if a layer would lose
    every unit, or if the protected units make the amount unreachable."""
    from certprune.pruning.masks import check_amount, unstructured_masks

    check_amount(amount)
    if min_keep > 0:
        scores = {k: _protect_top(v, max(1, int(np.ceil(min_keep * v.numel())))) for k, v in scores.items()}
    keep = unstructured_masks(scores, amount, scope)
    for name, k in keep.items():
        if not k.any():
            how = "of each layer" if scope == "local" else "under one global threshold"
            hint = "" if scope == "local" else ", or prune per layer (scope='local', --scope local)"
            raise ConfigError(f"removing a fraction {amount:.3g} of the units {how} would remove all {k.numel()} "
                              f"units of layer {name!r} (zero width); lower the amount, keep a share of every "
                              f"layer (min_keep, --min-keep){hint}")
        if min_keep > 0 and torch.isinf(scores[name][~k]).any():
            raise ConfigError(f"amount {amount} cannot be reached while keeping min_keep={min_keep} of every layer")
    return {name: torch.nonzero(~k).flatten().tolist() for name, k in keep.items()}


def _protect_top(score: torch.Tensor, count: int) -> torch.Tensor:
    """Scores with the ``count`` best set to +inf (never selected for removal)."""
    out = score.detach().double().clone()
    out[torch.argsort(out, descending=True, stable=True)[:count]] = torch.inf
    return out
