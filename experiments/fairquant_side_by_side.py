"""FairQuant beside certprune on the Fairify models: same model, protected attribute, integer
domain and time limit, one thread each, run one after the other. Rows are checkpointed to a CSV
(a rerun with the same --out resumes) and a markdown table is written beside it.

    python experiments/fairquant_side_by_side.py --fairquant-bin /tmp/peers/fq/FairQuant/network_test \
        [--nnet-dir /tmp/peers/fq/models] [--models GC-1,GC-3] [--timeout 60] --out DIR

FairQuant (github briankim113/FairQuant-Artifact) is built outside the project, in a temporary
directory; its time limit is the constant ``TIMEOUT`` in ``network_test.c``, so build a copy whose
constant reads the environment variable ``FAIRQUANT_TIMEOUT`` (this script sets it)::

    sed -i 's|long int TIMEOUT = 1800;|long int TIMEOUT = getenv("FAIRQUANT_TIMEOUT") ? \
atol(getenv("FAIRQUANT_TIMEOUT")) : 1800;|' network_test.c
    make all INSTALL_PREFIX=/usr CFLAGS="-I/usr/include/x86_64-linux-gnu -O3"

Each ``.nnet`` is copied to a temporary file whose domain header (mins and maxes lines) is
rewritten to certprune's schema in the model's input order: this corrects the Bank models, whose
published headers list the ranges in Fairify's ``range_dict`` order (see
shared/data/fairness/PEERS.md); for German and Adult the header already equals the schema
(``header_fixed`` says which). The weights are untouched.

FairQuant's rates are volume shares of the domain; its ``fal_rate`` only counts counterexample
points, so its undecided share is the comparable figure. certprune's shares come from the
``individuals`` key of ``summary.json`` (exact counts of integer points) when present, else from the
partition shares (``share_unit`` says which). Speed to the same coverage: ``cp_t_fq`` is the
first time (seconds into certprune's audit, from summary.json's ``progress``) at which certprune's
proven-fair share reaches FairQuant's final certified share (blank if it never does), to compare
with ``fq_seconds``; ``cp_fair_at_fq`` is certprune's proven-fair share at FairQuant's time.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASET = {"GC": "german", "BM": "bank", "AC": "adult"}
PROTECTED = {"german": "age", "bank": "age", "adult": "sex"}
MODELS = "GC-1,GC-3,GC-4,GC-5,BM-1,BM-2,BM-4,BM-8,AC-3,AC-9,AC-12"
FIELDS = ["model", "protected", "pa_index", "header_fixed", "timeout",
          "fq_cer", "fq_fal", "fq_und", "fq_seconds", "fq_wall", "fq_subproblems", "fq_cex", "fq_end",
          "cp_fair", "cp_unfair", "cp_undecided", "cp_unit", "cp_seconds", "cp_wall", "cp_exit",
          "cp_t_fq", "cp_fair_at_fq"]
_TIME = re.compile(r"(?:Took\s+)?([\d.]+)\s*(?:sec|seconds)\s*\|\s*(\d+)\s*solved subp\w*\s*\|\s*(\d+)\s*(?:advs|#Cex)")
_RATES = re.compile(r"cer_rate:\s*([\d.]+)%,\s*fal_rate:\s*([\d.]+)%,\s*und_rate:\s*([\d.]+)%")
_ENDS = (("complete termination", "complete"), ("quasi-complete", "quasi-complete"),
         ("timeout of", "timeout"), ("memoryout", "memoryout"))


def single_thread_env(extra: dict | None = None) -> dict:
    """The environment with BLAS/OpenMP limited to one thread (plus ``extra``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra or {})
    return env


def parse_fairquant(text: str) -> dict:
    """FairQuant's stdout+stderr -> rates in percent, its own seconds, subproblems, #cex, end reason.

    Raises ValueError when the final lines are missing (crash, or killed before printing)."""
    t, r = _TIME.search(text), _RATES.search(text)
    if t is None or r is None:
        raise ValueError("FairQuant output has no final 'sec | solved subps' and 'cer_rate' lines")
    end = next((name for key, name in reversed(_ENDS) if key in text), "unknown")
    return {"fq_seconds": float(t[1]), "fq_subproblems": int(t[2]), "fq_cex": int(t[3]),
            "fq_cer": float(r[1]), "fq_fal": float(r[2]), "fq_und": float(r[3]), "fq_end": end}


