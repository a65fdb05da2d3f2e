"""experiments/fairify_benchmark.py's soundness checks: on a real Fairify model (GC-3, Fairify's grid,
a short budget) the checks pass on the audit's own result and catch a doctored one (partitions with
counterexamples relabelled proven fair, a summary claiming no unfair individual), and the
per-model comparison with Fairify's published partition counts."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load():
    spec = importlib.util.spec_from_file_location("fairify_benchmark", EXPERIMENTS / "fairify_benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fb = _load()


@pytest.fixture(scope="module")
def gc3_grid():
    import os

    from conftest import data_dir
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data directory {d} not present")
    os.environ.setdefault("CERTPRUNE_DATA", str(d))
    import certprune
    from certprune.datasets.tabular import get_schema
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    spec = FairnessSpec.from_schema(get_schema("german"), ("age",), name="german")
    net = certprune.load_model(d / "fairness" / "fairify_models" / "GC-3.h5")
    res = audit_fairness(net, spec, 100, timeout=3, progress=False, samples=4000, report=False)
    return net, spec, res


def test_checks_pass_on_the_audit_and_match_fairify(gc3_grid):
    net, spec, res = gc3_grid
    out = fb.sampled_checks(net, spec, res, n_box=300)
    assert out["interval_ok"]
    assert out["fair_box_points"] > 0 and out["fair_box_flips"] == 0
    assert out["unfair_box_misses"] == 0
    # GC-3 / age: Fairify checked all 201 partitions, 195 SAT, 6 UNSAT (data README)
    ref = fb.fairify_table(fb.models_dir().parent / "fairify_models" / "README.md")
    r = ref[(ref.model == "GC-3") & (ref.protected == "age")].iloc[0]
    c = res.summary["counts"]
    row = pd.Series({**r.to_dict(), "certified": c["certified"], "falsified": c["falsified"]})
    assert fb.fairify_agreement(row) in ("exact", "consistent")
    if c["undecided"] == 0:
        assert fb.fairify_agreement(row) == "exact"
    wrong = row.copy()
    wrong["certified"], wrong["falsified"] = 0, 200  # more partitions with a flip than Fairify left non-UNSAT
    assert fb.fairify_agreement(wrong) == "contradiction"


def test_checks_catch_doctored_results(gc3_grid):
    net, spec, res = gc3_grid
    parts = res.partitions.copy()
    cex = parts["pairs"] > 0
    assert cex.sum() > 100
    parts.loc[cex, "fair"] = parts.loc[cex, "points"]  # claim the partitions with flips wholly fair
    summary = dict(res.summary, individual_share={"fair": 1.0, "unfair": 0.0, "undecided": 0.0})
    fake = type(res)(summary, parts, res.counterexamples, None)
    out = fb.sampled_checks(net, spec, fake, n_box=300)
    assert not out["interval_ok"]          # ~4.5 % of GC-3's domain flips; the fake says 0
    assert out["fair_box_flips"] > 0       # a flipping point inside a "proven fair" partition
    parts2 = res.partitions.copy()
    parts2["unfair"] = parts2["points"]    # claim everything wholly unfair
    out2 = fb.sampled_checks(net, spec, type(res)(res.summary, parts2, res.counterexamples, None), n_box=300)
    assert out2["unfair_box_points"] == 201 and out2["unfair_box_misses"] > 150
