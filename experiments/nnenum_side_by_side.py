"""nnenum beside certprune on the ACAS Xu instances, one thread each, on the same machine, in one run.

    python experiments/nnenum_side_by_side.py --nnenum-python /tmp/peers/nnenum-venv/bin/python \
        --nnenum-dir /tmp/peers/nnenum [--instances CSV] [--cap 30] [--every K] [--interleave] --out DIR

The two tools run *interleaved per instance*: instance i is run by nnenum and then by certprune (the
order alternates from one instance to the next), so the machine's load at any moment falls on both
tools alike. Each tool's rows are appended to its own CSV as instances finish (a rerun with the same
--out resumes where it stopped, skipping only the rows run at the same budget: after a change of
--cap the instances run again and their new rows replace the old ones; each row also records the
1-minute load average when it started),
then a table is written: decided / unsat / sat / unknown per tool, total and median time, and the
instances where the tools disagree (sat against unsat).

Both tools get the same budget per instance: the csv's own timeout, or min(own, --cap) when a cap
is given. ``--every K`` runs the fixed sample of every K-th instance of each property (on ACAS Xu,
K = 3 keeps 15 of the 45 networks for properties 1-4 and the single instances of properties 5-10:
66 instances), before ``--interleave`` reorders them round-robin over the properties.

nnenum (github stanleybak/nnenum) lives outside the project, in its own virtual environment; it is
run per instance as its VNN-COMP script does (``python -m nnenum.nnenum ONNX VNNLIB TIMEOUT
RESULT 1``: the last argument is its process count, 1 = single-threaded), with
OMP/OPENBLAS/MKL_NUM_THREADS=1; its time is the wall time of that process (its start-up included).
certprune runs in this process (start-up paid once, torch on one thread) through
``decide_instance``, the path ``certprune bench`` takes, with the whole instance's budget.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

FIELDS = ["onnx", "vnnlib", "timeout", "result", "seconds", "load1"]
NNENUM_WORDS = {"holds": "unsat", "violated": "sat", "timeout": "timeout"}
def nnenum_result(text: str) -> str:
    """nnenum's result-file word -> unsat / sat / timeout / unknown / error (VNN-COMP words)."""
    word = text.strip().splitlines()[0].strip() if text.strip() else ""
    if word in NNENUM_WORDS:
        return NNENUM_WORDS[word]
    return "error" if word == "error" else "unknown"


def read_instances(path: Path) -> list[tuple[str, str, float]]:
    """``instances.csv`` rows (onnx, vnnlib, timeout seconds)."""
    return [(r[0].strip(), r[1].strip(), float(r[2])) for r in csv.reader(open(path)) if r]


def interleave(rows: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """Round-robin over the properties, so a partial run covers every property."""
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r[1], []).append(r)
    out, queues = [], list(groups.values())
    while any(queues):
        out += [q.pop(0) for q in queues if q]
    return out


def every_kth(rows: list[tuple[str, str, float]], k: int) -> list[tuple[str, str, float]]:
    """The fixed sample of every ``k``-th instance of each property (its first, (k+1)-th, ...), csv order kept."""
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        i = seen[r[1]] = seen.get(r[1], -1) + 1
        if i % k == 0:
            out.append(r)
    return out


def plain_file(root: Path, rel: str, cache: Path) -> Path:
    """The instance file, gunzipped into ``cache`` when only ``rel.gz`` exists (nnenum reads plain files)."""
    p = root / rel
    if p.exists():
        return p
    target = cache / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress((root / f"{rel}.gz").read_bytes()))
    return target


