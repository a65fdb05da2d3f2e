"""Every ``certprune ...`` command line in README.md runs as written (issue 8 item 9).

How a README line becomes a run (the documented mechanism; edit COMMANDS when the README changes):

1. Lines starting with ``certprune `` inside fenced code blocks are collected (``\\``
   continuations joined, ``# comments`` dropped, whitespace normalised, duplicates run once).
2. Synopsis notation is expanded: every optional group ``[--opt V]`` is *included* (so a flag the
   README names must exist), ``a|b`` alternatives take the first one, ``FILE[.gz]`` drops the
   optional suffix.
3. Placeholders (upper-case words such as ``MODEL``, ``DIR``, ``E``) are filled from the option
   before them (``OPTION_VALUES``: ``--eps E`` -> 0.01) or, for positional ones, from ``POSITIONAL``;
   a line's entry in ``COMMANDS`` may map any token (a placeholder or an example file name such as
   ``GC-4.h5``) to a concrete value.
4. The entry's ``overrides`` replace the value of an option the line gives, or add the option: only
   sizes and budgets (``-n``, ``--timeout``) and ``--no-progress``, so that the run is short.
5. The command runs in-process through ``certprune.cli.main`` in a temporary working directory and
   must exit with one of the entry's ``ok`` codes (0, or 3 for an audit that ran out of budget).

A README line missing from COMMANDS fails the test (add an entry), and so does an entry whose line
is no longer in the README.
"""
from __future__ import annotations

import re
import shutil
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from certprune.cli import main

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "certprune" / "models"
DIGITS = str(MODELS / "digits_mlp.onnx")
MNIST = str(MODELS / "mnist_mlp.onnx")


@dataclass(frozen=True)
class Run:
    """How to run one README line: token substitutions, option overrides, accepted exit codes."""

    subst: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str | None] = field(default_factory=dict)
    ok: tuple[int, ...] = (0,)
    needs_data: bool = False
    slow: bool = False
    copies: dict[str, str] = field(default_factory=dict)  # files made in the run's folder first: name -> source


# value of a placeholder by the option it follows ({tmp}: the run's folder, {data}: the data root)
OPTION_VALUES = {"--timeout": "10", "--results-file": "{tmp}/results.txt", "--stats-file": "{tmp}/stats.json",
                 "-n": "2", "--eps": "0.01", "--offset": "1500", "--data-dir": "{data}", "--out": "{tmp}/out",
                 "--partition-size": "100", "--relax": "month=1", "--epsilon": "0.02", "--finetune-epochs": "2",
                 "--stability-weight": "0.1", "--min-keep": "0.1"}
