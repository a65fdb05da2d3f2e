"""Which layers can be pruned, and how their units line up with the bound engine's ReLU layers.

A *unit layer* is a hidden Linear (units = output neurons) or Conv2d (units = output channels),
i.e. every Linear/Conv2d except the last one (the classifier). Its ``relu_index`` is its position
among hidden layers, which is the index of its ReLU layer in
:class:`~certprune.verifiers.affine.AffineReluNet` for feed-forward nets. Layer names are the
names from ``model.named_modules()`` and stay valid after physical pruning.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from certprune.errors import ConfigError, UnsupportedModelError

UNIT_TYPES = (nn.Linear, nn.Conv2d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
GRANULARITY_TYPES = {"neuron": (nn.Linear,), "channel": (nn.Conv2d,), "structured": UNIT_TYPES}


@dataclass(frozen=True, eq=False)
class UnitLayer:
    """A prunable hidden layer: its module, the BatchNorm and ReLU right after it (or None)."""

    name: str
    module: nn.Module
    bn: nn.Module | None
    relu: nn.Module | None
    relu_index: int

    @property
    def width(self) -> int:
        """Number of units (output neurons or channels)."""
        m = self.module
        return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def base_module(model: nn.Module) -> nn.Module:
    """The torch module inside a :class:`~certprune.network.Network`, or ``model`` itself."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) and hasattr(model, "info") else model


def named_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules in definition order (execution order for Sequentials)."""
    return [(n, m) for n, m in base_module(model).named_modules() if not list(m.children())]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Linear and Conv2d (the classifier included): the targets of weight masks."""
    return [(n, m) for n, m in named_leaves(model) if isinstance(m, UNIT_TYPES)]


def unit_layers(model: nn.Module, granularity: str = "structured") -> list[UnitLayer]:
    """Hidden Linear/Conv2d layers selected by granularity (neuron, channel or structured)."""
    if granularity not in GRANULARITY_TYPES:
        raise ConfigError(f"unknown structured granularity {granularity!r}; choose one of {', '.join(GRANULARITY_TYPES)}")
    leaves = named_leaves(model)
    idx = [i for i, (_, m) in enumerate(leaves) if isinstance(m, UNIT_TYPES)]
    out = []
    for k, i in enumerate(idx[:-1]):
        name, mod = leaves[i]
        between = [m for _, m in leaves[i + 1:idx[k + 1]]]
        bn = next((m for m in between[:1] if isinstance(m, BN_TYPES)), None)
        relu = next((m for m in between if isinstance(m, nn.ReLU)), None)
        if isinstance(mod, GRANULARITY_TYPES[granularity]):
            out.append(UnitLayer(name, mod, bn, relu, k))
    if not out:
        raise ConfigError(f"the model has no hidden layers to prune at granularity {granularity!r}")
    return out


def require_relu_after_each(layers: list[UnitLayer]) -> None:
    """Raise UnsupportedModelError unless every unit layer is followed by its own ReLU."""
    bad = [l.name for l in layers if l.relu is None]
    if bad:
        raise UnsupportedModelError(f"layers {bad} are not followed by a ReLU; unit-level pruning needs one")
