"""Resume after SIGKILL equals an uninterrupted run; local workers (and Ray, if installed) give
the same verdicts as a serial run."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from certprune.verifiers.fairness import audit_fairness
from certprune.verifiers.fairness_bab import BabConfig
from test_fairness_exact import biased_mlp

TESTS = Path(__file__).resolve().parent
SIZE = 2  # 4 * 3 * 1 * 5 = 60 partitions


def _spec():
    from test_fairness_exact import small_spec
    return small_spec(relaxed={"c": 1})


def _verdicts(res):
    return res.partitions.set_index("partition")["verdict"].to_dict()


def _rows(db: Path) -> int:
    try:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT count(*) FROM partitions WHERE verdict != 'unknown'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    ref = audit_fairness(biased_mlp(3), _spec(), SIZE, timeout=120, progress=False, report=False)
    out = tmp_path / "audit"
    # a slow child: one box per round and a pause per round, so it is killed mid-audit
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from certprune.verifiers import fairness_bab
        from certprune.verifiers.fairness import audit_fairness
        from test_fairness_exact import biased_mlp, small_spec
        orig = fairness_bab.TwinBab._round
        def slow(self, *a):
            time.sleep(0.02)
            return orig(self, *a)
        fairness_bab.TwinBab._round = slow
        audit_fairness(biased_mlp(3), small_spec(relaxed={{"c": 1}}), {SIZE}, out_dir={str(out)!r}, progress=False,
                       config=fairness_bab.BabConfig(batch=1))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    t0 = time.time()
    while _rows(out / "audit.sqlite") < 5 and time.time() - t0 < 120 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _rows(out / "audit.sqlite")
    assert 0 < partial < ref.summary["partitions"], "the child should be killed mid-audit"
    res = audit_fairness(biased_mlp(3), _spec(), SIZE, timeout=120, out_dir=out, progress=False)
    assert _verdicts(res) == _verdicts(ref)
    assert res.summary["individuals"] == ref.summary["individuals"]  # exact counts survive a SIGKILL
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()


def test_rerun_skips_finished_partitions(tmp_path):
    first = audit_fairness(biased_mlp(2), _spec(), SIZE, timeout=120, out_dir=tmp_path, progress=False, report=False)
    again = audit_fairness(biased_mlp(2), _spec(), SIZE, timeout=120, out_dir=tmp_path, progress=False, report=False)
    assert _verdicts(first) == _verdicts(again)
    assert again.partitions["nodes"].tolist() == first.partitions["nodes"].tolist()  # nothing recomputed


def test_workers_match_serial(tmp_path):
    serial = audit_fairness(biased_mlp(3), _spec(), SIZE, timeout=120, progress=False, report=False)
    par = audit_fairness(biased_mlp(3), _spec(), SIZE, timeout=120, workers=2, out_dir=tmp_path, progress=False,
                         report=False, config=BabConfig(batch=16))
    assert _verdicts(par) == _verdicts(serial)
    assert par.summary["individuals"] == serial.summary["individuals"]
    assert set(serial.partitions["verdict"]) == {"certified", "falsified"}


@pytest.mark.ray
@pytest.mark.slow
def test_ray_matches_serial(tmp_path):
    """A local Ray cluster on 127.0.0.1 (about 40 s to start on CI, hence slow)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        ctx = ray.get_runtime_context()
        addr = getattr(ctx, "gcs_address", None) or "auto"
        serial = audit_fairness(biased_mlp(3), _spec(), SIZE, timeout=120, progress=False, report=False)
        rr = audit_fairness(biased_mlp(3), _spec(), SIZE, timeout=120, ray_address=addr, out_dir=tmp_path,
                            progress=False, report=False)
        assert _verdicts(rr) == _verdicts(serial)
        assert rr.summary["individuals"] == serial.summary["individuals"]
    finally:
        ray.shutdown()


def test_whole_domain_with_workers_is_cut_into_pieces_and_matches_serial(tmp_path):
    """A whole-domain audit (no partition size) with 2 local workers runs on PIECES_PER_WORKER x 2
    disjoint pieces that cover the domain (protected attributes never cut), and counts exactly the
    individuals of the serial one-partition audit (relaxed attribute included)."""
    from certprune.verifiers.fairness import PIECES_PER_WORKER, make_partitioning
    from certprune.verifiers.partition import box_points
    spec = _spec()
    part = make_partitioning(spec, None, None, workers=2)
    boxes = part.boxes
    assert len(boxes) == 2 * PIECES_PER_WORKER
    assert sum(box_points(boxes[:, 0], boxes[:, 1])) == box_points(spec.lower, spec.upper)[0]  # disjoint (checked) and covering
    for d in spec.protected_indices:
        assert np.all(boxes[:, 0, d] == spec.lower[d]) and np.all(boxes[:, 1, d] == spec.upper[d])
    assert len(make_partitioning(spec, None, None, workers=1).boxes) == 1
    serial = audit_fairness(biased_mlp(3), spec, None, timeout=120, progress=False, report=False)
    par = audit_fairness(biased_mlp(3), spec, None, timeout=120, workers=2, out_dir=tmp_path, progress=False,
                         report=False, config=BabConfig(batch=16))
    assert len(par.partitions) == 2 * PIECES_PER_WORKER and len(serial.partitions) == 1
    assert par.summary["individuals"] == serial.summary["individuals"]
    assert serial.summary["individuals"]["undecided"] == 0 and serial.summary["individuals"]["unfair"] > 0