POSITIONAL = {"MODEL": DIGITS, "PROP.vnnlib": "{tmp}/prop.vnnlib"}
FAST = {"--no-progress": None}
COMMANDS = {
    "certprune --version": Run(),
    "certprune demo": Run(overrides={"--timeout": "10", **FAST}, ok=(0, 3)),
    "certprune info MODEL": Run(),
    "certprune bounds MODEL PROP.vnnlib [--method crown]": Run(),
    "certprune verify MODEL PROP.vnnlib [--timeout S] [--results-file F]": Run(),
    "certprune certify MODEL --dataset digits|mnist --eps E [-n N] --out DIR": Run(overrides={"--timeout": "5", **FAST}),
    "certprune fairness MODEL --dataset german --protected age [--relax ATTR=D] [--partition-size T] [--data-dir D] "
    "--out DIR": Run(subst={"MODEL": str(MODELS / "german_mlp.onnx")}, overrides={"--timeout": "10", **FAST},
                     ok=(0, 3), needs_data=True),
    "certprune prune MODEL --method stability --amount 0.5 --granularity neuron --dataset digits --out P.onnx":
        Run(subst={"P.onnx": "{tmp}/p.onnx"}),
    "certprune bounds MODEL PROP.vnnlib [--method ibp|crown|alpha-crown] [--engine auto|native|lirpa] [--stability]":
        Run(),
    "certprune verify MODEL.onnx[.gz] PROP.vnnlib[.gz] [--timeout S] [--results-file F] [--stats-file F]":
        Run(subst={"MODEL.onnx": DIGITS}),
    "certprune certify MODEL --dataset digits|mnist --eps E [-n N] [--timeout S] [--offset K] [--data-dir D] --out DIR":
        Run(overrides={"--timeout": "5", **FAST}, needs_data=True),
    "certprune fairness GC-4.h5 --dataset german --protected age --timeout 60 --out out/":
        Run(subst={"GC-4.h5": "{data}/fairness/fairify_models/GC-4.h5", "out/": "{tmp}/out"},
            overrides={"--timeout": "3", **FAST}, ok=(0, 3), needs_data=True),
    "certprune fairness GC-3.h5 --dataset german --protected age --partition-size 100 --out out/":
        Run(subst={"GC-3.h5": "{data}/fairness/fairify_models/GC-3.h5", "out/": "{tmp}/out"},
            overrides={"--timeout": "3", **FAST}, ok=(0, 3), needs_data=True),
    "certprune fairness model.onnx --dataset adult --protected sex --relax age=2 --semantics float32 --out out/":
        Run(subst={"model.onnx": str(MODELS / "adult_mlp.onnx"), "out/": "{tmp}/out"},
            overrides={"--timeout": "3", **FAST}, ok=(0, 3)),
    "certprune verify MODEL PROP.vnnlib [--config FILE.toml] [--strategy auto|input|relu] [--threads N] [--verbose]":
        Run(subst={"FILE.toml": "{tmp}/verify.toml", "N": "1"}),
    "certprune bench INSTANCES.csv [--timeout-cap S] [--out DIR] [--reference RESULTS.csv] [--config FILE.toml]":
        Run(subst={"INSTANCES.csv": "{tmp}/instances.csv", "S": "10", "RESULTS.csv": "{tmp}/reference.csv",
                   "FILE.toml": "{tmp}/verify.toml"}),
    "certprune prune $M --method magnitude --amount 0.5 --dataset mnist --finetune-epochs 1 --out mnist_mag50.onnx":
        Run(subst={"$M": MNIST}, needs_data=True),
    "certprune prune $M --method magnitude --amount 0.8 --dataset mnist --finetune-epochs 1 --out mnist_mag80.onnx":
        Run(subst={"$M": MNIST}, needs_data=True, slow=True),
    "certprune prune $M --method stability --amount 0.5 --granularity neuron --epsilon 0.02 --finetune-epochs 1 "
    "--stability-weight 1 --dataset mnist --out mnist_stab50.onnx": Run(subst={"$M": MNIST}, needs_data=True, slow=True),
    # the pruned files come from the lines above in the README; here copies of the dense model stand in
    "certprune compare $M mnist_mag50.onnx mnist_mag80.onnx mnist_stab50.onnx --dataset mnist -n 50 --eps 0.02 "
    "--timeout 5 --out cmp": Run(subst={"$M": MNIST}, overrides={"-n": "2"}, needs_data=True,
                                 copies={f"mnist_{k}.onnx": MNIST for k in ("mag50", "mag80", "stab50")}),
    "certprune prune MODEL.onnx --method magnitude --amount 0.5 --granularity neuron --dataset digits|mnist "
    "[--scope global|local] [--min-keep F] [--epsilon E] [--finetune-epochs E] [--stability-weight L] --out PRUNED.onnx":
        Run(subst={"MODEL.onnx": DIGITS, "PRUNED.onnx": "{tmp}/pruned.onnx"}),
    "certprune prune MODEL.onnx --method stability --amount 0.5 --granularity neuron --dataset digits --steps 4 "
    "--finetune-fraction 0.5 --layer-caps 0=0.3 --out PRUNED.onnx":
        Run(subst={"MODEL.onnx": DIGITS, "PRUNED.onnx": "{tmp}/caps.onnx"}),
    "certprune prune MODEL.onnx --method taylor-group --amount 0.5 --granularity neuron --dataset digits "
    "--activate-while-pruning --out PRUNED.onnx": Run(subst={"MODEL.onnx": DIGITS, "PRUNED.onnx": "{tmp}/ap.onnx"}),
    "certprune prune certprune/models/german_mlp.onnx --method m-info-flow --amount 0.25 --granularity neuron "
    "--dataset german --protected sex --out german_mif.onnx":
        Run(subst={"certprune/models/german_mlp.onnx": str(MODELS / "german_mlp.onnx"),
                   "german_mif.onnx": "{tmp}/german_mif.onnx"}, needs_data=True),
    "certprune prune MODEL.onnx --method scl --dataset digits --finetune-epochs 2 --checkpoint ck_scl --out scl.onnx":
        Run(subst={"MODEL.onnx": DIGITS, "ck_scl": "{tmp}/ck_scl", "scl.onnx": "{tmp}/scl.onnx"}),
}

