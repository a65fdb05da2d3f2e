"""Who is affected: the exact per-record check equals brute force, the sampled unfair share's
interval agrees with the proven bounds, and the CLI writes it all."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from certprune.verifiers.affected import sample_unfair_share, unfair_individuals
from certprune.verifiers.fairness import audit_fairness
from test_fairness_exact import biased_mlp, small_spec
from test_fairness_individuals import brute_counts


def _decider(model):
    """The engine's per-individual decisions (batched, re-run alone where the sign is open)."""
    from certprune.network import as_network
    from certprune.verifiers.fairness import EngineFactory
    from certprune.verifiers.bounds import affine_net
    from certprune.verifiers.fairness_bab import BabConfig
    return EngineFactory(affine_net(as_network(model)), model, small_spec(), BabConfig())().decide_points


def _domain(spec) -> np.ndarray:
    import itertools
    return np.array(list(itertools.product(*[range(int(l), int(h) + 1) for l, h in zip(spec.lower, spec.upper)])),
                    dtype=np.float64)


def test_per_record_check_equals_brute_force():
    for seed, rel in ((1, {}), (2, {"a": 1}), (3, {"c": 2})):
        model, spec = biased_mlp(seed), small_spec(relaxed=rel)
        X = _domain(spec)
        _, _, truth = brute_counts(model, spec)
        got = unfair_individuals(_decider(model), spec, X)
        assert {tuple(int(v) for v in x) for x in X[got]} == truth


def test_sampled_share_lies_within_proven_bounds():
    """Complete audit: the interval holds the exact share; budget-limited audit (tolerance 0.5):
    the interval meets [proven unfair, proven unfair + undecided]."""
    for seed, tol in ((1, 0.0), (2, 0.0), (1, 0.5), (2, 0.5)):
        model, spec = biased_mlp(seed), small_spec(relaxed={"a": 1})
        res = audit_fairness(model, spec, None, timeout=60, progress=False, undecided_tolerance=tol, samples=4000)
        sh, est = res.summary["individual_share"], res.summary["sampled_unfair_share"]
        lo, hi = sh["unfair"], sh["unfair"] + sh["undecided"]
        assert est["low"] <= hi + 1e-12 and est["high"] >= lo - 1e-12
        assert est["low"] <= est["share"] <= est["high"] and est["samples"] == 4000
        if tol == 0.0:
            assert res.summary["individuals"]["undecided"] == 0 and est["low"] <= lo <= est["high"]
    direct = sample_unfair_share(_decider(model), spec, 4000)
    assert direct.as_dict() == est


def test_records_are_counted_and_listed(tmp_path):
    model, spec = biased_mlp(1), small_spec()
    X = _domain(spec)[::7]
    _, _, truth = brute_counts(model, spec)
    res = audit_fairness(model, spec, None, timeout=60, progress=False, records=X, out_dir=tmp_path,
                         map_features=("a", "c"))
    want = [i for i, x in enumerate(X) if tuple(int(v) for v in x) in truth]
    assert res.summary["records"]["unfair"] == len(want) > 0
    assert res.affected["record"].tolist() == want
    saved = pd.read_csv(tmp_path / "affected_records.csv")
    assert saved["record"].tolist() == want
    html = (tmp_path / "report.html").read_text()
    assert "Affected records" in html and "Wilson" in html and "proven unfair" in html
    assert "Unfair individuals by a and c" in html and html.count("data:image/png;base64,") == 3
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["records"]["unfair"] == len(want)


def test_unknown_map_feature_is_a_spec_error():
    import pytest
    from certprune.errors import SpecError
    with pytest.raises(SpecError, match="unknown feature"):
        audit_fairness(biased_mlp(1), small_spec(), None, timeout=5, progress=False, map_features=("a", "zz"))
