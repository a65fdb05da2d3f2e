"""nnenum beside certprune on the ACAS Xu instances, one thread each, on the same machine. Each
tool's rows are appended to its own CSV as instances finish (a rerun with the same --out resumes),
then a table is written: decided / unsat / sat / unknown per tool, total and median time, and the
instances where the tools disagree.

    python experiments/nnenum_side_by_side.py --nnenum-python /tmp/peers/nnenum-venv/bin/python \
        --nnenum-dir /tmp/peers/nnenum [--instances CSV] [--timeout-cap 60] [--certprune-cap 10] \
        [--tools nnenum,certprune] [--interleave] --out DIR

nnenum (github stanleybak/nnenum) lives outside the project, in its own virtual environment; it is
run per instance as its VNN-COMP script does (``python -m nnenum.nnenum ONNX VNNLIB TIMEOUT
RESULT 1``: the last argument is its process count, 1 = single-threaded), with
OMP/OPENBLAS/MKL_NUM_THREADS=1; its time is the wall time of that process (start-up included).
certprune runs in this process (start-up paid once, torch on one thread) through the same
``decide`` as experiments/acasxu_sweep.py; each instance gets min(its timeout, --certprune-cap)
per VNN-LIB disjunct box.
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

FIELDS = ["onnx", "vnnlib", "timeout", "result", "seconds"]
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
    """Rows already in a tool's CSV, by (onnx, vnnlib)."""
    return {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(open(path))} if path.exists() else {}


def run_tool(tool: str, rows: list, a: argparse.Namespace, out: Path) -> None:
    """Run ``tool`` on every instance not yet in its CSV, appending a row as each finishes."""
    path = out / f"nnenum_side_by_side_{tool}.csv"
    done = load_rows(path)
    if a.retry_errors and any(r["result"] == "error" for r in done.values()):
        done = {k: r for k, r in done.items() if r["result"] != "error"}
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows({k: r[k] for k in FIELDS} for r in done.values())
    root = Path(a.instances).parent
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new:
            w.writeheader()
        for onnx, vnn, t in rows:
            if (onnx, vnn) in done:
                continue
            if tool == "nnenum":
                budget = min(t, a.timeout_cap) if a.timeout_cap else t
                word, sec = run_nnenum(a.nnenum_python, Path(a.nnenum_dir) / "src", plain_file(root, onnx, out / "cache"),
                                       plain_file(root, vnn, out / "cache"), budget, out / "nnenum_result.txt")
            else:
                budget = min(t, a.certprune_cap)
                word, sec = run_certprune(root, onnx, vnn, budget)
            w.writerow({"onnx": onnx, "vnnlib": vnn, "timeout": budget, "result": word, "seconds": sec})
            f.flush()
            print(f"{tool} {Path(onnx).stem} {Path(vnn).stem}: {word} {sec} s", flush=True)


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
    ap.add_argument("--timeout-cap", type=float, default=0.0, help="cap on nnenum's per-instance timeout (0: the csv's own)")
    ap.add_argument("--certprune-cap", type=float, default=10.0, help="cap on certprune's per-instance timeout")
    ap.add_argument("--tools", default="nnenum,certprune", help="which to run, in this order")
    ap.add_argument("--interleave", action="store_true", help="round-robin over properties (partial runs cover all)")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the table from the CSVs")
    ap.add_argument("--retry-errors", action="store_true", help="drop a tool's 'error' rows first, so they run again")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_instances(Path(a.instances))
    rows = interleave(rows) if a.interleave else rows
    if not a.report_only:
        import torch
        torch.set_num_threads(1)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        for tool in a.tools.split(","):
            run_tool(tool, rows, a, out)
    per_tool = {t: load_rows(out / f"nnenum_side_by_side_{t}.csv") for t in ("nnenum", "certprune")}
    per_tool = {t: r for t, r in per_tool.items() if r}
    caps = {"nnenum": f"min(own, {a.timeout_cap:g} s)" if a.timeout_cap else "own timeout",
            "certprune": f"min(own, {a.certprune_cap:g} s)"}
    md = markdown(per_tool, caps)
    (out / "nnenum_side_by_side.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
