"""``prune``: scores -> masks or physical removal -> fine-tuning, repeated for iterative
schedules, recorded in a :class:`~certprune.pruning.manifest.Manifest`."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from certprune.errors import ConfigError, ShapeMismatchError
from certprune.pruning import masks as masklib
from certprune.pruning.criteria import criterion
from certprune.pruning.criteria.base import ScoreContext
from certprune.pruning.criteria.budgets import budget_counts, capped_keep, select_by_counts
from certprune.pruning.finetune import FinetuneConfig, finetune
from certprune.pruning.checkpoint import open_run, phase_file
from certprune.pruning.learners import METHODS as LEARNERS, prune_learned
from certprune.pruning.layers import base_module, unit_layers, weight_layers
from certprune.pruning.manifest import Manifest, PruneStep, apply_manifest, encode_mask, unit_entry
from certprune.pruning.schedules import cumulative_amounts, round_slice, silo_max_lr
from certprune.pruning.structural import remove_units, select_units

GRANULARITIES = ("unstructured", "nm", "neuron", "channel", "structured")


@dataclass(frozen=True)
class PruneOptions:
    """Extra options of :func:`prune` (unknown keys are rejected).

    ``scope``: global or local (default: global for stability, whose paper uses one global
    threshold, and for unstructured masks; local for other unit criteria). ``steps``: iterative
    pruning steps (geometric). ``rewind``: reset surviving weights to the input model's before each
    fine-tuning. ``silo``: per-step max LR rises on an S-curve from ``lr/10`` to ``lr``.
    ``score_samples``: data points used for scoring (first ones). ``min_keep``: fraction of every
    layer's units that unit pruning never removes (0: none protected; a layer emptied is an error).
    ``stability_reduce``: mean or sum over a channel's positions of its stability scores.
    ``stability_norm``: none or radius, the stability loss's normalisation (radius for convnets).
    ``protected``: column of the inputs holding the protected attribute (criterion m-info-flow).
    ``stability_magnitude``: weight in [0, 1] of the magnitude rank in stability scores (0: none).
    Criteria that set per-layer budgets (``layer_budgets``) share each step's removals by them.
    ``layer_caps``: {layer name: largest fraction of its original units removed}, e.g. ``{"0": 0.5}``
    protects the first conv layer; what a capped layer cannot lose goes to the other layers, so the
    amount is still reached (per-layer scope or layer budgets only). ``finetune_fraction``: share of
    the data each step's fine-tuning sees (a different slice each step, in turn), so that many small
    steps can cost the same epochs as a few: 12 steps at 0.5 = 6 steps at 1.
    """

    scope: str | None = None
    norm: str = "l1"
    steps: int = 1
    rewind: bool = False
    silo: bool = False
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    batch_size: int = 128
    stability_weight: float = 0.0
    train_epsilon: float | None = None
    slimming_weight: float = 0.0
    hvp_samples: int | None = None
    domain: tuple[float, float] | None = (0.0, 1.0)
    bound_method: str = "crown"
    score_samples: int = 512
    input_shape: tuple[int, ...] | None = None
    min_keep: float = 0.0
    stability_reduce: str = "mean"
    protected: int | None = None
    stability_norm: str = "none"
    stability_magnitude: float = 0.0
    layer_caps: dict[str, float] | None = None
    finetune_fraction: float = 1.0


def make_options(options: dict) -> PruneOptions:
    """PruneOptions from keyword arguments; ConfigError naming unknown keys."""
    known = {f.name for f in dataclasses.fields(PruneOptions)}
    bad = sorted(set(options) - known)
    if bad:
        raise ConfigError(f"unknown prune option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    return PruneOptions(**options)


def as_tensors(data) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(X float32, y int64)`` from a pair of arrays/tensors or a DataLoader of (x, y) batches."""
    if data is None:
        return None, None
    if isinstance(data, torch.utils.data.DataLoader):
        xs, ys = zip(*[(b[0], b[1]) for b in data])
        return torch.cat(xs).float(), torch.cat(ys).long()
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = (torch.as_tensor(d) for d in data)
        if len(X) != len(y):
            raise ShapeMismatchError(f"data has {len(X)} inputs but {len(y)} labels")
        return X.float(), y.long()
    raise ConfigError("data must be a pair (inputs, labels) or a torch DataLoader")


def rewrap(original: nn.Module, module: nn.Module) -> nn.Module:
    """Return ``module`` as a Network if ``original`` was one (same input shape), else as is."""
    if hasattr(original, "info") and isinstance(getattr(original, "module", None), nn.Module):
        from certprune.network import Network
        info = dataclasses.replace(original.info, sha256="", path="")
        return Network(module, info)
    return module


def _input_shape(model: nn.Module, X: torch.Tensor | None, opts: PruneOptions) -> tuple[int, ...]:
    if opts.input_shape is not None:
        return tuple(opts.input_shape)
    if X is not None:
        return tuple(X.shape[1:])
    if hasattr(model, "info"):
        return tuple(model.info.input_shape)
    first = weight_layers(model)[0][1]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ShapeMismatchError("cannot infer the model's input shape; pass data or input_shape=")


