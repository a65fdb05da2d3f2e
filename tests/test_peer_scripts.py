"""The peer side-by-side scripts' parsers and helpers, on output captured from real runs of
FairQuant (briankim113/FairQuant-Artifact) and nnenum (stanleybak/nnenum); no peer needed."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from certprune.datasets.tabular import get_schema

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fq = _load("fairquant_side_by_side")
nn = _load("nnenum_side_by_side")

GC4_LOG = """
running network /tmp/fairquant-258qkdfi/GC-4.nnet on sens_feature_idx = 11

no more subproblems, complete termination
0.35 sec | 7893 solved subps | 77 advs
cer_rate: 99.65%, fal_rate: 0.00%, und_rate: 0.34%
"""
BM1_LOG = """
running network /tmp/fairquant-258qkdfi/BM-1.nnet on sens_feature_idx = 0

60.84 sec | 119359 solved subps | 3506 advs
cer_rate: 83.25%, fal_rate: 0.00%, und_rate: 16.74%
timeout of 60 seconds
"""
# The artifact's BM-1.nnet header (ranges in Fairify's range_dict order, not the model's), one weight row.
BM1_HEAD = """// Neural Network File Format by Kyle Julian, Stanford 2016
3,16,1,64,
16,64,16,1,
0,
0,0,0,0,0,0,0,0,0,-3,0,1,0,0,0,0,
10,2,6,1,1,1,1,11,6,1,5000,50,999,7,2,1,
5,1,3,0.5,0.5,0.5,0.5,5.5,3,-1,2500,25.5,499.5,3.5,1,0.5,0.5,
10,2,6,1,1,1,1,11,6,4,5000,49,999,7,2,1,1,
6.06541e-03,1.41700e-01,-1.26927e-01,7.23978e-02,
"""


def test_fairquant_complete_run_parsed_exactly():
    r = fq.parse_fairquant(GC4_LOG)
    assert r == {"fq_seconds": 0.35, "fq_subproblems": 7893, "fq_cex": 77, "fq_cer": 99.65,
                 "fq_fal": 0.0, "fq_und": 0.34, "fq_end": "complete"}


def test_fairquant_timeout_and_quasi_complete_ends():
    assert fq.parse_fairquant(BM1_LOG)["fq_end"] == "timeout"
    assert fq.parse_fairquant(BM1_LOG)["fq_und"] == 16.74
    quasi = GC4_LOG.replace("no more subproblems, complete", "very low rateUncer < 0.00001, quasi-complete")
    assert fq.parse_fairquant(quasi)["fq_end"] == "quasi-complete"


def test_fairquant_truncated_output_is_an_error():
    with pytest.raises(ValueError):
        fq.parse_fairquant(GC4_LOG.splitlines()[1] + "\n")


def test_certprune_individuals_preferred_and_must_add_up():
    s = {"individuals": {"total": 200, "fair": 150, "unfair": 30, "undecided": 20},
         "domain_share": {"certified": 0.1, "falsified": 0.9, "undecided": 0.0}, "seconds": 3.5}
    r = fq.parse_certprune_summary(s)
    assert (r["cp_fair"], r["cp_unfair"], r["cp_undecided"], r["cp_unit"]) == (75.0, 15.0, 10.0, "individuals")
    s["individuals"]["fair"] = 151
    with pytest.raises(ValueError):
        fq.parse_certprune_summary(s)


def test_certprune_partition_shares_when_no_individuals():
    s = {"partitions": 201, "counts": {"certified": 6, "falsified": 195, "undecided": 0},
         "domain_share": {"certified": 0.02504874756262187, "falsified": 0.9749512524373781, "undecided": 0.0},
         "seconds": 5.77}
    r = fq.parse_certprune_summary(s)
    assert r["cp_unit"] == "partitions" and r["cp_seconds"] == 5.77
    assert math.isclose(r["cp_fair"] + r["cp_unfair"] + r["cp_undecided"], 100.0)


def _header(text: str) -> list[list[float]]:
    lines = text.split("\n")[4:8]
    return [[float(v) for v in ln.rstrip(",").split(",")] for ln in lines]


def test_bank_header_rewritten_to_model_order_weights_untouched():
    lows, highs, pa = fq.schema_domain("bank", "age")
    text, changed = fq.nnet_with_domain(BM1_HEAD, lows, highs)
    mins, maxes, means, ranges = _header(text)
    assert changed and pa == 0 and (mins[0], maxes[0]) == (0, 1)        # age first, binary, as the weights expect
    assert mins == lows and maxes == highs and ranges[:16] == [h - l for l, h in zip(lows, highs)]
    assert ranges[16] == 1 and means[16] == 0.5                          # the output entries are kept
    schema = get_schema("bank").features
    volume = math.prod(int(r) + 1 for r in ranges[:16])                  # FairQuant's global_volume
    assert volume == math.prod(f.high - f.low + 1 for f in schema)
    assert text.split("\n")[8:] == BM1_HEAD.split("\n")[8:]
    again, changed2 = fq.nnet_with_domain(text, lows, highs)
    assert again == text and not changed2


def test_header_with_wrong_width_rejected():
    lows, highs, _ = fq.schema_domain("german", "age")
    with pytest.raises(ValueError):
        fq.nnet_with_domain(BM1_HEAD, lows, highs)


def test_nnenum_result_words():
    assert nn.nnenum_result("holds") == "unsat"
    assert nn.nnenum_result("violated\n") == "sat"
    assert nn.nnenum_result("timeout") == "timeout"
    assert nn.nnenum_result("error") == "error"
    assert nn.nnenum_result("") == "unknown"
    assert nn.nnenum_result("unknown") == "unknown"


def test_interleave_is_round_robin_and_keeps_every_instance():
    rows = [("a", "p1", 1.0), ("b", "p1", 1.0), ("c", "p1", 1.0), ("a", "p2", 2.0), ("b", "p3", 3.0)]
    out = nn.interleave(rows)
    assert sorted(out) == sorted(rows)
    assert [r[1] for r in out] == ["p1", "p2", "p3", "p1", "p1"]


def test_every_kth_keeps_every_kth_instance_of_each_property():
    rows = [(f"n{i}", "p1", 1.0) for i in range(7)] + [("n0", "p5", 1.0)]
    assert nn.every_kth(rows, 3) == [("n0", "p1", 1.0), ("n3", "p1", 1.0), ("n6", "p1", 1.0), ("n0", "p5", 1.0)]
    assert nn.every_kth(rows, 1) == rows


def test_run_interleaved_alternates_tools_per_instance_and_resumes(tmp_path, monkeypatch):
    """Both tools run instance i before instance i+1 (first tool alternating); a rerun skips
    the rows already in each tool's CSV and only runs what is missing."""
    import argparse
    calls = []

    def fake(tool, onnx, vnn, budget, a, out):
        calls.append((tool, onnx, budget))
        return ("unsat", 0.5) if tool == "nnenum" else ("sat", 0.25)
    monkeypatch.setattr(nn, "run_one", fake)
    rows = [("n0", "p1", 116.0), ("n1", "p1", 116.0), ("n2", "p1", 10.0)]
    a = argparse.Namespace(cap=30.0, retry_errors=False, instances=str(tmp_path / "instances.csv"))
    nn.run_interleaved(["nnenum", "certprune"], rows[:2], a, tmp_path)
    assert calls == [("nnenum", "n0", 30.0), ("certprune", "n0", 30.0), ("certprune", "n1", 30.0), ("nnenum", "n1", 30.0)]
    calls.clear()
    nn.run_interleaved(["nnenum", "certprune"], rows, a, tmp_path)
    assert calls == [("nnenum", "n2", 10.0), ("certprune", "n2", 10.0)]
    done = nn.load_rows(tmp_path / "nnenum_side_by_side_certprune.csv")
    assert sorted(k[0] for k in done) == ["n0", "n1", "n2"] and {r["result"] for r in done.values()} == {"sat"}


