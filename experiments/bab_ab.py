"""A/B of two checkouts on ACAS Xu, interleaved per instance: decided counts and total / median seconds.

    python experiments/bab_ab.py --a /work/main --b . --tag NAME [--step 3] [--cap 30] [--hard-cap 116]

One persistent worker process per checkout (``PYTHONPATH=CHECKOUT``, one torch thread, imports
warmed up once, outside every instance's time) runs ``bench.run_instance`` (the code path of
``certprune bench``) on each instance in turn; the two workers alternate which goes first on each
instance, so that load drift on a shared machine falls on both alike. Instances: every
``--step``-th row of instances.csv under ``--cap`` seconds, plus the three hard ones (3_3 / 4_2
prop 2, 1_1 prop 5) under ``--hard-cap``. Rows go to OUT/TAG.jsonl as they finish (a rerun
resumes); the summary is printed and written to OUT/TAG.md. Run at normal priority (timed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HARD = {("ACASXU_run2a_3_3_batch_2000.onnx", "prop_2.vnnlib"), ("ACASXU_run2a_4_2_batch_2000.onnx", "prop_2.vnnlib"),
        ("ACASXU_run2a_1_1_batch_2000.onnx", "prop_5.vnnlib")}  # bench.instance_key names

WORKER = r"""
import json, sys, torch
torch.set_num_threads(1)
from certprune.verifiers import bench
from certprune.verifiers.config_file import effective_config
bench.warm_up()
config = effective_config({"threads": 1})
insts = {i.key: i for i in bench.read_instances(sys.argv[1])}
print("ready", flush=True)
for line in sys.stdin:
    onnx, vnnlib, cap = json.loads(line)
    row, _ = bench.run_instance(insts[bench.instance_key(onnx, vnnlib)], cap, config)
    print(json.dumps(row), flush=True)
"""


def worker(checkout: str, csv: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.Popen([sys.executable, "-c", WORKER, str(csv)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=env, cwd=str(Path(checkout).resolve()))
    assert p.stdout.readline().strip() == "ready"
    return p


def ask(p: subprocess.Popen, onnx: str, vnnlib: str, cap: float) -> dict:
    p.stdin.write(json.dumps([onnx, vnnlib, cap]) + "\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def summary(rows: list[dict], side: str, hard: bool) -> str:
    mine = [r for r in rows if r["side"] == side and r["hard"] == hard]
    secs = [r["seconds"] for r in mine]
    decided = sum(r["result"] in ("sat", "unsat") for r in mine)
    med = statistics.median(secs) if secs else float("nan")
    return f"{side}: {len(mine)} instances, decided {decided}, total {sum(secs):.1f} s, median {med:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CERTPRUNE_DATA", "../shared/data"))
    ap.add_argument("--a", required=True, help="checkout A (e.g. main)")
    ap.add_argument("--b", required=True, help="checkout B (the branch)")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--step", type=int, default=3)
    ap.add_argument("--cap", type=float, default=30.0)
    ap.add_argument("--hard-cap", type=float, default=116.0)
    ap.add_argument("--out", default="experiments/results/bab_ab")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.b).resolve()))
    from certprune.verifiers import bench

    csv = Path(args.data).resolve() / "vnncomp" / "acasxu" / "instances.csv"
    insts = bench.read_instances(csv)
    todo = [(i, args.cap, False) for i in insts[::args.step] if i.key not in HARD]
    todo += [(i, args.hard_cap, True) for i in insts if i.key in HARD]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{args.tag}.jsonl"
    rows = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    done = {(r["onnx"], r["vnnlib"], r["side"]) for r in rows}
    workers = {"A": worker(args.a, csv), "B": worker(args.b, csv)}
    for n, (inst, cap, hard) in enumerate(todo):
        for side in ("AB" if n % 2 == 0 else "BA"):
            if (inst.onnx, inst.vnnlib, side) in done:
                continue
            row = {**ask(workers[side], inst.onnx, inst.vnnlib, cap), "side": side, "hard": hard}
            rows.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(side, inst.onnx, inst.vnnlib, row["result"], row["seconds"], flush=True)
    for p in workers.values():
        p.stdin.close()
        p.wait()
    lines = [f"# {args.tag}: A = {args.a}, B = {args.b}, interleaved per instance", "",
             f"every {args.step}-th row of the ACAS Xu instance (hard ones excluded) at a {args.cap:g} s cap:",
             "- " + summary(rows, "A", False), "- " + summary(rows, "B", False), "",
             f"3_3 / 4_2 prop 2 and 1_1 prop 5 at {args.hard_cap:g} s:",
             "- " + summary(rows, "A", True), "- " + summary(rows, "B", True)]
    wrong = [(r["onnx"], r["vnnlib"]) for r in rows if r["result"] in ("sat", "unsat")
             and any(q["result"] in ("sat", "unsat") and q["result"] != r["result"] for q in rows
                     if (q["onnx"], q["vnnlib"]) == (r["onnx"], r["vnnlib"]))]
    lines += ["", f"verdict disagreements between A and B: {sorted(set(wrong)) or 'none'}"]
    (out / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
