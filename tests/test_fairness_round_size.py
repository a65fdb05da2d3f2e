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


def test_round_size_follows_the_share_of_elapsed_time():
    """``TwinBab._round_size``: a full batch until a round was timed, then ``round_share`` x the
    elapsed time (at least ``round_seconds``) over the seconds per unit, between ``first_round``
    and the full batch."""
    import time
    from types import SimpleNamespace
    cfg = BabConfig(first_round=256, round_share=0.25, round_seconds=0.03)
    size = fairness_bab.TwinBab._round_size
    now = time.perf_counter()
    fake = SimpleNamespace(cfg=cfg, unit_time=0.0, started=now)
    assert size(fake, 4096) == 4096  # no round timed yet
    fake.unit_time = 1e-4
    assert size(fake, 4096) == 300  # 0.03 s / 100 us: the floor of round_seconds
    fake.started = now - 1.0
    assert 2500 <= size(fake, 4096) <= 2600  # 0.25 x ~1 s / 100 us
    fake.started = now - 100.0
    assert size(fake, 4096) == 4096
    fake.started, fake.unit_time = now, 1.0
    assert size(fake, 4096) == 256  # never below first_round
    assert size(SimpleNamespace(cfg=BabConfig(round_share=0.0), unit_time=1.0, started=now), 4096) == 4096


def test_small_rounds_give_the_brute_force_counts(monkeypatch):
    """Rounds held to ``first_round`` units while the pool is larger (a slow clock for the cap)
    only reorder the work: the complete audit's counts equal brute force."""
    from test_fairness_exact import biased_mlp
    from test_fairness_individuals import _check
    asked = []
    orig = fairness_bab.UnitPool.pop

    def spy(self, k, drain=False):
        asked.append((k, len(self)))
        return orig(self, k, drain)
    monkeypatch.setattr(fairness_bab.UnitPool, "pop", spy)
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [31, 15, 1, 27], ("p",))
    cfg = BabConfig(enum_points=0, first_round=8, batch=4096, round_share=1e-9, round_seconds=1e-9)
    model = biased_mlp(1)
    res = audit_fairness(model, spec, None, timeout=60, progress=False, config=cfg, samples=0)
    _check(res, model, spec)
    assert any(k == 8 and n > 8 for k, n in asked[1:])


def test_crown_pass_runs_while_its_yield_pays_for_its_time():
    """``TwinBab._crown_on``: on before any measurement and while ``crown_value`` x yield covers
    the pass's share of the bound time, else only on every ``crown_probe``-th round; always on
    with ``crown_value`` 0."""
    from types import SimpleNamespace
    on = fairness_bab.TwinBab._crown_on
    cfg = BabConfig(crown_value=8.0, crown_probe=8)
    fake = SimpleNamespace(cfg=cfg, crown_yield=1.0, crown_share=0.0, rounds=3)
    assert on(fake)
    fake.crown_yield, fake.crown_share = 0.05, 0.3  # 0.4 >= 0.3
    assert on(fake)
    fake.crown_yield = 0.01  # 0.08 < 0.3: probes only
    assert not on(fake)
    fake.rounds = 16
    assert on(fake)
    fake.rounds = 3
    fake.cfg = BabConfig(crown_value=0.0)
    assert on(fake)


@pytest.mark.parametrize("value", [0.0, 1e-9])
def test_audits_with_and_without_the_crown_pass_give_the_brute_force_counts(monkeypatch, value):
    """Two hidden layers, so twin boxes get the CROWN pass; with ``crown_value`` 1e-9 it is off
    after the first rounds (checked), with 0 always on: the complete counts equal brute force."""
    from test_fairness_exact import biased_mlp
    from test_fairness_individuals import _check
    passes = []
    orig = fairness_bab.twin_bounds

    def spy(*a, **k):
        passes.append(k.get("crown_pass", True))
        return orig(*a, **k)
    monkeypatch.setattr(fairness_bab, "twin_bounds", spy)
    spec = FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [31, 15, 1, 27], ("p",))
    for seed in (0, 2):
        passes.clear()
        model = biased_mlp(seed)
        cfg = BabConfig(enum_points=8, first_round=8, crown_value=value, crown_probe=4)
        res = audit_fairness(model, spec, None, timeout=60, progress=False, config=cfg, samples=0)
        _check(res, model, spec)
        assert all(passes) if value == 0 else (not all(passes) and any(passes))