def run_nnenum(python: str, src: Path, onnx: Path, vnnlib: Path, timeout: float, result: Path) -> tuple[str, float]:
    """One nnenum process, single-threaded; (result word, wall seconds)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(src))
    result.unlink(missing_ok=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run([python, "-m", "nnenum.nnenum", str(onnx), str(vnnlib), str(timeout), str(result), "1"],
                           env=env, capture_output=True, text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        return "timeout", round(time.perf_counter() - t0, 2)
    wall = round(time.perf_counter() - t0, 2)
    word = nnenum_result(result.read_text()) if result.exists() else "error"
    if word == "error":  # keep the tail of its output to see why
        log = result.parent / "nnenum_errors" / f"{onnx.stem}.{vnnlib.stem}.log"
        log.parent.mkdir(exist_ok=True)
        log.write_text(f"exit {p.returncode}\n" + (p.stdout + p.stderr)[-4000:])
    return word, wall


def run_certprune(root: Path, onnx: str, vnnlib: str, timeout: float) -> tuple[str, float]:
    """certprune in process via the bench runner's per-instance path; (VNN-COMP word, wall seconds)."""
    from certprune.verifiers.bench import resolve_path
    from certprune.verifiers.instance import decide_instance
    t0 = time.perf_counter()
    try:
        word = decide_instance(str(resolve_path(root, onnx)), str(resolve_path(root, vnnlib)), timeout,
                               config={"threads": 1}).word
    except Exception as e:  # noqa: BLE001 - a crash on one instance is recorded, the run goes on
        print(f"certprune error on {onnx} {vnnlib}: {e}", file=sys.stderr, flush=True)
        word = "error"
    return word, round(time.perf_counter() - t0, 2)


def load_rows(path: Path) -> dict[tuple[str, str], dict]:
    """Rows already in a tool's CSV, by (onnx, vnnlib); of an instance run more than once (at other
    budgets), its last row."""
    return {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(open(path))} if path.exists() else {}


def _open_csv(path: Path, retry_errors: bool) -> tuple[dict, object, csv.DictWriter]:
    """(rows already done by key, open file, writer) for one tool's CSV; ``retry_errors`` drops 'error' rows."""
    done = load_rows(path)
    if retry_errors and any(r["result"] == "error" for r in done.values()):
        done = {k: r for k, r in done.items() if r["result"] != "error"}
        path.unlink()
    new = not path.exists()
    f = open(path, "a", newline="")
    w = csv.DictWriter(f, FIELDS, extrasaction="ignore")
    if new:
        w.writeheader()
        w.writerows(done.values())
    return done, f, w


def run_one(tool: str, onnx: str, vnn: str, budget: float, a: argparse.Namespace, out: Path) -> tuple[str, float]:
    """One tool on one instance within ``budget`` seconds; (VNN-COMP word, wall seconds)."""
    root = Path(a.instances).parent
    if tool == "nnenum":
        return run_nnenum(a.nnenum_python, Path(a.nnenum_dir) / "src", plain_file(root, onnx, out / "cache"),
                          plain_file(root, vnn, out / "cache"), budget, out / "nnenum_result.txt")
    return run_certprune(root, onnx, vnn, budget)


def run_interleaved(tools: list[str], rows: list, a: argparse.Namespace, out: Path) -> None:
    """Every instance by every tool in turn (order alternating per instance), rows appended as they finish."""
    opened = {t: _open_csv(out / f"nnenum_side_by_side_{t}.csv", a.retry_errors) for t in tools}
    try:
        for i, (onnx, vnn, t) in enumerate(rows):
            budget = min(t, a.cap) if a.cap else t
            for tool in (tools if i % 2 == 0 else tools[::-1]):
                done, f, w = opened[tool]
                old = done.get((onnx, vnn))
                if old is not None and float(old["timeout"]) == budget:  # another budget: run it again
                    continue
                load1 = round(os.getloadavg()[0], 1)
                word, sec = run_one(tool, onnx, vnn, budget, a, out)
                w.writerow({"onnx": onnx, "vnnlib": vnn, "timeout": budget, "result": word, "seconds": sec,
                            "load1": load1})
                f.flush()
                print(f"[{i + 1}/{len(rows)}] {tool} {Path(onnx).stem} {Path(vnn).stem}: {word} {sec} s "
                      f"(load {load1})", flush=True)
    finally:
        for _, f, _ in opened.values():
            f.close()


def summarise(rows: dict[tuple[str, str], dict]) -> dict:
    """Counts per word and total / median seconds over the decided and over all rows."""
    words = [r["result"] for r in rows.values()]
    secs = [float(r["seconds"]) for r in rows.values()]
    dec = [float(r["seconds"]) for r in rows.values() if r["result"] in ("sat", "unsat")]
    return {"run": len(words), "unsat": words.count("unsat"), "sat": words.count("sat"),
            "decided": len(dec), "unknown": len(words) - len(dec),
            "total_s": sum(secs), "median_s": statistics.median(secs) if secs else float("nan"),
            "median_decided_s": statistics.median(dec) if dec else float("nan")}


