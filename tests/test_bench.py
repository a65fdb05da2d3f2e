"""`certprune bench`: in-process runs of an instances.csv, resumable results, the summary, and
the comparison with a reference tool's VNN-COMP results CSV (every sat/unsat conflict flagged)."""
from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from certprune.cli import main
from certprune.verifiers import bench
from certprune.vnncomp import parse_result

ACAS = [  # (network, property, known answer; Marabou agrees on the first two)
    ("2_3", 2, "sat"),
    ("1_9", 1, "unsat"),
    ("3_3", 2, "timeout"),  # hard: open after 20 s with the box search (2_4 / prop 1, used before, now
]                           # closes in under a second); nnenum and alpha-beta-CROWN decide it (unsat)
CAP = "3"  # seconds per instance: the two easy ones take 0.1-0.4 s on an idle machine


def write_instances(folder: Path, shared: Path) -> Path:
    """An instances.csv in the VNN-COMP layout (paths relative to it) over the shared ACAS Xu files."""
    d = shared / "vnncomp" / "acasxu"
    for sub in ("onnx", "vnnlib"):
        (folder / sub).symlink_to(d / sub)
    path = folder / "instances.csv"
    path.write_text("".join(f"onnx/ACASXU_run2a_{n}_batch_2000.onnx,vnnlib/prop_{p}.vnnlib,116\n" for n, p, _ in ACAS))
    return path


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    from tests.conftest import data_dir
    shared = data_dir()
    if not shared.is_dir():
        pytest.skip("shared data not present")
    folder = tmp_path_factory.mktemp("bench")
    inst = write_instances(folder, shared)
    out = folder / "out"
    code, stdout, stderr = run_cli(["bench", str(inst), "--timeout-cap", CAP, "--out", str(out)])
    return inst, out, code, stdout, stderr


def test_bench_runs_every_instance_and_summarises(first_run):
    inst, out, code, stdout, stderr = first_run
    assert code == 0, stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["result"] for r in rows] == [a for *_, a in ACAS]
    assert all(float(r["timeout"]) == float(CAP) for r in rows)          # the cap, not the csv's 116 s
    summary = json.loads((out / "summary.json").read_text())
    assert summary["instances"] == 3 and summary["solved"] == 2
    assert (summary["sat"], summary["unsat"], summary["timeout"], summary["error"]) == (1, 1, 1, 0)
    assert summary["total_seconds"] == pytest.approx(sum(float(r["seconds"]) for r in rows), abs=0.01)
    header, values = stdout.splitlines()[:2]
    assert header.split()[:3] == ["instances", "solved", "unsat"] and values.split()[:4] == ["3", "2", "1", "1"]
    assert "bench" in stderr and "3/3" in stderr                  # the progress bar went to stderr
    assert "strategy" in (out / "config.toml").read_text()


def test_bench_sat_row_has_a_checked_counterexample(first_run, shared_data):
    from tests.test_vnncomp_scripts import acas, check_witness
    _, out, *_ = first_run
    model, prop = acas(shared_data, "2_3", 2)
    text = (out / "counterexamples" / f"{model.name}__{prop.name}.txt").read_text()
    assert parse_result(text)[0] == "sat"
    check_witness(model, prop, text)


def test_bench_resumes_without_rerunning(first_run, monkeypatch):
    inst, out, *_ = first_run
    monkeypatch.setattr(bench, "run_instance", lambda *a, **k: pytest.fail("a stored instance was run again"))
    code, stdout, _ = run_cli(["bench", str(inst), "--timeout-cap", CAP, "--out", str(out)])
    assert code == 0
    assert stdout.splitlines()[1].split()[:4] == ["3", "2", "1", "1"]
    assert len(list(csv.DictReader(open(out / "results.csv")))) == 3


def _rows_of(out: Path) -> dict:
    return {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(open(out / "results.csv"))}


def test_bench_two_workers_give_the_serial_results_and_one_store(first_run, tmp_path, shared_data):
    """--workers 2: every instance once in results.csv (only the driver writes), the serial words,
    and the sat instance's counterexample file written and valid."""
    from tests.test_vnncomp_scripts import acas, check_witness
    inst, serial_out, *_ = first_run
    out = tmp_path / "par"
    code, stdout, stderr = run_cli(["bench", str(inst), "--timeout-cap", CAP, "--out", str(out), "--workers", "2"])
    assert code == 0, stderr
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + len(ACAS)
    assert {k: r["result"] for k, r in _rows_of(out).items()} == \
        {k: r["result"] for k, r in _rows_of(serial_out).items()}
    assert stdout.splitlines()[1].split()[:4] == ["3", "2", "1", "1"]
    model, prop = acas(shared_data, "2_3", 2)
    check_witness(model, prop, (out / "counterexamples" / f"{model.name}__{prop.name}.txt").read_text())


