"""Known verdicts on a real Fairify model, the CLI outputs, and the demo command."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from certprune.cli import main


def _gc3(shared_data):
    return shared_data / "fairness" / "fairify_models" / "GC-3.h5"


def test_gc3_age_agrees_with_fairify_and_every_pair_flips_in_float32(tmp_path, shared_data, capsys):
    """Fairify decided all 201 GC-3/age partitions: 195 SAT, 6 UNSAT. Within a short budget we may
    certify at most those 6, every counterexample must flip the decision of the original model
    loaded independently, the individual counts must add up to the domain, and the sampled unfair
    share must agree with the proven bounds."""
    import certprune
    out = tmp_path / "gc3"
    rc = main(["fairness", str(_gc3(shared_data)), "--dataset", "german", "--protected", "age",
               "--partition-size", "100", "--timeout", "20", "--samples", "2000", "--no-progress", "--out", str(out)])
    assert rc in (0, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["certified"] <= 6 and summary["counts"]["falsified"] >= 100
    assert abs(sum(summary["domain_share"].values()) - 1) < 1e-9
    ind = summary["individuals"]
    assert ind["total"] == ind["fair"] + ind["unfair"] + ind["undecided"] == 870756470046720
    assert ind["fair"] > 0.3 * ind["total"]
    sh, est = summary["individual_share"], summary["sampled_unfair_share"]
    assert est["low"] <= sh["unfair"] + sh["undecided"] and est["high"] >= sh["unfair"]
    assert summary["semantics"] == "exact" and rc == (0 if summary["complete"] else 3)
    cex = pd.read_csv(out / "counterexamples.csv")
    assert len(cex) == summary["counterexample_pairs"] >= summary["counts"]["falsified"]
    assert list(cex.columns[:2]) == ["partition", "x.status"]
    names = [c[2:] for c in cex.columns if c.startswith("x.")]
    X, Xp = cex[[f"x.{n}" for n in names]].to_numpy(float), cex[[f"x_prime.{n}" for n in names]].to_numpy(float)
    net = certprune.load_model(_gc3(shared_data))
    single = np.array([net.run_float32(X[i:i + 1])[0, 0] for i in range(len(X))], dtype=np.float64)
    single_p = np.array([net.run_float32(Xp[i:i + 1])[0, 0] for i in range(len(X))], dtype=np.float64)
    assert ((single > 0) != (single_p > 0)).all()
    assert np.array_equal(single, cex["logit_x"].to_numpy()) and np.array_equal(single_p, cex["logit_x_prime"])
    age = names.index("age")
    same = [i for i in range(len(names)) if i != age]
    assert (X[:, same] == Xp[:, same]).all() and (X[:, age] != Xp[:, age]).all()
    decoded = pd.read_csv(out / "counterexamples_decoded.csv")
    assert set(decoded["x.age"]) | set(decoded["x_prime.age"]) <= {"<26", ">=26"}
    parts = pd.read_csv(out / "partitions.csv")
    assert len(parts) == 201 and parts["points"].sum() == ind["total"] and np.isfinite(parts["seconds"]).all()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Counterexamples" in html and "Not fair" in html
    printed = capsys.readouterr().out
    assert "proven unfair" in printed and "falsified" in printed


def test_demo_runs_on_the_bundled_model(tmp_path, capsys):
    from certprune.commands.demo import bundled_german_model
    from certprune.errors import ModelLoadError
    try:
        bundled_german_model()
    except ModelLoadError:
        pytest.skip("bundled German-credit model not in certprune/models yet")
    rc = main(["demo", "--out", str(tmp_path / "demo"), "--no-progress"])  # the default 15 s budget
    assert rc in (0, 3)
    text = capsys.readouterr().out
    assert "certified" in text and (tmp_path / "demo" / "report.html").is_file()
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["partitions"] == 1 and summary["semantics"] == "exact"
    assert summary["individuals"]["fair"] > 0  # proven individuals within the default budget
