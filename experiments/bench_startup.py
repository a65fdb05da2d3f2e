"""Start-up and timeout keeping of ``certprune verify``: where the time goes from process start to
the first bound, and how closely ``--timeout`` is held. Prints Markdown tables (and writes them to
``--out``).

    OMP_NUM_THREADS=1 python experiments/bench_startup.py [--repeats 5] [--timeouts 5,10,30]
        [--oval 3] [--out experiments/results/bench_startup.md]

1. *Stages*: a fresh interpreter imports, in the order ``certprune verify`` needs them, numpy,
   torch, onnx, onnxruntime, the CLI, the verifier modules, then loads the ACAS Xu 1_4 network,
   reads property 3 and decides it; CPU seconds (``time.process_time``, independent of the machine's
   load) and wall seconds per stage, medians over ``--repeats`` processes.
2. *End to end*: ``python -m certprune verify ONNX VNNLIB --timeout 30 --stats-file F`` on the same
   instance; wall seconds of the process (measured here), its CPU seconds (``RUSAGE_CHILDREN``) and
   the command's own figures from the process start: after imports, after loading, at the first
   bound (``seconds_first_bound``).
3. *Timeout keeping*: ``verify --timeout T`` on the first ``--oval`` oval21 instances of each
   network (CIFAR-10 convnets, too hard to decide in T), process wall / T, and whether the answer
   came from the watchdog.

The 1-minute load average is printed with every table: on the shared 2-core machine wall times are
several times the CPU times.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = r'''
import sys, time
marks = [("interpreter start-up", time.process_time(), time.monotonic())]
def mark(name):
    marks.append((name, time.process_time(), time.monotonic()))
from certprune.commands._clock import process_start
t0 = process_start()
import numpy; mark("numpy")
import torch; mark("torch")
import onnx; mark("onnx")
import onnxruntime; mark("onnxruntime")
import certprune.cli, certprune.commands.verify; mark("certprune CLI")
import certprune.verifiers.instance, certprune.verifiers.verify, certprune.verifiers.bab; mark("verifier modules")
from certprune.network import load_model
net = load_model(sys.argv[1]); mark("load model (+ onnxruntime check)")
from certprune.vnnlib import read_vnnlib
read_vnnlib(sys.argv[2], num_outputs=net.info.num_outputs); mark("read VNN-LIB")
from certprune.verifiers.instance import decide_instance
out = decide_instance(sys.argv[1], sys.argv[2], 30.0, config={"threads": 1}, model=net); mark("decide (" + out.word + ")")
rows, prev_c, prev_w = [], 0.0, t0
for name, c, w in marks:
    rows.append((name, c - prev_c, w - prev_w))
    prev_c, prev_w = c, w
print("JSON" + __import__("json").dumps(rows))
'''


def acas(data: Path) -> tuple[Path, Path]:
    d = data / "vnncomp" / "acasxu"
    return d / "onnx" / "ACASXU_run2a_1_4_batch_2000.onnx", d / "vnnlib" / "prop_3.vnnlib"


CHECKOUT = [REPO]  # the certprune checkout under test (--checkout: e.g. main, for a before/after)


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(CHECKOUT[0]))


def child_run(cmd: list[str], timeout: float = 600) -> tuple[subprocess.CompletedProcess, float, float]:
    """(completed process, wall seconds, CPU seconds user+sys) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout, cwd=CHECKOUT[0])
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return p, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stages(data: Path, repeats: int) -> str:
    onnx, vnn = acas(data)
    runs = []
    for _ in range(repeats):
        p, _, _ = child_run([sys.executable, "-c", STAGES, str(onnx), str(vnn)])
        line = next((x for x in p.stdout.splitlines() if x.startswith("JSON")), None)
        if line is None:
            raise SystemExit(f"stage run failed: {p.stderr[-2000:]}")
        runs.append(json.loads(line[4:]))
    lines = [f"Stages of a fresh process (ACAS Xu 1_4 / prop_3), median of {repeats}, load average "
             f"{os.getloadavg()[0]:.1f}:", "", "| stage | CPU s | wall s |", "|---|---|---|"]
    for i, (name, _, _) in enumerate(runs[0]):
        c = statistics.median(r[i][1] for r in runs)
        w = statistics.median(r[i][2] for r in runs)
        lines.append(f"| {name} | {c:.3f} | {w:.2f} |")
    tc = statistics.median(sum(x[1] for x in r) for r in runs)
    tw = statistics.median(sum(x[2] for x in r) for r in runs)
    lines.append(f"| **total** | **{tc:.3f}** | **{tw:.2f}** |")
    return "\n".join(lines)