def test_a_rerun_with_another_cap_runs_again_and_the_label_follows_the_rows(tmp_path, monkeypatch):
    """Rows stored at another budget are not skipped: the instance runs at the new --cap and its new
    row is the one read back; the report's budget label comes from the rows' timeout column."""
    import argparse
    calls = []

    def fake(tool, onnx, vnn, budget, a, out):
        calls.append((tool, onnx, budget))
        return ("unsat", 0.5)
    monkeypatch.setattr(nn, "run_one", fake)
    rows = [("n0", "p1", 116.0), ("n1", "p1", 20.0)]
    a = argparse.Namespace(cap=10.0, retry_errors=False, instances=str(tmp_path / "instances.csv"))
    nn.run_interleaved(["certprune"], rows, a, tmp_path)
    path = tmp_path / "nnenum_side_by_side_certprune.csv"
    assert nn.budget_label(nn.load_rows(path)) == "10 s"
    calls.clear()
    a.cap = 30.0
    nn.run_interleaved(["certprune"], rows, a, tmp_path)
    assert calls == [("certprune", "n0", 30.0), ("certprune", "n1", 20.0)]  # both budgets changed
    calls.clear()
    nn.run_interleaved(["certprune"], rows, a, tmp_path)
    assert calls == []  # same budgets: nothing to run
    done = nn.load_rows(path)
    assert {k[0]: float(r["timeout"]) for k, r in done.items()} == {"n0": 30.0, "n1": 20.0}
    assert nn.budget_label(done) == "20 s (1 rows), 30 s (1 rows)"


def test_summary_and_disagreements():
    def rows(words):
        return {(f"n{i}", "p"): {"result": w, "seconds": str(i + 1)} for i, w in enumerate(words)}
    a, b = rows(["unsat", "sat", "timeout", "unsat"]), rows(["sat", "sat", "unsat", "unsat"])
    s = nn.summarise(a)
    assert (s["decided"], s["unsat"], s["sat"], s["unknown"], s["total_s"]) == (3, 2, 1, 1, 10.0)
    assert s["median_s"] == 2.5 and s["median_decided_s"] == 2.0
    assert nn.disagreements(a, b) == [("n0", "p", "unsat", "sat")]
    md = nn.markdown({"nnenum": a, "certprune": b}, {"nnenum": "own", "certprune": "10 s"})
    assert "sat/unsat disagreements: 1" in md and "n0 p: nnenum unsat, certprune sat" in md


def test_coverage_race_reads_certprune_progress():
    prog = {"seconds": [0.0, 1.0, 2.5, 9.0], "fair_share": [0.0, 0.40, 0.585, 0.62], "unfair_share": [0.0] * 4}
    r = fq.coverage_race(prog, 58.44, 2.0)
    assert r == {"cp_t_fq": 2.5, "cp_fair_at_fq": 40.0}
    assert fq.coverage_race(prog, 70.0, 60.0) == {"cp_t_fq": None, "cp_fair_at_fq": 62.0}
    assert fq.coverage_race(None, 58.44, 2.0) == {}
