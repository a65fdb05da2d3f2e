"""Benchmark: certprune verify against Marabou (maraboupy 2.0.0) on the same instances, same timeout.

Instances (documented subset, chosen before any run):
- ACAS Xu: every ``--acas-stride``-th row of ``vnncomp/acasxu/instances.csv`` (default 8 -> 24 of
  the 186 instances, all ten properties represented where the stride hits them);
- MNIST: the bundled ``certprune/models/mnist_mlp.onnx`` (784-64-32-10), the first ``--mnist-images``
  correctly classified held-out test images (indices 8000+), L-inf radii ``--eps``; the VNN-LIB
  files are generated with ``certprune.vnnlib.write_vnnlib`` into ``WORK/instances``.

certprune runs as ``certprune verify ... --fast-exit`` (skips Python's teardown of torch after the
result file is written). Every (instance, tool) runs in its own subprocess with the same per-instance budget and a hard
kill at budget + 15 s; wall time includes start-up (Python imports, model loading) for both tools.
Rows are appended to ``OUT/rows.csv`` as they finish, so a rerun resumes. A ``sat`` from either
tool is checked with onnxruntime (input in the box, output violates the property); the table then
lists per-instance words and seconds, solved counts, total time, and disagreements.

Usage (the README numbers: 47 ACAS Xu rows 0, 4, 8, ... plus 20 MNIST instances, about 25 min)::

    python experiments/bench_verify.py --out experiments/results/bench_verify --timeout 30 \
        --acas-offset 0 4 --eps 0.005 0.01 0.02 0.03 0.05

Add ``--table-only`` to rebuild the markdown from the CSV.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MNIST_MODEL = REPO / "certprune" / "models" / "mnist_mlp.onnx"
FIELDS = ["instance", "tool", "word", "seconds", "solve_seconds", "cex_valid", "note"]
TOOLS = ("certprune", "marabou")


# ----------------------------------------------------------------------------- instances
def acas_instances(data: Path, stride: int, offset: int = 0) -> list[tuple[str, Path, Path]]:
    """(name, onnx, vnnlib) for every ``stride``-th row of instances.csv, starting at ``offset``."""
    root = data / "vnncomp" / "acasxu"
    rows = [r for r in csv.reader(open(root / "instances.csv")) if r]
    out = []
    for onnx_rel, vnn_rel, _ in rows[offset::stride]:
        net = Path(onnx_rel).name.replace("ACASXU_run2a_", "").replace("_batch_2000.onnx", "")
        out.append((f"acas_{net}_{Path(vnn_rel).stem}", root / onnx_rel, root / vnn_rel))
    return out


def mnist_instances(data: Path, out: Path, n_images: int, eps: list[float]) -> list[tuple[str, Path, Path]]:
    """Robustness instances for the bundled MNIST MLP on held-out images it classifies correctly."""
    from certprune.datasets import load_mnist
    from certprune.specs import RobustnessSpec
    from certprune.vnnlib import write_vnnlib
    x, y = load_mnist(data)
    folder = out / "instances"
    folder.mkdir(parents=True, exist_ok=True)
    picked, i = [], 8000
    while len(picked) < n_images and i < len(x):
        if int(np.argmax(ort_run(MNIST_MODEL, x[i]))) == y[i]:
            picked.append(i)
        i += 1
    insts = []
    for i in picked:
        for e in eps:
            path = folder / f"mnist_{i}_eps{e:g}.vnnlib"
            if not path.exists():
                write_vnnlib(RobustnessSpec(x[i].ravel(), e, int(y[i])).to_property(10), path)
            insts.append((path.stem, MNIST_MODEL, path))
    return insts


# ----------------------------------------------------------------------------- checking
def ort_run(model: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime output (flat float32 values as float64) of one input ``x`` (flat or shaped)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    return sess.run(None, {inp.name: np.asarray(x, np.float32).reshape(shape)})[0].ravel().astype(np.float64)


def check_sat(model: Path, prop: Path, result_file: Path) -> str:
    """'yes' if the result file's X is in the box and onnxruntime's output on it violates the property."""
    from certprune.vnncomp import parse_result
    from certprune.vnnlib import read_vnnlib
    word, vals = parse_result(result_file.read_text())
    props = read_vnnlib(prop)
    n = props[0].region.dim
    x = np.array([vals[f"X_{i}"] for i in range(n)])
    y = ort_run(model, x)
    ok = any(p.region.contains(x, tol=1e-6).all() and p.is_violated(y[None]).all() for p in props)
    return "yes" if ok else "NO"


# ----------------------------------------------------------------------------- running
def marabou_worker(model: str, prop: str, timeout: int, result_file: str) -> None:
    """Run Marabou on one instance (its own VNN-LIB parser) and write a VNN-COMP result file
    (plus ``<result_file>.json`` with the seconds spent in ``solve``)."""
    import json
    import warnings
    warnings.simplefilter("ignore")
    from maraboupy import Marabou

    from certprune.vnncomp import write_result
    net = Marabou.read_onnx(model)
    opts = Marabou.createOptions(timeoutInSeconds=int(timeout), verbosity=0)
    t0 = time.monotonic()
    code, vals, _ = net.solve(options=opts, propertyFilename=prop, verbose=False)
    Path(result_file + ".json").write_text(json.dumps({"solve_seconds": time.monotonic() - t0}))
    word = {"sat": "sat", "unsat": "unsat", "TIMEOUT": "timeout"}.get(code, "unknown")
    if word == "sat":
        xs = [vals[v] for v in np.asarray(net.inputVars[0]).ravel()]
        ys = [vals[v] for v in np.asarray(net.outputVars[0]).ravel()]
        write_result(result_file, word, np.array(xs), np.array(ys))
    else:
        write_result(result_file, word)


def run_one(tool: str, model: Path, prop: Path, timeout: float, result_file: Path) -> tuple[str, float, str, str]:
    """(word, wall seconds, note, solve seconds) of one tool on one instance, in a subprocess with a
    hard kill. Solve seconds exclude start-up: certprune's time after imports and model loading,
    Marabou's time inside ``solve``."""
    stats = Path(str(result_file) + ".json")
    stats.unlink(missing_ok=True)
    if tool == "certprune":
        cmd = [sys.executable, "-m", "certprune", "verify", str(model), str(prop), "--timeout", str(timeout),
               "--results-file", str(result_file), "--stats-file", str(stats), "--fast-exit"]
    else:
        cmd = [sys.executable, __file__, "--marabou-worker", str(model), str(prop), str(int(timeout)), str(result_file)]
    result_file.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15, env=env)
        note = "" if r.returncode in (0, 3) else (r.stderr.strip().splitlines() or ["?"])[-1][:120]
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0, "killed at budget + 15 s", ""
    secs = time.monotonic() - t0
    word = result_file.read_text().split("\n", 1)[0].strip() if result_file.exists() else "error"
    return word, secs, note, _solve_seconds(stats)


