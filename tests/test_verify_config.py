"""`verify --config FILE.toml`: every VerifyConfig field, unknown keys and wrong types refused in
one line, the effective configuration written beside the result file (and read back equal);
plus `verify`'s other first-contact items: --verbose progress, a results file that cannot be
written refused before solving, and the timeout counted from the process start."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from certprune.cli import main
from certprune.errors import ConfigError
from certprune.verifiers.config_file import effective_config, read_config_file, write_config
from certprune.verifiers.verify import VerifyConfig

REPO = Path(__file__).resolve().parents[1]
DIGITS_MODEL = REPO / "certprune" / "models" / "digits_mlp.onnx"
T_IMPORT = time.monotonic()


@pytest.fixture
def digits_instance(tmp_path) -> tuple[Path, Path]:
    """A tiny box around a correctly classified digit (certified at the root in well under a second)."""
    from certprune.datasets import load_digits
    from certprune.specs import RobustnessSpec
    from certprune.vnnlib import write_vnnlib
    x, y = load_digits()
    prop = RobustnessSpec(x[1700].ravel(), 0.002, int(y[1700])).to_property(10)
    return DIGITS_MODEL, write_vnnlib(prop, tmp_path / "robust.vnnlib")


def test_config_file_sets_fields(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('strategy = "relu"\ncert_margin = 1e-6\nattack_restarts = 4\nuse_alpha_crown = false\n'
                 'milp_time_limit = 2\n')
    got = read_config_file(f)
    assert got == {"strategy": "relu", "cert_margin": 1e-6, "attack_restarts": 4, "use_alpha_crown": False,
                   "milp_time_limit": 2}
    cfg = VerifyConfig.from_dict(got)
    assert (cfg.strategy, cfg.cert_margin, cfg.attack_restarts, cfg.use_alpha_crown) == ("relu", 1e-6, 4, False)


@pytest.mark.parametrize("text,needle", [
    ("cert_margn = 1e-6\n", "unknown key(s) cert_margn"),
    ('batch = "big"\n', "batch must be of type int"),
    ("attack_steps = true\n", "attack_steps must be of type int"),
    ("use_alpha_crown = 1\n", "use_alpha_crown must be of type bool"),
    ("batch = 0\n", "batch must be >= 1"),
    ('strategy = "dfs"\n', "unknown strategy"),
    ("strategy = \n", "not valid TOML"),
])
def test_bad_config_file_is_refused(tmp_path, text, needle):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        read_config_file(f)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_effective_config_roundtrips(tmp_path):
    """Every field written, and the written file reads back to the same configuration."""
    eff = effective_config({"cert_margin": 3.5e-7, "strategy": "input"})
    assert set(eff) == {f.name for f in dataclasses.fields(VerifyConfig)}
    path = write_config(tmp_path / "eff.toml", eff)
    assert read_config_file(path) == eff


def test_cli_config_written_beside_results_and_flags_override(digits_instance, tmp_path, capsys):
    model, prop = digits_instance
    cfg = tmp_path / "c.toml"
    cfg.write_text('strategy = "relu"\nattack_restarts = 3\n')
    res, stats = tmp_path / "r.txt", tmp_path / "s.json"
    args = ["verify", str(model), str(prop), "--config", str(cfg), "--results-file", str(res), "--stats-file", str(stats)]
    assert main(args) == 0
    assert res.read_text() == "unsat\n"
    written = read_config_file(str(res) + ".config.toml")
    assert written["strategy"] == "relu" and written["attack_restarts"] == 3
    assert json.loads(stats.read_text())["verify"][0]["strategy"] == "relu"
    assert main(args + ["--strategy", "input"]) == 0      # a flag beats the file
    assert read_config_file(str(res) + ".config.toml")["strategy"] == "input"
    assert json.loads(stats.read_text())["verify"][0]["strategy"] == "input"


def test_cli_unknown_config_key_exit_2(digits_instance, tmp_path, capsys):
    model, prop = digits_instance
    cfg = tmp_path / "c.toml"
    cfg.write_text("cert_margn = 1e-6\n")
    res = tmp_path / "r.txt"
    assert main(["verify", str(model), str(prop), "--config", str(cfg), "--results-file", str(res)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cert_margn" in err and err.startswith("certprune: error:")
    assert res.read_text() == "error\n"


def test_cli_verbose_prints_phases(digits_instance, capsys):
    model, prop = digits_instance
    assert main(["verify", str(model), str(prop), "--verbose"]) == 0
    cap = capsys.readouterr()
    assert cap.out.strip() == "unsat"
    for phase in ("loading model", "falsifying", "bounding the whole region"):
        assert phase in cap.err


def test_progress_printer_reports_bab_queue_and_bound():
    """Quiet for the first seconds unless verbose; then queue size and the global bound."""
    import io

    from certprune.commands._progress import ProgressPrinter
    event = {"phase": "bab", "domains": 12, "bound": -0.25, "processed": 40}
    quiet = io.StringIO()
    ProgressPrinter(time.monotonic(), stream=quiet)(event)
    assert quiet.getvalue() == ""
    late = io.StringIO()
    p = ProgressPrinter(time.monotonic() - 6.0, stream=late)
    p(event)
    p(event)  # throttled: one line per 5 s
    assert late.getvalue().count("\n") == 1
    assert "12 domains queued" in late.getvalue() and "40 bounded" in late.getvalue() and "-0.25" in late.getvalue()


@pytest.mark.parametrize("kind", ["directory", "under a file", "unwritable"])
def test_results_file_checked_before_solving(digits_instance, tmp_path, capsys, monkeypatch, kind):
    import certprune.verifiers.instance as inst
    monkeypatch.setattr(inst, "decide_instance", lambda *a, **k: pytest.fail("solved before checking --results-file"))
    model, prop = digits_instance
    if kind == "directory":
        target = tmp_path
    elif kind == "under a file":
        (tmp_path / "plain.txt").write_text("x")
        target = tmp_path / "plain.txt" / "r.txt"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "sub" / "r.txt"
        import os
        if os.access(ro, os.W_OK):  # running as root: permissions do not bind
            pytest.skip("permission bits do not restrict this user")
    assert main(["verify", str(model), str(prop), "--results-file", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--results-file" in err


def test_process_age_arithmetic():
    """Field 22 of /proc/self/stat (clock ticks after boot) against /proc/uptime; a command name
    with spaces and parentheses does not shift the fields."""
    from certprune.commands._clock import process_age
    rest = " ".join(["S"] + ["0"] * 18 + ["5000"] + ["0"] * 30)   # fields 3..; field 22 = 5000 ticks
    assert process_age(f"1234 (py thon) x) {rest}", "80.25 10.0", 100) == pytest.approx(30.25)
    assert process_age(f"1 (a) {rest}", "40.0 1.0", 100) == 0.0   # clock skew never gives a negative age


def test_timeout_counts_from_process_start_only_for_the_command():
    """Under pytest (cli.main called by another program) the budget starts now; the process start
    itself lies before this module was imported."""
    from certprune.commands._clock import command_start, is_certprune_process, process_start
    assert not is_certprune_process()
    before = time.monotonic()
    assert command_start() >= before
    assert process_start() < T_IMPORT


@pytest.mark.slow
def test_verify_timeout_5_wall_time(shared_data, tmp_path):
    """`certprune verify --timeout 5` on a hard instance answers within 5 s of wall time counting
    start-up (tolerance 15 % for a loaded machine); the stats agree with the wall clock."""
    import os
    import subprocess
    import sys
    d = shared_data / "vnncomp" / "acasxu"
    stats = tmp_path / "s.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "certprune", "verify", str(d / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx"),
                        str(d / "vnnlib" / "prop_2.vnnlib"), "--timeout", "5", "--stats-file", str(stats)],
                       capture_output=True, text=True, env=env, timeout=60)
    wall = time.monotonic() - t0
    assert r.returncode == 3 and r.stdout.strip() == "timeout", r.stderr
    s = json.loads(stats.read_text())
    # on an overloaded machine start-up alone (imports + loading) can exceed the budget: then the
    # run must end right after loading, without starting the search
    assert wall < max(5 * 1.15, s["seconds_after_loading"] + 0.75), (wall, s)
    assert s["seconds_total"] <= wall and s["seconds_total"] > wall - 1.0   # counted from the process start
