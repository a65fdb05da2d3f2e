"""Bad input gives a specific certprune error with a clear message (API and CLI)."""
from __future__ import annotations

import pytest

from certprune.errors import ConfigError, ShapeMismatchError, SpecError
from certprune.fairness_spec import FairnessSpec
from certprune.verifiers.fairness import audit_fairness
from test_fairness_exact import biased_mlp, small_spec


def test_model_input_size_must_match_schema():
    with pytest.raises(ShapeMismatchError, match="takes 5 inputs but the fairness domain has 4 features"):
        audit_fairness(biased_mlp(0, sizes=(5, 4, 1)), small_spec(), 4, progress=False)


def test_unknown_protected_attribute():
    with pytest.raises(SpecError, match="unknown protected attribute 'race'"):
        FairnessSpec(("a", "b"), [0, 0], [1, 1], ("race",))


def test_partition_size_zero():
    with pytest.raises(ConfigError, match="partition size must be a positive integer"):
        audit_fairness(biased_mlp(0), small_spec(), 0, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"relaxed": {"p": 1}}, "both protected and relaxed"),
    ({"relaxed": {"a": -1}}, "must be >= 0"),
])
def test_bad_relaxation(kwargs, match):
    with pytest.raises(SpecError, match=match):
        FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [7, 5, 1, 9], ("p",), **kwargs)


def test_workers_and_timeout_validated():
    with pytest.raises(ConfigError, match="workers"):
        audit_fairness(biased_mlp(0), small_spec(), 4, workers=0, progress=False)
    with pytest.raises(ConfigError, match="timeout"):
        audit_fairness(biased_mlp(0), small_spec(), 4, timeout=0, progress=False)


def test_resume_refuses_a_different_audit(tmp_path):
    audit_fairness(biased_mlp(0), small_spec(), 4, out_dir=tmp_path, progress=False, report=False)
    with pytest.raises(ConfigError, match="different audit"):
        audit_fairness(biased_mlp(1), small_spec(), 4, out_dir=tmp_path, progress=False, report=False)


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, shared_data):
    from certprune.cli import main
    model = shared_data / "fairness" / "fairify_models" / "GC-3.h5"
    rc = main(["fairness", str(model), "--dataset", "german", "--protected", "religion", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "unknown protected attribute 'religion'" in err and len(err.splitlines()) == 1
    rc = main(["fairness", str(model), "--dataset", "adult", "--protected", "sex", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "takes 20 inputs but the fairness domain has 13 features" in err
    rc = main(["fairness", str(model), "--dataset", "german", "--protected", "age", "--partition-size", "0",
               "--out", str(tmp_path)])
    assert rc == 2 and "partition size must be a positive integer" in capsys.readouterr().err
    rc = main(["fairness", str(model), "--dataset", "german", "--protected", "age", "--relax", "month",
               "--out", str(tmp_path)])
    assert rc == 2 and "--relax expects ATTR=DELTA" in capsys.readouterr().err