def prune(model: nn.Module, method: str = "magnitude", amount: float | None = None, granularity: str = "unstructured",
          data=None, epsilon: float | None = None, n: int = 2, m: int = 4, seed: int = 0,
          finetune_epochs: int = 0, activate_while_pruning: bool = False, checkpoint: str | Path | None = None,
          **options) -> tuple[nn.Module, Manifest]:
    """Prune a copy of ``model`` (the input is not modified); returns ``(pruned, manifest)``.

    ``granularity``: unstructured (weight masks), nm (N:M masks, ``n`` of every ``m``; ``amount``
    is implied as 1 - n/m), neuron (hidden Linear units), channel (Conv2d filters) or structured
    (both); the last three remove units physically. ``amount`` in [0, 1): fraction of weights or
    of units removed, exactly (rounded to the nearest count). ``data``: (X, y) or a DataLoader,
    used for data-driven criteria and fine-tuning. ``epsilon``: L-inf radius for stability.
    ``activate_while_pruning``: after each step, re-activate dead units (AP,
    :mod:`certprune.pruning.learners.activate`; needs data). ``checkpoint``: a folder that makes
    the run resumable: started again with the same folder, a stopped run continues from its last
    saved epoch (step, for iterative schedules) and ends as an uninterrupted one; a folder of
    other settings is refused (:mod:`certprune.pruning.checkpoint`). See :class:`PruneOptions`
    for the rest.
    """
    if method in LEARNERS:  # mask learners train while pruning: certprune.pruning.learners
        if activate_while_pruning:
            raise ConfigError(f"activate_while_pruning wraps a scoring criterion, not the mask learner {method!r}")
        return prune_learned(model, method, amount, granularity, data, seed, finetune_epochs, options, checkpoint)
    opts = make_options(options)
    crit = criterion(method)
    if granularity not in GRANULARITIES:
        raise ConfigError(f"unknown granularity {granularity!r}; choose one of {', '.join(GRANULARITIES)}")
    if granularity == "nm":
        masklib.check_nm(n, m)
        amount = 1.0 - n / m
    elif amount is None:
        raise ConfigError("amount is required (fraction in [0, 1) of weights or units to remove)")
    amount = masklib.check_amount(amount) if granularity != "nm" else amount
    X, y = as_tensors(data)
    shape = _input_shape(model, X, opts)
    scope = opts.scope or ("global" if granularity == "unstructured" else getattr(crit, "DEFAULT_SCOPE", "local"))
    manifest = Manifest(method, granularity, amount, list(shape), seed, epsilon,
                        config={**dataclasses.asdict(opts), "scope": scope, "n": n, "m": m,
                                "finetune_epochs": finetune_epochs})
    original = copy.deepcopy(base_module(model)).float().eval()
    work = copy.deepcopy(original)
    steps = 1 if granularity == "nm" else opts.steps
    masks: dict[str, torch.Tensor] = {}
    widths0 = {l.name: l.width for l in unit_layers(work, granularity)} if granularity in ("neuron", "channel", "structured") else {}
    total_units = sum(widths0.values())
    _check_schedule_options(opts, granularity, scope, crit)
    removed_units = 0
    ck = open_run(checkpoint, model, X, y, method=method, amount=amount, granularity=granularity, seed=seed,
                  finetune_epochs=finetune_epochs, options=options, n=n, m=m, epsilon=epsilon,
                  activate_while_pruning=activate_while_pruning)
    done = None if ck is None else _resume_steps(ck, manifest)
    if done is not None:
        work, masks, removed_units = done["work"], done["masks"], done["removed_units"]
    for k, cumulative in enumerate(cumulative_amounts(amount, steps)):
        if done is not None and k < done["k"]:
            continue
        if granularity in ("unstructured", "nm"):
            ctx = _context(work, X, y, epsilon, seed + k, opts, cumulative)
            masks = _mask_step(crit, ctx, work, cumulative, scope, granularity, n, m, masks)
            step = PruneStep(k, method, granularity, cumulative, masks={n_: encode_mask(v) for n_, v in masks.items()})
        else:
            target = round(cumulative * total_units)
            current = total_units - removed_units
            ctx = _context(work, X, y, epsilon, seed + k, opts, (target - removed_units) / current)
            removal = _unit_step(crit, ctx, work, granularity, (target - removed_units) / current, scope, shape,
                                 opts, widths0)
            removed_units += sum(len(v) for v in removal[1].values())
            step = PruneStep(k, method, granularity, cumulative, units=removal[0])
        manifest.steps.append(step)
        if opts.rewind:
            work = base_module(apply_manifest(original, manifest))
        if activate_while_pruning:
            manifest.config.setdefault("activate_while_pruning", []).append(_activate(work, X))
        if finetune_epochs > 0:
            _finetune(work, X, y, epsilon, seed + k, opts, finetune_epochs, k, steps, masks, phase_file(ck, f"finetune{k}"))
        if ck is not None:
            ck.save("steps", {"k": k + 1, "work": work, "masks": masks, "removed_units": removed_units,
                              "steps": manifest.steps, "config": manifest.config})
    if ck is not None:
        ck.finish()
    return rewrap(model, work.eval()), manifest


