"""Issue 8 items 4, 5, 8, 12 and issue 12's CLI defaults: bad arguments give one line on stderr and
exit 2 (--debug adds the traceback, same code), --version, prune's --out guards and defaults,
certify's ranges, fairness attribute names (aliases, repeats) and --data-dir."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from certprune.cli import main

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "certprune" / "models"
DIGITS_MODEL = MODELS / "digits_mlp.onnx"


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_version_prints_the_package_version():
    import certprune
    out = subprocess.run([sys.executable, "-m", "certprune", "--version"], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and out.stdout.strip() == f"certprune {certprune.__version__}"


@pytest.mark.parametrize("exc,text", [
    (OSError(28, "No space left on device", "/tmp/x/out.csv"), "/tmp/x/out.csv: No space left on device"),
    (sqlite3.DatabaseError("database disk image is malformed"), "SQLite store: database disk image is malformed"),
    (json.JSONDecodeError("Expecting value", "{", 1), "invalid JSON: Expecting value")])
def test_os_sqlite_json_errors_are_one_line_exit_2_and_debug_keeps_the_code(monkeypatch, capsys, exc, text):
    import certprune.commands.info as info

    def boom(args):
        raise exc
    monkeypatch.setattr(info, "run", boom)
    assert main(["info", "x.onnx"]) == 2
    err = _err(capsys)
    assert err.startswith("certprune: error: ") and text in err
    assert main(["--debug", "info", "x.onnx"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("certprune: error:")


def test_os_error_names_the_file(monkeypatch, capsys):
    import certprune.commands.info as info
    monkeypatch.setattr(info, "run", lambda a: open("/nonexistent-dir/x.onnx"))
    assert main(["info", "x.onnx"]) == 2
    assert _err(capsys) == "certprune: error: /nonexistent-dir/x.onnx: No such file or directory"


def _prune(out, *extra) -> list[str]:
    return ["prune", str(DIGITS_MODEL), "--method", "magnitude", "--amount", "0.5", "--granularity", "neuron",
            "--dataset", "digits", "--out", str(out), *extra]


def test_prune_out_equal_to_input_refused_unless_force(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(DIGITS_MODEL.read_bytes())
    before = model.read_bytes()
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    for out in (model, tmp_path / "." / "m.onnx", link):
        args = _prune(out, "--finetune-epochs", "0")
        args[1] = str(model)
        assert main(args) == 2
        assert "is the input model" in _err(capsys) and model.read_bytes() == before
    args = _prune(model, "--finetune-epochs", "0", "--force")
    args[1] = str(model)
    assert main(args) == 0 and model.read_bytes() != before
    capsys.readouterr()


def test_prune_out_a_directory_or_missing_folder_is_one_line(tmp_path, capsys):
    assert main(_prune(tmp_path)) == 2
    assert "is a directory" in _err(capsys)
    assert main(_prune(tmp_path / "no" / "such" / "p.onnx")) == 2
    assert "does not exist" in _err(capsys)


def test_prune_zero_width_message_does_not_contradict_itself(tmp_path, capsys):
    args = _prune(tmp_path / "p.onnx", "--finetune-epochs", "0")
    args[5] = "0.99"
    assert main(args) == 2
    err = _err(capsys)
    assert "zero width" in err and "of each layer" in err and "--scope local" not in err and "--min-keep" in err
    args = _prune(tmp_path / "p.onnx", "--scope", "global", "--finetune-epochs", "0")
    args[5] = "0.99"
    assert main(args) == 2
    err = _err(capsys)
    assert "global threshold" in err and "--scope local" in err


def test_prune_defaults_keep_accuracy_and_a_drop_warns(tmp_path, capsys):
    """Default fine-tuning (20 epochs on digits) keeps held-out accuracy within 5 points; without
    fine-tuning magnitude 0.5 loses ~60 points and the command says so on stderr."""
    assert main(_prune(tmp_path / "a.onnx")) == 0
    cap = capsys.readouterr()
    before, after = (float(v) for v in cap.out.split("held-out accuracy ")[1].split(" on ")[0].split(" -> "))
    assert before - after <= 0.05 and "warning" not in cap.err
    assert main(_prune(tmp_path / "b.onnx", "--finetune-epochs", "0")) == 0
    cap = capsys.readouterr()
    assert "warning: held-out accuracy dropped by" in cap.err and "--finetune-epochs" in cap.err


def test_prune_stability_gets_the_data_sets_default_epsilon(tmp_path, capsys):
    args = _prune(tmp_path / "s.onnx", "--finetune-epochs", "0")
    args[3] = "stability"
    assert main(args) == 0
    cap = capsys.readouterr()
    assert "using --epsilon 0.02" in cap.err
    manifest = json.loads((tmp_path / "s.manifest.json").read_text())
    assert manifest["epsilon"] == 0.02


def _certify(*extra) -> list[str]:
    return ["certify", str(DIGITS_MODEL), "--dataset", "digits", "--timeout", "5", "--no-progress", *extra]


@pytest.mark.parametrize("eps", ["5", "-0.1", "nan"])
def test_certify_eps_outside_unit_interval_is_refused(tmp_path, capsys, eps):
    assert main(_certify("--eps", eps, "-n", "2", "--out", str(tmp_path))) == 2
    assert "--eps must lie in [0, 1]" in _err(capsys)
    assert not (tmp_path / "samples.csv").exists()


def test_certify_n_beyond_the_data_set_is_an_error_not_a_silent_clamp(tmp_path, capsys):
    assert main(_certify("--eps", "0.01", "-n", "5000", "--out", str(tmp_path))) == 2
    assert "at most -n 297" in _err(capsys)  # digits has 1797 images; the held-out split starts at 1500
    assert main(_certify("--eps", "0.01", "-n", "3", "--offset", "1794", "--out", str(tmp_path))) == 0
    assert "samples 1794..1796 (n=3)" in capsys.readouterr().out


def _fairness(*extra) -> list[str]:
    return ["fairness", str(MODELS / "compas_mlp.onnx"), "--dataset", "compas", "--timeout", "20", "--no-progress",
            *extra]


def test_fairness_repeated_protected_is_rejected(tmp_path, capsys):
    for prot in (["age", "age"], ["race", "Race"]):
        args = _fairness("--out", str(tmp_path))
        for p in prot:
            args += ["--protected", p]
        assert main(args) == 2
        assert "given more than once" in _err(capsys)
    assert main(_fairness("--protected", "race", "--relax", "age=1", "--relax", "age=0", "--out", str(tmp_path))) == 2
    assert "--relax age given more than once" in _err(capsys)
    assert main(_fairness("--protected", "race", "--relax", "Race=1", "--out", str(tmp_path))) == 2
    assert "both --protected and --relax" in _err(capsys)
    assert not (tmp_path / "audit.sqlite").exists()


def test_attribute_names_are_lower_case_and_old_spellings_are_aliases(tmp_path, capsys):
    from certprune.datasets.tabular import TABULAR_NAMES, get_schema
    for name in TABULAR_NAMES:
        s = get_schema(name)
        assert all(n == n.lower() for n in s.names) and all(p == p.lower() for p in s.protected)
    s = get_schema("compas")
    assert s.canonical("Race") == "race" and s.index("Female") == s.index("female") == 4
    assert get_schema("adult").canonical("Hours_Per_Week") == "hours-per-week"
    assert main(_fairness("--protected", "Race", "--out", str(tmp_path / "old"))) == 0
    assert main(_fairness("--protected", "race", "--out", str(tmp_path / "new"))) == 0
    capsys.readouterr()
    old = json.loads((tmp_path / "old" / "summary.json").read_text())
    new = json.loads((tmp_path / "new" / "summary.json").read_text())
    assert old["counts"] == new["counts"] and sum(old["counts"].values()) > 0
    assert json.dumps(old).count('"race"') >= 1 and '"Race"' not in json.dumps(old)


def test_fairness_data_dir_reports_the_models_test_accuracy(tmp_path, capsys, shared_data):
    meta = json.loads((MODELS / "compas_mlp.json").read_text())
    assert main(_fairness("--protected", "race", "--data-dir", str(shared_data), "--out", str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {meta['test_accuracy']:.4f} on the {meta['test_rows']} test rows of compas" in out
    assert main(_fairness("--protected", "race", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path))) == 2
    assert "certprune: error:" in _err(capsys)


def test_fairness_spec_from_schema_accepts_old_spellings():
    from certprune.datasets.tabular import get_schema
    from certprune.errors import SpecError
    from certprune.fairness_spec import FairnessSpec
    s = get_schema("compas")
    old = FairnessSpec.from_schema(s, ("Race", "Female"), {"Number_of_Priors": 1})
    new = FairnessSpec.from_schema(s, ("race", "female"), {"number_of_priors": 1})
    assert old.protected == new.protected == ("race", "female")
    assert old.relaxed == new.relaxed == (("number_of_priors", 1),)
    assert old.protected_indices == (3, 4)
    with pytest.raises(SpecError, match="unknown protected attribute 'religion'"):
        FairnessSpec.from_schema(s, ("religion",))
