"""Issue 8 items 2, 3, 5: result stores are locked against a second process (no stale lock after a
crash, forked workers join), decided partitions are never downgraded, certify's run identity
covers data set / offset / n, and corrupt stores give one line with exit code 2."""
from __future__ import annotations

import json
import multiprocessing as mp
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from certprune.cli import main
from certprune.errors import ConfigError, StoreBusyError
from certprune.verifiers.audit_store import AuditStore
from certprune.verifiers.store_lock import StoreLock

REPO = Path(__file__).resolve().parents[1]
DIGITS_MODEL = REPO / "certprune" / "models" / "digits_mlp.onnx"
GERMAN_MODEL = REPO / "certprune" / "models" / "german_mlp.onnx"

_HOLDER = """
import sys, time
from certprune.verifiers.store_lock import StoreLock
StoreLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder():
    """Start another process that holds the lock file given; yields a starter, kills them after."""
    procs = []

    def start(lock_path: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock_path)], stdout=subprocess.PIPE,
                             cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        procs.append(p)
        assert p.stdout.readline().strip() == b"locked"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def _outcome(pid: int, verdict: str, x=None):
    from certprune.verifiers.fairness_bab import PartitionOutcome
    pairs = [] if x is None else [(x, x, 0.5, -0.5)]
    return PartitionOutcome(pid, verdict, pairs=pairs, nodes=1, seconds=0.1)


def test_second_process_is_refused_and_a_killed_owner_leaves_no_stale_lock(tmp_path, holder):
    p = holder(tmp_path / "audit.sqlite.lock")
    with pytest.raises(StoreBusyError, match=rf"in use by another certprune run \(pid {p.pid}\)"):
        AuditStore(tmp_path / "audit.sqlite", {"a": 1})
    p.send_signal(signal.SIGKILL)
    p.wait()
    store = AuditStore(tmp_path / "audit.sqlite", {"a": 1})  # the kernel dropped the dead owner's lock
    store.close()


def test_lock_is_released_on_close_and_reentrant_in_one_process(tmp_path):
    a = StoreLock(tmp_path / "x.lock").acquire()
    b = StoreLock(tmp_path / "x.lock").acquire()  # same process: joins
    b.release()
    a.release()
    out = subprocess.run([sys.executable, "-c", "import sys; from certprune.verifiers.store_lock import StoreLock; "
                          "StoreLock(sys.argv[1]).acquire(); print('ok')", str(tmp_path / "x.lock")],
                         capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "ok", out.stderr


def _child_opens_store(path: str, queue) -> None:
    try:
        s = AuditStore(path, {"a": 1})
        s.write([_outcome(7, "certified")])
        s.close()
        queue.put("joined")
    except Exception as e:  # reported to the parent
        queue.put(f"{type(e).__name__}: {e}")


def test_forked_worker_joins_its_parents_lock_but_a_stranger_does_not(tmp_path, holder):
    store = AuditStore(tmp_path / "audit.sqlite", {"a": 1})
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    child = ctx.Process(target=_child_opens_store, args=(str(tmp_path / "audit.sqlite"), q))
    child.start()
    child.join(60)
    assert q.get(timeout=5) == "joined"
    assert store.finished() == {7}
    # the child's close did not free the parent's lock: another process is still refused
    out = subprocess.run([sys.executable, "-c", "import sys; from certprune.verifiers.audit_store import AuditStore; "
                          "AuditStore(sys.argv[1], {'a': 1})", str(tmp_path / "audit.sqlite")],
                         capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert out.returncode != 0 and "StoreBusyError" in out.stderr
    store.close()


def test_decided_partition_is_never_downgraded(tmp_path):
    s = AuditStore(tmp_path / "audit.sqlite", {"a": 1})
    s.write([_outcome(1, "falsified", x=np.array([1, 2])), _outcome(2, "unknown"), _outcome(3, "certified")])
    s.write([_outcome(1, "unknown"), _outcome(2, "falsified", x=np.array([3, 4])), _outcome(3, "unknown"),
             _outcome(4, "unknown")])
    s.write([_outcome(3, "falsified", x=np.array([0, 0]))])  # a decided row is kept as it is
    f = s.frame().set_index("pid")
    s.close()
    assert f.verdict.to_dict() == {1: "falsified", 2: "falsified", 3: "certified", 4: "unknown"}
    assert json.loads(f.loc[1, "pairs"])[0][0] == [1, 2] and json.loads(f.loc[2, "pairs"])[0][0] == [3, 4]
    assert json.loads(f.loc[3, "pairs"]) == []


def test_fairness_cli_on_a_busy_out_is_one_line_exit_2(tmp_path, holder, capsys):
    holder(tmp_path / "audit.sqlite.lock")
    rc = main(["fairness", str(GERMAN_MODEL), "--dataset", "german", "--protected", "age", "--timeout", "5",
               "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "in use by another certprune run" in err


@pytest.mark.parametrize("content", [b"this is not a database at all" * 10, b"SQLite format 3\x00" + b"\x01" * 50])
def test_corrupt_audit_store_is_one_line_exit_2(tmp_path, capsys, content):
    (tmp_path / "audit.sqlite").write_bytes(content)
    with pytest.raises(ConfigError, match="not a readable audit store"):
        AuditStore(tmp_path / "audit.sqlite", {"a": 1})
    rc = main(["fairness", str(GERMAN_MODEL), "--dataset", "german", "--protected", "age", "--timeout", "5",
               "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "corrupt" in err
    StoreLock(tmp_path / "audit.sqlite.lock").acquire().release()  # the failed open left no lock behind


def _certify(out, *extra) -> list[str]:
    return ["certify", str(DIGITS_MODEL), "--dataset", "digits", "--eps", "0.01", "--timeout", "5",
            "--no-progress", "--out", str(out), *extra]


def test_certify_refuses_other_n_offset_and_reports_exactly_the_asked_samples(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_certify(out, "-n", "4")) == 0
    capsys.readouterr()
    for extra, field in ((["-n", "6"], "n"), (["-n", "4", "--offset", "1502"], "offset")):
        assert main(_certify(out, *extra)) == 2
        err = capsys.readouterr().err.strip()
        assert "holds results of another run" in err and field in err and len(err.splitlines()) == 1
    # a row of a sample not asked for (e.g. left by an older version) is not counted
    rows = (out / "samples.csv").read_text().splitlines()
    (out / "samples.csv").write_text("\n".join(rows + ["1790,0,9,False,False,misclassified,clean,0.0,0.0"]) + "\n")
    assert main(_certify(out, "-n", "4")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 4 and sum(summary["counts"].values()) == 4
    assert summary["dataset"] == "digits" and summary["offset"] == 1500
    assert "(n=4)" in capsys.readouterr().out


def test_certify_stray_samples_csv_and_corrupt_config_are_refused(tmp_path, capsys):
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "samples.csv").write_text("index,label\n1,2\n")
    assert main(_certify(stray, "-n", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert "no config.json" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"eps": 0.01, ')
    assert main(_certify(bad, "-n", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert "config.json is corrupt" in err and len(err.splitlines()) == 1


def test_certify_busy_out_and_out_a_file(tmp_path, holder, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder(out / "samples.lock")
    assert main(_certify(out, "-n", "2")) == 2
    assert "in use by another certprune run" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(_certify(f, "-n", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert "exists and is not a directory" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", ["fairness", "certify"])
def test_out_that_is_a_file_or_cannot_be_created_is_one_line_exit_2(tmp_path, capsys, command):
    f = tmp_path / "file"
    f.write_text("x")
    for out, text in ((f, "exists and is not a directory"), (f / "sub", "cannot create output directory")):
        if command == "fairness":
            args = ["fairness", str(GERMAN_MODEL), "--dataset", "german", "--protected", "age", "--timeout", "5",
                    "--no-progress", "--out", str(out)]
        else:
            args = _certify(out, "-n", "2")
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert text in err and len(err.splitlines()) == 1
    assert f.read_text() == "x"