def parse_certprune_summary(summary: dict) -> dict:
    """certprune's summary.json -> fair / unfair / undecided in percent, and the unit they count.

    Uses ``individuals`` {total, fair, unfair, undecided} (integer points) when present, else the
    partition shares ``domain_share`` {certified, falsified, undecided}."""
    ind = summary.get("individuals")
    if ind:
        total = ind["total"]
        if ind["fair"] + ind["unfair"] + ind["undecided"] != total:
            raise ValueError(f"individuals do not add up: {ind}")
        pct = {k: 100.0 * ind[k] / total for k in ("fair", "unfair", "undecided")}
        return {"cp_fair": pct["fair"], "cp_unfair": pct["unfair"], "cp_undecided": pct["undecided"],
                "cp_unit": "individuals", "cp_seconds": summary.get("seconds")}
    share = summary["domain_share"]
    return {"cp_fair": 100.0 * share["certified"], "cp_unfair": 100.0 * share["falsified"],
            "cp_undecided": 100.0 * share["undecided"], "cp_unit": "partitions",
            "cp_seconds": summary.get("seconds")}


def coverage_race(progress: dict | None, fq_cer: float | None, fq_seconds: float | None) -> dict:
    """From certprune's ``progress`` {seconds, fair_share}: the first second at which its proven-fair
    share (percent) reaches FairQuant's ``fq_cer``, and its share at FairQuant's ``fq_seconds``."""
    if not progress or fq_cer is None:
        return {}
    pts = list(zip(progress["seconds"], (100.0 * f for f in progress["fair_share"])))
    hit = next((t for t, f in pts if f >= fq_cer - 1e-9), None)
    row = {"cp_t_fq": hit}
    if fq_seconds is not None:
        row["cp_fair_at_fq"] = max((f for t, f in pts if t <= fq_seconds), default=0.0)
    return row


def _fmt(v: float) -> str:
    """A header number: integers without a decimal point."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def nnet_with_domain(text: str, lows: list[int], highs: list[int]) -> tuple[str, bool]:
    """The .nnet text with its domain header set to ``lows``/``highs``; and whether it changed.

    Layout (after ``//`` comments): sizes, layer sizes, flag, then mins, maxes, means, ranges (the
    last two have one extra entry, for the output, kept as is), then the weights. FairQuant takes
    its domain from mins/maxes and its volume from ranges (max - min), so all four are rewritten
    (means = midpoints); the weights are untouched."""
    lines = text.split("\n")
    first = next(i for i, ln in enumerate(lines) if not ln.startswith("//"))
    n_in = int(lines[first].split(",")[1])
    if len(lows) != n_in:
        raise ValueError(f".nnet has {n_in} inputs, the schema {len(lows)} features")
    old = [[float(v) for v in lines[first + k].strip().rstrip(",").split(",")] for k in (3, 4, 5, 6)]
    new = [list(map(float, lows)), list(map(float, highs)),
           [(lo + hi) / 2 for lo, hi in zip(lows, highs)] + old[2][n_in:],
           [float(hi - lo) for lo, hi in zip(lows, highs)] + old[3][n_in:]]
    if [old[k] for k in (0, 1, 3)] == [new[k] for k in (0, 1, 3)]:
        return text, False
    for k, values in enumerate(new):
        lines[first + 3 + k] = ",".join(_fmt(v) for v in values) + ","
    return "\n".join(lines), True


def schema_domain(dataset: str, protected: str) -> tuple[list[int], list[int], int]:
    """certprune's integer domain in the model's input order, and the protected attribute's index."""
    from certprune.datasets.tabular import get_schema
    feats = get_schema(dataset).features
    names = [f.name for f in feats]
    return [f.low for f in feats], [f.high for f in feats], names.index(protected)


def run_fairquant(binary: Path, nnet: Path, pa: int, timeout: int, workdir: Path, log: Path) -> dict:
    """Run FairQuant once (it writes res/<model>-<pa>.txt under ``workdir``; its output goes to ``log``)."""
    (workdir / "res").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run([str(binary), str(nnet), str(pa)], cwd=workdir, capture_output=True, text=True,
                           env=single_thread_env({"FAIRQUANT_TIMEOUT": str(timeout)}), timeout=timeout + 120)
        text = p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return {"fq_end": "killed", "fq_wall": round(time.perf_counter() - t0, 2)}
    wall = round(time.perf_counter() - t0, 2)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    try:
        return {**parse_fairquant(text), "fq_wall": wall}
    except ValueError:
        return {"fq_end": f"error (exit {p.returncode})", "fq_wall": wall}


