"""BabConfig.batch bounds the twin boxes of one engine round, whatever the number of protected
values: with Adult's 5-valued race (10 value pairs per unit) a round of ``batch`` units bounded 10x
as many boxes, and the first such round on Fairify's AC-4 grid ran ~30 s past a 60 s budget (the
deadline is checked between rounds). Soundness is unaffected; the audit still ends near its budget."""
from __future__ import annotations

import pytest

import certprune
from certprune.datasets.tabular import get_schema
from certprune.fairness_spec import FairnessSpec
from certprune.verifiers import fairness_bab
from certprune.verifiers.fairness import audit_fairness
from certprune.verifiers.fairness_bab import BabConfig


@pytest.mark.parametrize("protected,pairs", [(("race",), 10), (("sex",), 1)])
def test_round_twin_boxes_at_most_batch(shared_data, monkeypatch, protected, pairs):
    seen = []
    real = fairness_bab.twin_bounds

    def spy(net, layout, zlo, zhi, *a, **k):
        seen.append(len(zlo))
        return real(net, layout, zlo, zhi, *a, **k)
    monkeypatch.setattr(fairness_bab, "twin_bounds", spy)
    spec = FairnessSpec.from_schema(get_schema("adult"), protected, name="adult")
    assert len(fairness_bab.protected_values(spec)) * (len(fairness_bab.protected_values(spec)) - 1) // 2 == pairs
    net = certprune.load_model(shared_data / "fairness" / "fairify_models" / "AC-4.h5")
    res = audit_fairness(net, spec, 10, timeout=2, progress=False, samples=0, report=False,
                         config=BabConfig(batch=64, first_round=16))
    assert seen and max(seen) <= 64
    if pairs > 1:  # several units per round, each with its value pairs
        assert max(seen) > 64 // 2
    ind = res.summary["individuals"]
    assert ind["fair"] + ind["unfair"] + ind["undecided"] == ind["total"]