def test_bench_workers_resume_a_partial_store(first_run, tmp_path, monkeypatch):
    """A store holding two rows (one torn third row): --workers 2 runs only the missing instance."""
    inst, serial_out, *_ = first_run
    out = tmp_path / "part"
    out.mkdir()
    for name in ("bench.json", "config.toml"):
        (out / name).write_text((serial_out / name).read_text())
    head, *rows = (serial_out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text(head + rows[0] + rows[1] + rows[2][:12])
    seen = []
    real = bench.run_instance
    monkeypatch.setattr(bench, "run_instance", lambda i, *a, **k: (seen.append(i.onnx), real(i, *a, **k))[1])
    code, _, stderr = run_cli(["bench", str(inst), "--timeout-cap", CAP, "--out", str(out), "--workers", "2"])
    assert code == 0, stderr
    assert (out / "results.csv").read_text().count("\n") == 4      # header + 3 whole rows, torn one cut
    assert {k: r["result"] for k, r in _rows_of(out).items()} == \
        {k: r["result"] for k, r in _rows_of(serial_out).items()}
    assert seen == ["onnx/ACASXU_run2a_3_3_batch_2000.onnx"]   # one item left: map_items runs it here


@pytest.mark.parametrize("argv,needle", [(["--workers", "0"], "--workers"),
                                         (["--workers", "2", "--ray", "auto"], "not both")])
def test_bench_bad_scaleout_options_exit_2(first_run, tmp_path, capsys, argv, needle):
    inst, *_ = first_run
    assert main(["bench", str(inst), "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


@pytest.mark.slow
def test_bench_on_a_local_ray_gives_the_serial_results(first_run, tmp_path):
    """A local Ray cluster on 127.0.0.1 (skips without the ray extra)."""
    ray = pytest.importorskip("ray")
    inst, serial_out, *_ = first_run
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        addr = getattr(ray.get_runtime_context(), "gcs_address", None) or "auto"
        code, _, stderr = run_cli(["bench", str(inst), "--timeout-cap", CAP, "--out", str(tmp_path / "r"),
                                   "--ray", addr])
    finally:
        ray.shutdown()
    assert code == 0, stderr
    assert {k: r["result"] for k, r in _rows_of(tmp_path / "r").items()} == \
        {k: r["result"] for k, r in _rows_of(serial_out).items()}


def test_bench_refuses_a_folder_of_another_run(first_run, capsys):
    inst, out, *_ = first_run
    assert main(["bench", str(inst), "--timeout-cap", "7", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another run" in err and "timeout_cap" in err


def test_bench_reference_disagreement_is_flagged(first_run, tmp_path):
    """A reference (VNN-COMP 2021 words holds / violated) that calls the sat instance 'holds'."""
    inst, out, *_ = first_run
    ref = tmp_path / "ref.csv"
    ref.write_text("acasxu,./benchmarks/acasxu/ACASXU_run2a_2_3_batch_2000.onnx.gz,./benchmarks/acasxu/prop_2.vnnlib.gz,"
                   "0.01,holds,3.2\n"
                   "acasxu,./benchmarks/acasxu/ACASXU_run2a_1_9_batch_2000.onnx,./benchmarks/acasxu/prop_1.vnnlib,"
                   "0.01,unsat,1.0\n"
                   "acasxu,./benchmarks/acasxu/ACASXU_run2a_3_3_batch_2000.onnx,./benchmarks/acasxu/prop_2.vnnlib,"
                   "0.01,unsat,7.0\n")
    code, stdout, _ = run_cli(["bench", str(inst), "--timeout-cap", CAP, "--out", str(out), "--reference", str(ref)])
    assert code == 4
    flagged = [line for line in stdout.splitlines() if line.startswith("DISAGREE")]
    assert flagged == ["DISAGREE onnx/ACASXU_run2a_2_3_batch_2000.onnx vnnlib/prop_2.vnnlib: certprune sat, reference unsat"]
    assert "1 agree, 1 disagree, 0 decided only by certprune, 1 only by the reference" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"]["disagreements"][0]["reference"] == "unsat"


def test_store_skips_a_torn_last_row(tmp_path):
    """A run killed while writing leaves half a row: it is not counted done, the next run's store
    cuts it once when it opens, and the next row is whole."""
    from certprune.verifiers.bench_store import BenchStore
    store = BenchStore(tmp_path, {"instances": "x"}, {})
    store.append({"onnx": "a.onnx", "vnnlib": "p.vnnlib", "timeout": 1, "result": "unsat", "seconds": 0.1})
    with open(store.results_path, "a") as f:
        f.write("b.onnx,p.vnnlib,1,uns")
    assert set(store.done()) == {("a.onnx", "p.vnnlib")}
    store.close()
    store = BenchStore(tmp_path, {"instances": "x"}, {})
    assert store.results_path.read_text().endswith("\n") and "uns\n" not in store.results_path.read_text()
    store.append({"onnx": "b.onnx", "vnnlib": "p.vnnlib", "timeout": 1, "result": "sat", "seconds": 0.2},
                 [0.5], [1.0])
    assert store.done()[("b.onnx", "p.vnnlib")]["result"] == "sat"
    assert store.results_path.read_text().count("\n") == 3   # header + two whole rows
    store.close()
    assert (tmp_path / "counterexamples" / "b.onnx__p.vnnlib.txt").read_text().startswith("sat\n((X_0 0.5)")


def test_store_refuses_results_without_identity(tmp_path):
    from certprune.errors import ConfigError
    from certprune.verifiers.bench_store import BenchStore
    (tmp_path / "results.csv").write_text("onnx,vnnlib,timeout,result,seconds,message\n")
    with pytest.raises(ConfigError, match="without its bench.json"):
        BenchStore(tmp_path, {"instances": "x"}, {})


def test_summary_numbers_and_reference_matching():
    rows = [{"onnx": "n.onnx", "vnnlib": f"p{i}.vnnlib", "result": w, "seconds": s}
            for i, (w, s) in enumerate([("sat", 1.0), ("unsat", 4.0), ("timeout", 10.0), ("error", 0.5)])]
    s = bench.summarize(rows)
    assert (s["solved"], s["sat"], s["unsat"], s["timeout"], s["error"], s["unknown"]) == (2, 1, 1, 1, 1, 0)
    assert s["total_seconds"] == 15.5 and s["median_seconds"] == 2.5
    ref = {("n.onnx", "p0.vnnlib"): "sat", ("n.onnx", "p1.vnnlib"): "sat", ("n.onnx", "p2.vnnlib"): "unsat"}
    cmp = bench.compare(rows, ref)
    assert cmp.disagreements == [("n.onnx", "p1.vnnlib", "unsat", "sat")]
    assert (cmp.agree, cmp.only_ours, cmp.only_reference, cmp.missing) == (1, 0, 1, 1)


@pytest.mark.parametrize("text,needle", [("a.onnx,p.vnnlib\n", "expected"), ("a.onnx,p.vnnlib,soon\n", "not a number"),
                                         ("", "no instances")])
def test_bad_instances_file_exit_2(tmp_path, capsys, text, needle):
    path = tmp_path / "instances.csv"
    path.write_text(text)
    assert main(["bench", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_bad_instance_is_an_error_row_and_the_run_goes_on(tmp_path, capsys):
    """A model that does not exist: that row says error with the reason; the next row still runs."""
    import numpy as np

    from certprune.specs import RobustnessSpec
    from certprune.vnnlib import write_vnnlib
    model = Path(__file__).resolve().parents[1] / "certprune" / "models" / "digits_mlp.onnx"
    write_vnnlib(RobustnessSpec(np.full(64, 0.5), 0.0001, 0).to_property(10), tmp_path / "p.vnnlib")
    (tmp_path / "m.onnx").symlink_to(model)
    inst = tmp_path / "instances.csv"
    inst.write_text("missing.onnx,p.vnnlib,30\nm.onnx,p.vnnlib,30\n")
    assert main(["bench", str(inst), "--out", str(tmp_path / "o")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "o" / "results.csv")))
    assert rows[0]["result"] == "error" and "missing.onnx" in rows[0]["message"]
    assert rows[1]["result"] in ("sat", "unsat") and rows[1]["message"] == ""


def test_bad_timeout_cap_exit_2(tmp_path, capsys):
    inst = tmp_path / "instances.csv"
    inst.write_text("a.onnx,p.vnnlib,30\n")
    assert main(["bench", str(inst), "--timeout-cap", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--timeout-cap" in capsys.readouterr().err


def test_second_bench_on_the_same_folder_is_refused_while_the_first_holds_it(tmp_path, capsys):
    from certprune.verifiers.bench_store import BenchStore
    first = BenchStore(tmp_path / "out", {"a": 1}, {})
    import subprocess
    import sys
    code = ("import sys; from certprune.verifiers.bench_store import BenchStore; "
            "BenchStore(sys.argv[1], {'a': 1}, {})")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode != 0 and "StoreBusyError" in out.stderr
    first.close()
    BenchStore(tmp_path / "out", {"a": 1}, {}).close()  # free again once the first run closed it
