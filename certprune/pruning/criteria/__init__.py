"""Pruning criteria. Each module offers ``weight_scores(ctx, [(name, module)])`` and
``unit_scores(ctx, [UnitLayer])``; higher score = more important, lowest removed first.
Optional: ``DEFAULT_SCOPE`` (global or local, for unit pruning) and
``layer_budgets(ctx, layers, amount) -> {layer: share}`` (how a step's removals are split between
layers; see :mod:`certprune.pruning.criteria.budgets`). ``METHODS`` is the registry the CLI and
scripts read the names from."""
from __future__ import annotations

import importlib
from types import ModuleType

from certprune.errors import ConfigError

_MODULES = {
    "random": "random", "magnitude": "magnitude", "l1": "magnitude", "l2": "magnitude",
    "taylor": "taylor", "obd": "obd", "hessian": "obd", "slimming": "slimming", "snip": "snip",
    "stability": "stability",
    "taylor-group": "taylor_group", "taylor-group2": "taylor_group2", "nisp": "nisp", "singe": "singe",
    "sosp-h": "sosp_h", "i-spasp": "i_spasp", "gradient-redundancy": "gradient_redundancy",
    "causal-mi": "causal_mi", "o-information": "o_information", "m-info-flow": "m_info_flow",
}
METHODS = tuple(_MODULES)


def criterion(name: str) -> ModuleType:
    """The module implementing criterion ``name`` (ConfigError for unknown names)."""
    if name not in _MODULES:
        raise ConfigError(f"unknown pruning method {name!r}; choose one of {', '.join(METHODS)}")
    return importlib.import_module(f"certprune.pruning.criteria.{_MODULES[name]}")
