"""Pruning methods that learn which connections to keep *while* training (the mask learners).

Each learner module offers ``Config`` (its own frozen options), ``GRANULARITIES`` and
``learn(work, X, y, amount, granularity, cfg, opts, seed) -> Learned``; it trains ``work`` in place
and says what to remove. :func:`prune_learned` (called by :func:`certprune.pruning.prune` for these
method names) applies the result as masks or physical unit removal, records a
:class:`~certprune.pruning.manifest.Manifest`, and fine-tunes with the usual fine-tuner.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
from dataclasses import dataclass, field
from types import ModuleType

import torch
from torch import nn

from certprune.errors import ConfigError
from certprune.pruning.checkpoint import open_run, phase_file

_MODULES = {"scl": "scl", "dynamic-surgery": "surgery", "gibbs": "gibbs", "brain": "brain", "gating": "gating",
            "agn": "agn"}
METHODS = tuple(_MODULES)


@dataclass
class Learned:
    """What a learner decided: weight keep-masks (True = kept) or unit indices to remove, or a
    replacement ``model`` (runtime gating), plus statistics of the run (JSON-serialisable)
    stored in the manifest's config."""

    model: nn.Module | None = None
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    removal: dict[str, list[int]] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def loop_config(epochs: int, opts, seed: int):
    """The :class:`~certprune.pruning.finetune.FinetuneConfig` a learner trains with in
    :func:`~certprune.pruning.finetune.train_loop`: ``epochs``, the options' lr and batch size,
    a constant learning rate, no stability or slimming term."""
    from certprune.pruning.finetune import FinetuneConfig

    return FinetuneConfig(epochs, opts.lr, opts.batch_size, "constant", domain=opts.domain, seed=seed)


def learner(name: str) -> ModuleType:
    """The module implementing mask learner ``name`` (ConfigError for unknown names)."""
    if name not in _MODULES:
        raise ConfigError(f"unknown mask learner {name!r}; choose one of {', '.join(METHODS)}")
    return importlib.import_module(f"certprune.pruning.learners.{_MODULES[name]}")


def split_options(mod: ModuleType, options: dict) -> tuple[object, dict]:
    """(the learner's Config from its own keys, the remaining keys for PruneOptions)."""
    own = {f.name for f in dataclasses.fields(mod.Config)}
    cfg = mod.Config(**{k: v for k, v in options.items() if k in own})
    return cfg, {k: v for k, v in options.items() if k not in own}


def prune_learned(model: nn.Module, method: str, amount: float | None, granularity: str, data, seed: int,
                  finetune_epochs: int, options: dict, checkpoint=None):
    """:func:`certprune.pruning.prune` for a mask learner; returns ``(pruned, manifest)``.
    ``checkpoint``: a folder that makes the run resumable (:mod:`certprune.pruning.checkpoint`)."""
    from certprune.pruning.api import as_tensors, make_options, rewrap, _input_shape
    from certprune.pruning.finetune import FinetuneConfig, finetune
    from certprune.pruning.layers import base_module, unit_layers
    from certprune.pruning.manifest import Manifest, PruneStep, encode_mask, unit_entry
    from certprune.pruning.masks import apply_masks, check_amount
    from certprune.pruning.structural import remove_units

    mod = learner(method)
    if granularity not in mod.GRANULARITIES:
        raise ConfigError(f"method {method!r} supports granularity {', '.join(mod.GRANULARITIES)}, not {granularity!r}")
    cfg, rest = split_options(mod, options)
    opts = make_options(rest)
    if opts.steps != 1 or opts.rewind or opts.silo:
        raise ConfigError(f"method {method!r} learns its masks while training; steps, rewind and silo do not apply")
    if opts.stability_weight > 0 or opts.min_keep > 0:  # the learners' training has no such term: say so
        raise ConfigError(f"method {method!r} learns its masks while training; stability_weight and min_keep "
                          "do not apply to it")
    if opts.layer_caps or opts.finetune_fraction != 1.0:  # ignored by the learners: refuse rather than drop
        raise ConfigError(f"method {method!r} learns its masks while training; layer_caps and finetune_fraction "
                          "do not apply to it")
    if amount is None and not getattr(mod, "AMOUNT_OPTIONAL", False):
        raise ConfigError("amount is required (fraction in [0, 1) of weights or units to remove)")
    amount = None if amount is None else check_amount(amount)
    X, y = as_tensors(data)
    if X is None:
        raise ConfigError(f"method {method!r} learns its masks while training and needs data=(inputs, labels)")
    shape = _input_shape(model, X, opts)
    ck = open_run(checkpoint, model, X, y, method=method, amount=amount, granularity=granularity, seed=seed,
                  finetune_epochs=finetune_epochs, options=options)
    work, learned = _learn(mod, model, X, y, amount, granularity, cfg, opts, seed, ck)
    manifest = Manifest(method, granularity, learned.stats.get("amount", amount), list(shape), seed, None,
                        config={**dataclasses.asdict(opts), **dataclasses.asdict(cfg), "learned": learned.stats,
                                "finetune_epochs": finetune_epochs})
    if learned.masks:
        apply_masks(dict(work.named_modules()), learned.masks)
        manifest.steps.append(PruneStep(0, method, granularity, manifest.amount,
                                        masks={k: encode_mask(v) for k, v in learned.masks.items()}))
    if learned.removal:
        widths = {l.name: l.width for l in unit_layers(work, "neuron" if granularity == "neuron" else "structured")}
        remove_units(work, learned.removal, torch.zeros(1, *shape))
        manifest.steps.append(PruneStep(0, method, granularity, manifest.amount,
                                        units={k: unit_entry(v, widths[k]) for k, v in learned.removal.items()}))
    if finetune_epochs > 0:
        cfg_ft = FinetuneConfig(finetune_epochs, opts.lr, opts.batch_size, opts.lr_schedule, domain=opts.domain, seed=seed)
        finetune(work, X, y, cfg_ft, learned.masks or None, checkpoint=phase_file(ck, "finetune"))
    if ck is not None:
        ck.finish()
    return rewrap(model, work.eval()), manifest


def _learn(mod, model, X, y, amount, granularity, cfg, opts, seed, ck):
    """``(trained work module, Learned)``: the learner's run, or its saved result when ``ck`` has one."""
    from certprune.pruning.layers import base_module

    saved = None if ck is None else ck.saved("learned")
    if saved is not None:
        torch.set_rng_state(saved["rng"])
        return saved["work"], saved["learned"]
    work = copy.deepcopy(base_module(model)).float().eval()
    learned = mod.learn(work, X, y, amount, granularity, cfg, opts, seed, checkpoint=phase_file(ck, "learn"))
    work = learned.model if learned.model is not None else work
    if ck is not None:
        ck.save("learned", {"work": work, "learned": learned, "rng": torch.get_rng_state()})
    return work, learned