def run_certprune(model: Path, dataset: str, protected: str, timeout: int, out: Path) -> dict:
    """``certprune fairness`` as a subprocess (one thread, default partitions); parsed summary + wall time."""
    cmd = [sys.executable, "-m", "certprune", "fairness", str(model), "--dataset", dataset,
           "--protected", protected, "--timeout", str(timeout), "--no-progress", "--out", str(out)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=single_thread_env(), timeout=timeout * 3 + 300)
    wall = round(time.perf_counter() - t0, 2)
    (out.parent / f"{out.name}.log").write_text(p.stdout + p.stderr)
    row = {"cp_wall": wall, "cp_exit": p.returncode}
    summary = out / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        row.update(parse_certprune_summary(s))
        row["progress"] = s.get("progress")
    return row


def run_model(model: str, a: argparse.Namespace, scratch: Path) -> dict:
    """One row: FairQuant then certprune on ``model`` with the same domain and limit."""
    ds = DATASET[model[:2]]
    prot = PROTECTED[ds]
    lows, highs, pa = schema_domain(ds, prot)
    text, fixed = nnet_with_domain((Path(a.nnet_dir) / ds / f"{model}.nnet").read_text(), lows, highs)
    nnet = scratch / f"{model}.nnet"
    nnet.write_text(text)
    row = {"model": model, "protected": prot, "pa_index": pa, "header_fixed": fixed, "timeout": a.timeout}
    row.update(run_fairquant(Path(a.fairquant_bin).resolve(), nnet, pa, a.timeout, scratch,
                             Path(a.out) / "fairquant" / f"{model}.log"))
    row.update(run_certprune(Path(a.models_dir) / f"{model}.h5", ds, prot, a.timeout, Path(a.out) / "certprune" / model))
    row.update(coverage_race(row.pop("progress", None), row.get("fq_cer"), row.get("fq_seconds")))
    return row


def _num(v, fmt: str = "{:.1f}") -> str:
    """A number formatted, or '–' for a missing value."""
    try:
        return fmt.format(float(v))
    except (TypeError, ValueError):
        return "–"


def markdown(rows: list[dict]) -> str:
    """The side-by-side table: FairQuant cer / und %, time; certprune fair / unfair / undecided %, time."""
    lines = ["| model | FairQuant cer / und % | FairQuant s | certprune fair / unfair / undecided % (unit) | certprune s (wall) "
             "| certprune s to FairQuant's cer % | certprune fair % at FairQuant's s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        fix = " (header fixed)" if str(r.get("header_fixed")) == "True" else ""
        lines.append(f"| {r['model']} {r['protected']}{fix} | {_num(r.get('fq_cer'), '{:.2f}')} / {_num(r.get('fq_und'), '{:.2f}')}"
                     f" ({r.get('fq_end', '')}) | {_num(r.get('fq_seconds'))} | {_num(r.get('cp_fair'), '{:.2f}')} / "
                     f"{_num(r.get('cp_unfair'), '{:.2f}')} / {_num(r.get('cp_undecided'), '{:.2f}')} ({r.get('cp_unit', '–')}) | "
                     f"{_num(r.get('cp_seconds'))} ({_num(r.get('cp_wall'))}) | {_num(r.get('cp_t_fq'))} | "
                     f"{_num(r.get('cp_fair_at_fq'), '{:.2f}')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fairquant-bin", required=True, help="FairQuant's network_test, built with FAIRQUANT_TIMEOUT")
    ap.add_argument("--nnet-dir", help="the artifact's models/ folder (default: ../../models from the binary)")
    ap.add_argument("--models-dir", default=str(Path(os.environ.get("CERTPRUNE_DATA", "../shared/data")) / "fairness" / "fairify_models"))
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    a.nnet_dir = a.nnet_dir or str(Path(a.fairquant_bin).resolve().parents[1] / "models")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "fairquant_side_by_side.csv"
    rows = list(csv.DictReader(open(table))) if table.exists() else []
    done = {r["model"] for r in rows}
    with tempfile.TemporaryDirectory(prefix="fairquant-") as tmp:
        for model in a.models.split(","):
            if model in done:
                continue
            rows.append(run_model(model, a, Path(tmp)))
            print(rows[-1], flush=True)
            with open(table, "w", newline="") as f:
                w = csv.DictWriter(f, FIELDS)
                w.writeheader()
                w.writerows(rows)
    md = markdown(rows)
    (out / "fairquant_side_by_side.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
