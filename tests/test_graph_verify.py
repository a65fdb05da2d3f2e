"""``verify`` on graphs that are not ReLU chains (residual, concat branches, a twin network):
both verdicts agree with an exact MILP minimum (tests/graph_milp.py) with a 0.05 gap either
side, counterexamples re-run in float32 on the original module, and unknown is never wrong."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from certprune.graph import build_graph
from certprune.results import Verdict
from certprune.specs import box_property
from certprune.verifiers.verify import verify
from tests.graph_milp import milp_min
from tests.graph_nets import GRAPHS

GAP = 0.05
CASES = [("residual_mlp", 0), ("residual_relu_add", 1), ("concat_branches", 2), ("twin_mlp", 3)]


def _query(name: str, seed: int):
    make, shape = GRAPHS[name]
    m = make(seed)
    g = build_graph(m, shape)
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1, 0.5, g.input_dim)
    hi = lo + rng.uniform(0.2, 0.8, g.input_dim)
    a = rng.normal(size=g.output_dim)
    if name == "twin_mlp":
        a = np.array([1.0, -1.0])  # s(x) - s(x'): the twin's decision difference
    return m.float(), g, lo, hi, a


@pytest.mark.parametrize("name,seed", CASES)
@pytest.mark.parametrize("side", ["certified", "falsified"])
def test_verify_graph_agrees_with_exact_milp(name, seed, side):
    m, g, lo, hi, a = _query(name, seed)
    best = milp_min(g, lo, hi, a)
    # violation <=> a . y <= b ; the exact minimum is `best`
    b = best - GAP if side == "certified" else best + GAP
    prop = box_property(lo, hi, a[None], np.array([b]))
    res = verify(m, prop, timeout=60, config={"input_split_max_dim": 8})
    want = Verdict.CERTIFIED if side == "certified" else Verdict.FALSIFIED
    assert res.verdict == want, res.stats
    if res.verdict == Verdict.FALSIFIED:
        x = torch.as_tensor(res.counterexample, dtype=torch.float32).reshape(1, -1)
        y = m(x.reshape(1, *g.input_shape)).detach().double().numpy().ravel()
        assert float(a @ y) <= b and np.all(x.numpy() >= lo - 1e-7) and np.all(x.numpy() <= hi + 1e-7)


def test_verify_graph_needs_branching_and_stays_sound():
    """A tight property (gap 1e-3 above the exact minimum) forces input splitting on a graph."""
    m, g, lo, hi, a = _query("residual_relu_add", 5)
    best = milp_min(g, lo, hi, a)
    prop = box_property(lo, hi, a[None], np.array([best - 1e-3]))
    res = verify(m, prop, timeout=60, config={"input_split_max_dim": 8, "use_alpha_crown": False})
    assert res.verdict in (Verdict.CERTIFIED, Verdict.UNKNOWN)
    assert res.verdict == Verdict.CERTIFIED, res.stats
    assert res.stats.get("domains", 0) > 1


@pytest.mark.parametrize("side", ["certified", "falsified"])
def test_verify_graph_with_relu_splitting_agrees_with_exact_milp(side):
    """ReLU branching on a graph (split constraints clamped and as beta terms, LP leaves from the
    IR; the MILP leaf switched off so that the search branches): right verdicts."""
    m, g, lo, hi, a = _query("concat_branches", 7)
    best = milp_min(g, lo, hi, a)
    b = best - 0.02 if side == "certified" else best + 0.02
    res = verify(m, box_property(lo, hi, a[None], np.array([b])), timeout=60,
                 config={"strategy": "relu", "use_alpha_crown": False, "attack_restarts": 0, "attack_samples": 0,
                         "attack_corners": 0, "milp_max_unstable": 0})
    assert res.verdict == (Verdict.CERTIFIED if side == "certified" else Verdict.FALSIFIED), res.stats
    if side == "certified":
        assert res.stats["relu_splits"] > 0 and res.stats["input_splits"] == 0
