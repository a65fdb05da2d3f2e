"""`certprune prune`: --method choices come from the library registries, --activate-while-pruning
reaches prune(), --protected maps a tabular feature to its column for m-info-flow, bad input is
one line on stderr and exit code 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from certprune.cli import build_parser, main
from certprune.commands.prune import method_names, protected_column
from certprune.datasets import data_root, get_schema
from certprune.pruning import criteria, learners

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "certprune" / "models"
DIGITS = str(MODELS / "digits_mlp.onnx")
GERMAN = str(MODELS / "german_mlp.onnx")
HAS_GERMAN = (data_root() / "fairness" / "german" / "german.data").exists()


def _args(method: str, *extra: str) -> list[str]:
    return ["prune", DIGITS, "--method", method, "--amount", "0.3", "--dataset", "digits", "--out", "p.onnx", *extra]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("certprune: error:"), err
    return err


def test_method_names_are_the_registries():
    crit, learn = method_names()
    assert set(crit) == set(criteria.METHODS) and set(learn) == set(learners.METHODS)
    for name in ("taylor-group", "taylor-group2", "nisp", "singe", "sosp-h", "i-spasp", "gradient-redundancy",
                 "causal-mi", "o-information", "m-info-flow", "scl", "gibbs", "brain", "dynamic-surgery", "gating",
                 "agn", "stability", "magnitude"):
        assert name in crit + learn


@pytest.mark.parametrize("method", [*criteria.METHODS, *learners.METHODS])
def test_every_registered_method_is_accepted_and_listed(method):
    argv = _args(method)
    args = build_parser(argv).parse_args(argv)
    assert args.method == method
    prune_parser = build_parser(argv)._subparsers._group_actions[0].choices["prune"]
    assert method in "".join(prune_parser.format_help().split())  # argparse wraps at hyphens


def test_unknown_method_is_one_line_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:  # argparse's own error: one line, exit code 2
        main(_args("no-such-method"))
    assert e.value.code == 2
    assert "--method" in _one_error_line(capsys)


def test_activate_while_pruning_reaches_prune(tmp_path, capsys):
    out = tmp_path / "ap.onnx"
    argv = ["prune", DIGITS, "--method", "magnitude", "--amount", "0.3", "--granularity", "neuron", "--dataset",
            "digits", "--finetune-epochs", "0", "--activate-while-pruning", "--out", str(out)]
    assert main(argv) == 0
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    ap = manifest["config"]["activate_while_pruning"]
    assert len(ap) == 1  # one record per pruning step, written by prune()'s AP hook
    out2 = tmp_path / "plain.onnx"
    assert main([a if a != str(out) else str(out2) for a in argv if a != "--activate-while-pruning"]) == 0
    assert "activate_while_pruning" not in json.loads(out2.with_suffix(".manifest.json").read_text())["config"]


def test_activate_while_pruning_with_a_mask_learner_is_refused(tmp_path, capsys):
    argv = ["prune", DIGITS, "--method", "scl", "--amount", "0.3", "--dataset", "digits", "--finetune-epochs", "0",
            "--activate-while-pruning", "--out", str(tmp_path / "x.onnx")]
    assert main(argv) == 2
    assert "activate_while_pruning" in _one_error_line(capsys)


def test_m_info_flow_without_protected_is_one_line_exit_2(tmp_path, capsys):
    argv = ["prune", GERMAN, "--method", "m-info-flow", "--amount", "0.3", "--granularity", "neuron",
            "--dataset", "german", "--out", str(tmp_path / "g.onnx")]
    assert main(argv) == 2
    assert "--protected" in _one_error_line(capsys)
    assert not (tmp_path / "g.onnx").exists()


def test_protected_on_an_image_data_set_is_one_line_exit_2(tmp_path, capsys):
    assert main(_args("m-info-flow", "--protected", "age", "--granularity", "neuron")) == 2
    assert "tabular" in _one_error_line(capsys)


def test_protected_column_follows_the_schema():
    schema = get_schema("german")
    assert protected_column("m-info-flow", "german", "sex") == schema.names.index("sex")
    assert protected_column("m-info-flow", "german", "age") == schema.names.index("age") != schema.names.index("sex")
    assert protected_column("magnitude", "german", None) is None


def test_unknown_protected_feature_is_one_line_exit_2(tmp_path, capsys):
    argv = ["prune", GERMAN, "--method", "m-info-flow", "--amount", "0.3", "--granularity", "neuron",
            "--dataset", "german", "--protected", "shoe-size", "--out", str(tmp_path / "g.onnx")]
    assert main(argv) == 2
    assert "shoe-size" in _one_error_line(capsys)


@pytest.mark.skipif(not HAS_GERMAN, reason="needs the German credit data in $CERTPRUNE_DATA/fairness/german")
def test_m_info_flow_with_protected_on_german(tmp_path, capsys):
    out = tmp_path / "g.onnx"
    argv = ["prune", GERMAN, "--method", "m-info-flow", "--amount", "0.3", "--granularity", "neuron",
            "--dataset", "german", "--protected", "age", "--out", str(out)]
    assert main(argv) == 0
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["method"] == "m-info-flow"
    assert manifest["config"]["protected"] == get_schema("german").index("age")
    removed = sum(len(u["removed"]) if isinstance(u, dict) else len(u)
                  for step in manifest["steps"] for u in step["units"].values())
    assert removed > 0
    text = capsys.readouterr().out
    assert "held-out accuracy" in text and "german inputs" in text

    from certprune.network import load_model
    pruned, dense = load_model(str(out)), load_model(GERMAN)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in dense.parameters())


@pytest.mark.skipif(not HAS_GERMAN, reason="needs the German credit data in $CERTPRUNE_DATA/fairness/german")
def test_finetuning_a_one_logit_tabular_model_is_refused(tmp_path, capsys):
    argv = ["prune", GERMAN, "--method", "magnitude", "--amount", "0.3", "--granularity", "neuron",
            "--dataset", "german", "--finetune-epochs", "2", "--out", str(tmp_path / "g.onnx")]
    assert main(argv) == 2
    assert "--finetune-epochs" in _one_error_line(capsys)


def test_loss_based_method_on_a_one_logit_tabular_model_is_refused(tmp_path, capsys):
    argv = ["prune", GERMAN, "--method", "taylor", "--amount", "0.3", "--granularity", "neuron",
            "--dataset", "german", "--out", str(tmp_path / "g.onnx")]
    assert main(argv) == 2
    assert "one-logit" in _one_error_line(capsys)


def test_gating_is_refused_before_any_training(tmp_path, capsys):
    from certprune.cli import main
    rc = main(["prune", str(Path(__file__).resolve().parents[1] / "certprune" / "models" / "digits_mlp.onnx"),
               "--method", "gating", "--amount", "0.5", "--dataset", "digits", "--out", str(tmp_path / "g.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "GatedBlock" in err[0] and not (tmp_path / "g.onnx").exists()


def test_mask_learners_refuse_options_their_training_does_not_use():
    import torch
    from torch import nn

    import certprune
    from certprune.errors import ConfigError
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    X, y = torch.rand(32, 4), torch.randint(0, 2, (32,))
    for opt in ({"stability_weight": 0.1}, {"min_keep": 0.2}):
        with pytest.raises(ConfigError, match="do not apply"):
            certprune.prune(m, "scl", None, "unstructured", data=(X, y), **opt)
    # layer caps (also on a layer name the model lacks) and a fine-tuning share were silently dropped
    for method, gran, opt in (("gating", "neuron", {"layer_caps": {"0": 0.5}}), ("scl", "unstructured",
                              {"layer_caps": {"nope": 0.5}}), ("scl", "unstructured", {"finetune_fraction": 0.5})):
        with pytest.raises(ConfigError, match="layer_caps and finetune_fraction do not apply"):
            certprune.prune(m, method, 0.5, gran, data=(X, y), **opt)


def _interrupt_at_first_epoch(monkeypatch) -> None:
    from certprune.pruning import finetune as ft
    real = ft._save_checkpoint

    def save(*args):
        real(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "_save_checkpoint", save)


def test_checkpoint_resumes_a_stopped_learner_run_to_the_uninterrupted_output(tmp_path, capsys, monkeypatch):
    from certprune.network import load_model

    def argv(out, *extra):
        return ["prune", DIGITS, "--method", "scl", "--dataset", "digits", "--finetune-epochs", "2",
                "--out", str(out), *extra]

    assert main(argv(tmp_path / "ref.onnx")) == 0
    ck = tmp_path / "ck"
    with monkeypatch.context() as m:
        _interrupt_at_first_epoch(m)
        assert main(argv(tmp_path / "res.onnx", "--checkpoint", str(ck))) == 130
    assert "resume" in capsys.readouterr().err and (ck / "learn.pt").is_file()
    assert main(argv(tmp_path / "res.onnx", "--seed", "1", "--checkpoint", str(ck))) == 2  # other settings
    assert "belongs to another prune run" in _one_error_line(capsys)
    assert main(argv(tmp_path / "res.onnx", "--checkpoint", str(ck))) == 0
    assert not ck.exists()
    ref, res = (json.loads((tmp_path / f"{n}.manifest.json").read_text()) for n in ("ref", "res"))
    assert res["steps"] == ref["steps"] and res["config"] == ref["config"]
    a, b = (load_model(str(tmp_path / f"{n}.onnx")).module.state_dict() for n in ("ref", "res"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_refuses_a_model_folder_and_leaves_its_files(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "mymodel.pt").write_bytes(b"user weights")
    argv = ["prune", DIGITS, "--method", "scl", "--dataset", "digits", "--finetune-epochs", "1",
            "--out", str(tmp_path / "p.onnx"), "--checkpoint", str(folder)]
    assert main(argv) == 2
    assert "non-empty folder without run.json" in _one_error_line(capsys)
    assert (folder / "mymodel.pt").read_bytes() == b"user weights"


def test_layer_caps_and_finetune_fraction_reach_prune(tmp_path, capsys):
    """--layer-caps 0=0.2 caps the first prunable layer (named '1' in the ONNX model) at 20 % removed
    while the amount (50 % of the 64 hidden units) is still met; --finetune-fraction reaches prune()."""
    from certprune.network import load_model
    from certprune.pruning.layers import unit_layers

    out = tmp_path / "caps.onnx"
    argv = ["prune", DIGITS, "--method", "magnitude", "--amount", "0.5", "--granularity", "neuron", "--dataset",
            "digits", "--steps", "2", "--finetune-epochs", "1", "--finetune-fraction", "0.5", "--layer-caps", "0=0.2",
            "--out", str(out)]
    assert main(argv) == 0
    config = json.loads(out.with_suffix(".manifest.json").read_text())["config"]
    assert config["layer_caps"] == {"1": 0.2} and config["finetune_fraction"] == 0.5 and config["steps"] == 2
    widths = [l.width for l in unit_layers(load_model(str(out)), "neuron")]
    assert widths[0] >= 26 and sum(widths) == 32  # ceil(0.8 * 32) kept in the capped layer; 32 of 64 removed
    plain = tmp_path / "plain.onnx"
    assert main([a if a != str(out) else str(plain) for a in argv[:-4]] + ["--out", str(plain)]) == 0
    assert [l.width for l in unit_layers(load_model(str(plain)), "neuron")][0] < 26  # without the cap: more removed


@pytest.mark.parametrize("extra, message", [
    (["--layer-caps", "0"], "expects K=F"), (["--layer-caps", "first=0.5"], "expects K=F"),
    (["--layer-caps", "0=1"], "in [0, 1)"), (["--layer-caps", "0=0.5,0=0.3"], "twice"),
    (["--layer-caps", "2=0.5"], "no prunable layer 2"), (["--finetune-fraction", "0"], "(0, 1]"),
    (["--finetune-fraction", "1.5"], "(0, 1]"), (["--finetune-fraction", "half"], "invalid float"),
    (["--granularity", "unstructured", "--layer-caps", "0=0.5"], "unit pruning")])
def test_bad_layer_caps_and_finetune_fraction_are_one_line_exit_2(extra, message, tmp_path, capsys):
    argv = ["prune", DIGITS, "--method", "magnitude", "--amount", "0.5", "--granularity", "neuron", "--dataset",
            "digits", "--finetune-epochs", "0", "--out", str(tmp_path / "x.onnx"), *extra]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own type check
        rc = e.code
    assert rc == 2 and message in _one_error_line(capsys) and not (tmp_path / "x.onnx").exists()
