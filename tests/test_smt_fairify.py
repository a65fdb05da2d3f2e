"""z3 back end on real Fairify models: German credit partitions through the twin graph."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certprune.datasets import get_schema
from certprune.fairness_spec import FairnessSpec
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.partition import grid_partition
from certprune.verifiers.smt import solve_property
from certprune.verifiers.twin import partition_properties, twin_graph, twin_layout


def _setup(shared_data, name: str):
    from certprune.network import load_model
    path = shared_data / "fairness" / "fairify_models" / f"{name}.h5"
    if not path.exists():
        pytest.skip(f"{path} not present")
    model = load_model(path)
    spec = FairnessSpec.from_schema(get_schema("german"), "sex")
    part = grid_partition(spec.lower, spec.upper, 100)
    return model, AffineReluNet.from_module(model), spec, part


def _float32_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).numpy().ravel()


def test_gc3_counterexample_flips_the_float32_decision(shared_data):
    model, net, spec, part = _setup(shared_data, "GC-3")
    layout = twin_layout(spec)
    tw = twin_graph(net, layout).graph
    lo, hi = part.bounds([105])
    (prop,) = partition_properties(spec, lo[0], hi[0])
    out = solve_property(tw, prop, timeout=60)
    assert out.status == "sat"
    x, xp = layout.split(out.x[None])
    assert np.all(x >= lo) and np.all(x <= hi) and np.all(xp >= lo) and np.all(xp <= hi)
    assert x[0, 19] != xp[0, 19] and np.array_equal(np.delete(x, 19), np.delete(xp, 19))
    y, yp = _float32_logits(model, np.concatenate([x, xp]))
    assert (y > 0) != (yp > 0)


def test_gc4_partition_is_certified_and_sampling_agrees(shared_data):
    model, net, spec, part = _setup(shared_data, "GC-4")
    lo, hi = part.bounds([105])
    (prop,) = partition_properties(spec, lo[0], hi[0])
    out = solve_property(twin_graph(net, twin_layout(spec)).graph, prop, timeout=60)
    assert out.status == "unsat"
    rng = np.random.default_rng(0)
    x = rng.integers(lo[0].astype(int), hi[0].astype(int) + 1, size=(20000, 20)).astype(np.float64)
    x[:, 19] = 0
    xp = x.copy()
    xp[:, 19] = 1
    assert np.all((_float32_logits(model, x) > 0) == (_float32_logits(model, xp) > 0))