def disagreements(a: dict, b: dict) -> list[tuple[str, str, str, str]]:
    """Instances where one tool says sat and the other unsat: (onnx, vnnlib, word a, word b)."""
    bad = []
    for key in sorted(set(a) & set(b)):
        pair = {a[key]["result"], b[key]["result"]}
        if pair == {"sat", "unsat"}:
            bad.append((*key, a[key]["result"], b[key]["result"]))
    return bad


def budget_label(rows: dict[tuple[str, str], dict]) -> str:
    """The budgets per instance the rows were run at (their CSV's timeout column), e.g.
    ``30 s`` or ``10 s (60 rows), 30 s (6 rows)``."""
    counts: dict[float, int] = {}
    for r in rows.values():
        counts[float(r["timeout"])] = counts.get(float(r["timeout"]), 0) + 1
    if len(counts) == 1:
        return f"{next(iter(counts)):g} s"
    return ", ".join(f"{t:g} s ({n} rows)" for t, n in sorted(counts.items()))


def markdown(per_tool: dict[str, dict], caps: dict[str, str]) -> str:
    """The summary table per tool plus the common-instance comparison and disagreements."""
    lines = ["| tool | budget per instance | run | decided | unsat | sat | unknown/timeout/error | total s | median s (all) | median s (decided) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for tool, rows in per_tool.items():
        s = summarise(rows)
        lines.append(f"| {tool} | {caps[tool]} | {s['run']} | {s['decided']} | {s['unsat']} | {s['sat']} | {s['unknown']} | "
                     f"{s['total_s']:.1f} | {s['median_s']:.2f} | {s['median_decided_s']:.2f} |")
    if len(per_tool) == 2:
        (na, a), (nb, b) = per_tool.items()
        common = set(a) & set(b)
        both = sum(a[k]["result"] in ("sat", "unsat") and b[k]["result"] in ("sat", "unsat") for k in common)
        only_a = sum(a[k]["result"] in ("sat", "unsat") and b[k]["result"] not in ("sat", "unsat") for k in common)
        only_b = sum(b[k]["result"] in ("sat", "unsat") and a[k]["result"] not in ("sat", "unsat") for k in common)
        bad = disagreements(a, b)
        lines.append(f"\nOn the {len(common)} instances both ran: decided by both {both}, only by {na} {only_a}, "
                     f"only by {nb} {only_b}; sat/unsat disagreements: {len(bad)}.")
        lines += [f"- {Path(o).stem} {Path(v).stem}: {na} {x}, {nb} {y}" for o, v, x, y in bad]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nnenum-python", required=True, help="python of the venv nnenum's requirements are in")
    ap.add_argument("--nnenum-dir", required=True, help="nnenum's checkout (its src/ holds the package)")
    ap.add_argument("--instances", default=str(Path(os.environ.get("CERTPRUNE_DATA", "../shared/data")) / "vnncomp" / "acasxu" / "instances.csv"))
    ap.add_argument("--cap", type=float, default=0.0, help="cap on both tools' per-instance timeout (0: the csv's own)")
    ap.add_argument("--every", type=int, default=1, help="run every K-th instance of each property (a fixed sample)")
    ap.add_argument("--tools", default="nnenum,certprune", help="which to run (first tool first on even instances)")
    ap.add_argument("--interleave", action="store_true", help="round-robin over properties (partial runs cover all)")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the table from the CSVs")
    ap.add_argument("--retry-errors", action="store_true", help="drop a tool's 'error' rows first, so they run again")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = every_kth(read_instances(Path(a.instances)), max(1, a.every))
    rows = interleave(rows) if a.interleave else rows
    if not a.report_only:
        import torch
        torch.set_num_threads(1)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        run_interleaved(a.tools.split(","), rows, a, out)
    per_tool = {t: load_rows(out / f"nnenum_side_by_side_{t}.csv") for t in ("nnenum", "certprune")}
    per_tool = {t: r for t, r in per_tool.items() if r}
    where = {"nnenum": "own process", "certprune": "in process"}
    caps = {t: f"{budget_label(r)}, {where[t]}" for t, r in per_tool.items()}  # what the rows ran at
    md = markdown(per_tool, caps)
    (out / "nnenum_side_by_side.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