def _resume_steps(ck, manifest: Manifest):
    """The state after the last finished step saved in ``ck`` (restored into ``manifest``), or None."""
    saved = ck.saved("steps")
    if saved is None:
        return None
    manifest.steps[:] = saved["steps"]
    manifest.config.update(saved["config"])
    return saved


def _activate(work, X) -> dict:
    if X is None:
        raise ConfigError("activate_while_pruning needs data=(inputs, labels) to measure dead neurons")
    from certprune.pruning.learners.activate import activate
    return activate(work, X)


def _context(work, X, y, epsilon, seed, opts: PruneOptions, amount: float) -> ScoreContext:
    n = opts.score_samples
    return ScoreContext(work, None if X is None else X[:n], None if y is None else y[:n], epsilon, seed,
                        opts.norm, opts.hvp_samples, opts.domain, opts.bound_method, opts.batch_size,
                        opts.stability_reduce, amount=amount, protected=opts.protected,
                        stability_magnitude=opts.stability_magnitude)


def _mask_step(crit, ctx, work, cumulative, scope, granularity, n, m, previous):
    layers = weight_layers(work)
    scores = crit.weight_scores(ctx, layers)
    if granularity == "nm":
        masks = {name: masklib.nm_mask(s, n, m, name) for name, s in scores.items()}
    else:
        masks = masklib.unstructured_masks(scores, cumulative, scope, previous)
    masklib.apply_masks(dict(layers), masks)
    return masks


def _check_schedule_options(opts: PruneOptions, granularity: str, scope: str, crit) -> None:
    """ConfigError for layer caps where one threshold decides, a fine-tuning share outside (0, 1], a
    learning rate <= 0, a min_keep outside [0, 1] or a negative stability weight."""
    if not 0.0 < opts.finetune_fraction <= 1.0:
        raise ConfigError(f"finetune_fraction must be in (0, 1], got {opts.finetune_fraction!r}")
    if not (0.0 < opts.lr < float("inf")):  # torch's optimizer would raise a bare ValueError mid-run
        raise ConfigError(f"lr (learning rate) must be a positive number, got {opts.lr!r}")
    if not 0.0 <= opts.min_keep <= 1.0:
        raise ConfigError(f"min_keep must be a fraction in [0, 1], got {opts.min_keep!r}")
    if not (0.0 <= opts.stability_weight < float("inf")):  # a negative weight would reward unstable ReLUs
        raise ConfigError(f"stability_weight must be a number >= 0, got {opts.stability_weight!r}")
    if opts.layer_caps and granularity not in ("neuron", "channel", "structured"):
        raise ConfigError("layer_caps applies to unit pruning (granularity neuron, channel or structured)")
    if opts.layer_caps and scope == "global" and not hasattr(crit, "layer_budgets"):
        raise ConfigError("layer_caps needs per-layer budgets: use scope='local' (one global threshold has none)")


def _unit_step(crit, ctx, work, granularity, step_amount, scope, shape, opts: PruneOptions, widths0):
    layers = unit_layers(work, granularity)
    widths = {l.name: l.width for l in layers}
    step_amount = min(max(step_amount, 0.0), 0.999999)
    scores = crit.unit_scores(ctx, layers)
    keep = capped_keep(widths, widths0, opts.layer_caps, opts.min_keep) if opts.layer_caps else None
    if hasattr(crit, "layer_budgets") or keep is not None:
        shares = crit.layer_budgets(ctx, layers, step_amount) if hasattr(crit, "layer_budgets") else dict.fromkeys(widths, 1.0)
        removal = select_by_counts(scores, budget_counts(shares, widths, step_amount, keep))
    else:
        removal = select_units(scores, step_amount, scope, opts.min_keep)
    remove_units(work, removal, torch.zeros(1, *shape))
    return {k: unit_entry(v, widths[k]) for k, v in removal.items()}, removal


def _finetune(work, X, y, epsilon, seed, opts: PruneOptions, epochs, k, steps, masks, checkpoint=None):
    if X is None:
        raise ConfigError("fine-tuning needs data=(inputs, labels)")
    lr = silo_max_lr(k, steps, opts.lr / 10, opts.lr) if opts.silo else opts.lr
    cfg = FinetuneConfig(epochs, lr, opts.batch_size, opts.lr_schedule, opts.stability_weight,
                         opts.train_epsilon if opts.train_epsilon is not None else epsilon,
                         opts.slimming_weight, opts.domain, seed, stability_norm=opts.stability_norm)
    if opts.finetune_fraction < 1.0:
        idx = round_slice(len(X), opts.finetune_fraction, k, seed - k)
        X, y = X[idx], y[idx]
    finetune(work, X, y, cfg, masks or None, checkpoint=checkpoint)