def _solve_seconds(stats: Path) -> str:
    import json
    if not stats.exists():
        return ""
    d = json.loads(stats.read_text())
    if "solve_seconds" in d:
        return f"{d['solve_seconds']:.2f}"
    return f"{d['seconds_total'] - d['seconds_after_loading']:.2f}"


def load_rows(path: Path) -> dict[tuple[str, str], dict]:
    if not path.exists():
        return {}
    return {(r["instance"], r["tool"]): r for r in csv.DictReader(open(path))}


def bench(instances, out: Path, timeout: float, work: Path) -> None:
    """Run every missing (instance, tool) pair; append each row to rows.csv as it finishes
    (per-tool result files go to ``work/results``)."""
    rows_path = out / "rows.csv"
    done = load_rows(rows_path)
    n_lines = sum(1 for _ in csv.DictReader(open(rows_path))) if done else 0
    if done and (list(next(iter(done.values()))) != FIELDS or n_lines != len(done)):
        # older column set, or a pair measured twice (last kept): rewrite, blanks for new columns
        with open(rows_path, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS, restval="")
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in FIELDS} for r in done.values())
    new_file = not rows_path.exists()
    with open(rows_path, "a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new_file:
            w.writeheader()
        for name, model, prop in instances:
            for tool in TOOLS:
                if (name, tool) in done:
                    continue
                rf = work / "results" / f"{name}.{tool}.txt"
                rf.parent.mkdir(parents=True, exist_ok=True)
                word, secs, note, solve = run_one(tool, model, prop, timeout, rf)
                valid = check_sat(model, prop, rf) if word == "sat" else ""
                w.writerow({"instance": name, "tool": tool, "word": word, "seconds": f"{secs:.2f}",
                            "solve_seconds": solve, "cex_valid": valid, "note": note})
                f.flush()
                print(f"{name:32s} {tool:9s} {word:8s} {secs:7.2f}s {valid} {note}", flush=True)


# ----------------------------------------------------------------------------- table
def table(instances, out: Path, timeout: float) -> str:
    """Markdown: per-instance words and seconds, solved counts, total time, disagreements."""
    rows = load_rows(out / "rows.csv")
    lines = [f"Per-instance budget {timeout:g} s. `wall` = whole subprocess incl. start-up (imports, model "
             "loading); `solve` = time after start-up as reported by the tool (blank where not recorded). "
             "`sat*` = the tool's witness is rejected by onnxruntime in float32.", "",
             "| instance | certprune | wall s | solve s | Marabou | wall s | solve s |",
             "|---|---|---:|---:|---|---:|---:|"]
    solved = {t: 0 for t in TOOLS}
    total = {t: 0.0 for t in TOOLS}
    solve = {t: 0.0 for t in TOOLS}
    only = {t: [] for t in TOOLS}
    disagree, n = [], 0
    for name, _, _ in instances:
        r = {t: rows.get((name, t)) for t in TOOLS}
        if not all(r.values()):
            continue
        n += 1
        words = {}
        for t in TOOLS:
            wd = r[t]["word"] + ("*" if r[t]["cex_valid"] == "NO" else "")
            words[t] = wd
            total[t] += float(r[t]["seconds"])
            solve[t] += float(r[t].get("solve_seconds") or r[t]["seconds"])
            solved[t] += r[t]["word"] in ("sat", "unsat")
        dec = {t: r[t]["word"] in ("sat", "unsat") for t in TOOLS}
        for t, other in (TOOLS, TOOLS[::-1]):
            if dec[t] and not dec[other]:
                only[t].append(name)
        if {r[t]["word"] for t in TOOLS} == {"sat", "unsat"}:
            disagree.append(name)
        cells = [f"{words[t]} | {float(r[t]['seconds']):.1f} | {r[t].get('solve_seconds') or ''}" for t in TOOLS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ratio = total["certprune"] / total["marabou"] if total["marabou"] else float("nan")
    lines = summary_table(instances, rows) + [""] + lines
    lines += ["", f"Instances: {n}. Solved: certprune {solved['certprune']}, Marabou {solved['marabou']} "
              f"(only certprune: {len(only['certprune'])}, only Marabou: {len(only['marabou'])}). "
              f"Total wall time: certprune {total['certprune']:.0f} s, Marabou {total['marabou']:.0f} s "
              f"(ratio certprune/Marabou {ratio:.2f}); solve time without start-up: certprune {solve['certprune']:.0f} s, "
              f"Marabou {solve['marabou']:.0f} s (ratio {solve['certprune'] / max(solve['marabou'], 1e-9):.2f}). "
              f"Only certprune: {', '.join(only['certprune']) or '-'}. Only Marabou: {', '.join(only['marabou']) or '-'}. "
              f"Disagreements (sat vs unsat): {', '.join(disagree) or 'none'}."]
    return "\n".join(lines) + "\n"


def family(name: str) -> str:
    """Group label: 'ACAS Xu prop 1-4', 'ACAS Xu prop 5-10' or 'MNIST eps=E'."""
    if name.startswith("acas_"):
        return "ACAS Xu prop 1-4" if int(name.rsplit("prop_", 1)[1]) <= 4 else "ACAS Xu prop 5-10"
    return "MNIST eps=" + name.rsplit("_eps", 1)[1]


def summary_table(instances, rows) -> list[str]:
    """Per family: instances, solved (sat/unsat) and total wall seconds for each tool."""
    fams: dict[str, dict] = {}
    for name, _, _ in instances:
        r = {t: rows.get((name, t)) for t in TOOLS}
        if not all(r.values()):
            continue
        f = fams.setdefault(family(name), {"n": 0, **{t: [0, 0, 0.0] for t in TOOLS}})
        f["n"] += 1
        for t in TOOLS:
            f[t][0] += r[t]["word"] == "sat"
            f[t][1] += r[t]["word"] == "unsat"
            f[t][2] += float(r[t]["seconds"])
    out = ["| family | n | certprune sat/unsat | certprune s | Marabou sat/unsat | Marabou s |",
           "|---|---:|---:|---:|---:|---:|"]
    for k, f in fams.items():
        c, m = f["certprune"], f["marabou"]
        out.append(f"| {k} | {f['n']} | {c[0]}/{c[1]} | {c[2]:.0f} | {m[0]}/{m[1]} | {m[2]:.0f} |")
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--marabou-worker":
        marabou_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description="certprune vs Marabou on ACAS Xu + MNIST instances")
    ap.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "bench_verify")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--work", type=Path, default=REPO / "out" / "bench_verify",
                    help="generated VNN-LIB files and per-tool result files (git-ignored)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--acas-stride", type=int, default=8)
    ap.add_argument("--acas-offset", type=int, nargs="+", default=[0],
                    help="first row(s) of instances.csv taken, each followed by every stride-th row")
    ap.add_argument("--mnist-images", type=int, default=4)
    ap.add_argument("--eps", type=float, nargs="*", default=[0.005, 0.01, 0.02])
    ap.add_argument("--only", choices=("acas", "mnist", "all"), default="all")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    from certprune.datasets import data_root
    data = data_root(args.data_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    insts = []
    if args.only in ("acas", "all"):
        insts += [i for o in args.acas_offset for i in acas_instances(data, args.acas_stride, o)]
    if args.only in ("mnist", "all"):
        insts += mnist_instances(data, args.work, args.mnist_images, args.eps)
    if not args.table_only:
        bench(insts, args.out, args.timeout, args.work)
    md = table(insts, args.out, args.timeout)
    (args.out / "table.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