# experiments/compare_pruned.py writes these lines into README.md (between the compare-table markers) and
# runs them in experiments/results/compare_pruned/, where the nets it trained and pruned are kept: copies
# of those files go into the test's folder (prune on the convnets trains an epoch: slow)
_CP = REPO / "experiments" / "results" / "compare_pruned"
_VARIANTS = {"mag50": "--amount 0.5", "mag80": "--amount 0.8", "magS50": "--amount 0.5 --granularity structured"}
for _net in ("mlp", "conv", "conv-bn"):
    _dense = f"mnist_{_net}.onnx"
    for _v, _opts in _VARIANTS.items():
        COMMANDS[f"certprune prune {_dense} --method magnitude {_opts} --dataset mnist --finetune-epochs 1 "
                 f"--out mnist_{_net}_{_v}.onnx"] = Run(copies={_dense: str(_CP / _dense)}, needs_data=True,
                                                         slow=_net != "mlp")
    _files = [_dense, *(f"mnist_{_net}_{v}.onnx" for v in _VARIANTS)]
    COMMANDS[f"certprune compare {' '.join(_files)} --dataset mnist -n 30 --eps 0.02 --timeout 3 --no-progress "
             f"--out {_net}"] = Run(overrides={"-n": "2"}, needs_data=True, copies={f: str(_CP / f) for f in _files})
_OVAL = "$CERTPRUNE_DATA/vnncomp/oval21/onnx/cifar_base_kw.onnx.gz"
COMMANDS[f"certprune compare {_OVAL} cifar_base_mag30.onnx --dataset cifar10 --mean 0.485,0.456,0.406 --std "
         "0.225,0.225,0.225 -n 100 --eps 0.004 --timeout 5 --no-progress --out cifar10"] = \
    Run(subst={_OVAL: "{data}/vnncomp/oval21/onnx/cifar_base_kw.onnx.gz"}, overrides={"-n": "2"}, needs_data=True,
        slow=True, copies={"cifar_base_mag30.onnx": str(_CP / "cifar_base_mag30.onnx")})


def readme_command_lines(text: str) -> list[str]:
    """The normalised ``certprune ...`` lines of the fenced code blocks, in order, without repeats."""
    lines: list[str] = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split(" #")[0].split())
            if line.startswith("certprune ") and line not in lines:
                lines.append(line)
    return lines


def expand(line: str, run: Run, tmp: Path, data: Path) -> list[str]:
    """argv (without the program name) for one README line; see the module doc."""
    line = line.replace("[.gz]", "")
    tokens = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
    argv: list[str] = []
    for tok in tokens:
        prev = argv[-1] if argv else ""
        if tok in run.subst:
            tok = run.subst[tok]
        elif _placeholder(tok):
            tok = OPTION_VALUES[prev] if prev in OPTION_VALUES else POSITIONAL[tok]
        elif "|" in tok:
            tok = tok.split("|")[0]
        argv.append(tok.format(tmp=tmp, data=data))
    for opt, value in run.overrides.items():
        if opt in argv and value is not None:
            argv[argv.index(opt) + 1] = value
        elif opt not in argv:
            argv += [opt] if value is None else [opt, value]
    return argv


