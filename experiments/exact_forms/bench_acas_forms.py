"""ACAS Xu: cost of bounding the ONNX nets on their graph IR (input normalisation ConstBinary, then
Linear layers: not an exact chain, see verifiers.affine) against the densified chain (the
pre-fix form, whose first layer is the normalisation multiplied into W_1 in float64, outside
every rounding margin). Same process, same instances, interleaved, one thread.

    PYTHONPATH=. python experiments/exact_forms/bench_acas_forms.py [N_INSTANCES] > experiments/results/exact_forms/acas_forms.md
"""
import csv
import sys
import time
from pathlib import Path

import torch

import certprune
from certprune.network import load_model
from certprune.verifiers import affine
from certprune.vnnlib import read_vnnlib

torch.set_num_threads(1)
D = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "vnncomp" / "acasxu"
rows = list(csv.reader(open(D / "instances.csv")))
real = affine.is_exact_chain
n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
picked = rows[::max(1, len(rows) // n)][:n]
tot = {"graph": 0.0, "dense": 0.0}
print("| instance | graph IR s | densified s | verdicts |\n|---|---|---|---|")
for onnx, vnn, timeout in picked:
    m = load_model(D / onnx)
    props = read_vnnlib(D / vnn, 5, 5)
    out = {}
    for form in ("graph", "dense"):
        affine.is_exact_chain = real if form == "graph" else (lambda *a: True)
        t = time.process_time()
        verdicts = [certprune.verify(m, p, timeout=min(float(timeout), 20.0)).verdict.name for p in props]
        dt = time.process_time() - t
        tot[form] += dt
        out[form] = (dt, ",".join(verdicts))
    affine.is_exact_chain = real
    name = f"{Path(onnx).stem.replace('ACASXU_run2a_', '').replace('_batch_2000', '')} {Path(vnn).stem}"
    print(f"| {name} | {out['graph'][0]:.2f} | {out['dense'][0]:.2f} | {out['graph'][1]} / {out['dense'][1]} |", flush=True)
print(f"| **total** | **{tot['graph']:.1f}** | **{tot['dense']:.1f}** | ratio graph/dense {tot['graph'] / tot['dense']:.2f} |")