def end_to_end(data: Path, repeats: int) -> str:
    onnx, vnn = acas(data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.json"
        for _ in range(repeats):
            stats_path.unlink(missing_ok=True)  # a run that writes no stats must not reuse the last one's
            p, wall, cpu = child_run([sys.executable, "-m", "certprune", "verify", str(onnx), str(vnn),
                                      "--timeout", "30", "--stats-file", str(stats_path)])
            if not stats_path.is_file():
                raise SystemExit(f"verify wrote no stats file (exit {p.returncode}): {p.stderr[-2000:]}")
            s = json.loads(stats_path.read_text())
            rows.append((wall, cpu, s.get("seconds_after_imports", float("nan")),
                         s.get("seconds_after_loading", float("nan")), s.get("seconds_first_bound", float("nan")),
                         s.get("seconds_total", float("nan")), p.stdout.strip()))
    med = [statistics.median(r[i] for r in rows) for i in range(6)]
    return "\n".join([
        f"`certprune verify` end to end (ACAS Xu 1_4 / prop_3, --timeout 30), median of {repeats}, load average "
        f"{os.getloadavg()[0]:.1f}; answers {sorted({r[6] for r in rows})}:", "",
        "| process wall s | process CPU s | after imports s | after loading s | first bound s | answered s |",
        "|---|---|---|---|---|---|",
        "| " + " | ".join(f"{v:.2f}" for v in med) + " |"])


def oval_instances(data: Path, per_net: int) -> list[tuple[Path, Path]]:
    d = data / "vnncomp" / "oval21"
    seen: dict[str, int] = {}
    out = []
    for line in (d / "instances.csv").read_text().splitlines():
        onnx, vnn = (x.strip() for x in line.split(",")[:2])
        if seen.get(onnx, 0) < per_net:
            seen[onnx] = seen.get(onnx, 0) + 1
            gz = lambda rel: d / rel if (d / rel).exists() else d / f"{rel}.gz"  # noqa: E731
            out.append((gz(onnx), gz(vnn)))
    return out


def timeout_keeping(data: Path, timeouts: list[float], per_net: int) -> str:
    lines = ["`certprune verify --timeout T` on oval21 (CIFAR-10 convnets), process wall / T:", "",
             "| T s | instances | answers | median wall / T | max wall / T | watchdog answers | load average |",
             "|---|---|---|---|---|---|---|"]
    inst = oval_instances(data, per_net)
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.json"
        for t in timeouts:
            ratios, words, dog = [], [], 0
            for onnx, vnn in inst:
                stats_path.unlink(missing_ok=True)
                p, wall, _ = child_run([sys.executable, "-m", "certprune", "verify", str(onnx), str(vnn),
                                        "--timeout", f"{t:g}", "--stats-file", str(stats_path)], timeout=10 * t + 120)
                ratios.append(wall / t)
                words.append(p.stdout.strip() or f"exit {p.returncode}")
                dog += stats_path.exists() and json.loads(stats_path.read_text()).get("watchdog", False)
            counts = ", ".join(f"{w} {words.count(w)}" for w in sorted(set(words)))
            lines.append(f"| {t:g} | {len(inst)} | {counts} | {statistics.median(ratios):.3f} | {max(ratios):.3f} | "
                         f"{dog} | {os.getloadavg()[0]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CERTPRUNE_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeouts", default="5,10,30", help="comma-separated --timeout values for part 3")
    ap.add_argument("--oval", type=int, default=3, help="oval21 instances per network for part 3 (0: skip)")
    ap.add_argument("--skip-stages", action="store_true")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--checkout", default=str(REPO), help="certprune checkout to measure (default this one)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    data = Path(a.data)
    CHECKOUT[0] = Path(a.checkout)
    parts = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, torch one thread, "
             f"checkout {a.checkout}."]
    if not a.skip_stages:
        parts.append(stages(data, a.repeats))
    if not a.skip_e2e:
        parts.append(end_to_end(data, a.repeats))
    if a.oval:
        parts.append(timeout_keeping(data, [float(x) for x in a.timeouts.split(",")], a.oval))
    md = "\n\n".join(parts) + "\n"
    print(md)
    if a.out:
        Path(a.out).write_text(md)


if __name__ == "__main__":
    main()