def _placeholder(tok: str) -> bool:
    """MODEL, DIR, E, ATTR=D, PROP.vnnlib, ...: upper-case words (file suffixes allowed)."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(=[A-Z]+)?(\.[a-z]+)*", tok))


def _write_property(path: Path) -> None:
    """A digits robustness property small enough to be certified in a second."""
    from certprune.datasets import load_digits
    from certprune.specs import RobustnessSpec
    from certprune.vnnlib import write_vnnlib
    X, y = load_digits()
    write_vnnlib(RobustnessSpec(X[1500].ravel(), 0.002, int(y[1500])).to_property(10), path)


def _write_bench_inputs(tmp: Path) -> None:
    """A one-instance instances.csv (the digits property), a reference result for it, a config."""
    (tmp / "instances.csv").write_text(f"{DIGITS},prop.vnnlib,10\n")
    (tmp / "reference.csv").write_text(f"digits,{DIGITS},prop.vnnlib,0.0,unsat,1.0\n")
    (tmp / "verify.toml").write_text('strategy = "auto"\n')


def test_every_readme_command_has_an_entry_and_every_entry_a_line():
    lines = readme_command_lines((REPO / "README.md").read_text())
    missing = [l for l in lines if l not in COMMANDS]
    stale = [l for l in COMMANDS if l not in lines]
    assert not missing, f"README command lines without an entry in tests/test_readme_commands.py: {missing}"
    assert not stale, f"entries whose README line is gone: {stale}"
    assert len(lines) >= 10


def test_expansion_includes_optional_flags_and_fills_placeholders(tmp_path):
    line = ("certprune prune MODEL.onnx --method magnitude --amount 0.5 --granularity neuron --dataset digits|mnist "
            "[--scope global|local] [--min-keep F] [--epsilon E] [--finetune-epochs E] [--stability-weight L] "
            "--out PRUNED.onnx")
    argv = expand(line, COMMANDS[line], tmp_path, tmp_path)
    assert argv == ["prune", DIGITS, "--method", "magnitude", "--amount", "0.5", "--granularity", "neuron",
                    "--dataset", "digits", "--scope", "global", "--min-keep", "0.1", "--epsilon", "0.02",
                    "--finetune-epochs", "2", "--stability-weight", "0.1", "--out", f"{tmp_path}/pruned.onnx"]
    line = "certprune demo"
    assert expand(line, COMMANDS[line], tmp_path, tmp_path) == ["demo", "--timeout", "10", "--no-progress"]
    line = "certprune verify MODEL.onnx[.gz] PROP.vnnlib[.gz] [--timeout S] [--results-file F] [--stats-file F]"
    assert expand(line, COMMANDS[line], tmp_path, tmp_path) == [
        "verify", DIGITS, f"{tmp_path}/prop.vnnlib", "--timeout", "10", "--results-file", f"{tmp_path}/results.txt",
        "--stats-file", f"{tmp_path}/stats.json"]


def _params():
    for line, run in COMMANDS.items():
        marks = [pytest.mark.slow] if run.slow else []
        yield pytest.param(line, run, id=re.sub(r"\W+", "_", line)[10:70], marks=marks)


@pytest.mark.parametrize("line,run", list(_params()))
def test_readme_command_runs(line, run, tmp_path, monkeypatch, capsys, request):
    data = request.getfixturevalue("shared_data") if run.needs_data else REPO / "no-data"
    _write_property(tmp_path / "prop.vnnlib")
    _write_bench_inputs(tmp_path)
    for name, src in run.copies.items():
        shutil.copyfile(src, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    argv = expand(line, run, tmp_path, data)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse actions such as --version exit by themselves
        rc = e.code
    cap = capsys.readouterr()
    assert rc in run.ok, f"{line!r} as {argv} exited {rc}: {cap.err.strip()[-500:]}"
    assert "error" not in cap.err.lower(), cap.err
    for opt in ("--out", "--results-file", "--stats-file"):  # the files the line promises exist
        if opt in argv:
            assert Path(argv[argv.index(opt) + 1]).exists(), f"{line!r} wrote no {opt}"
    if argv[0] == "demo":
        assert (tmp_path / "demo_out" / "report.html").exists()
