"""oval21 conv chains: verify on the graph IR (what model_forms picks: convolutions as
convolutions, every operator with its rounding margin) against the densified chain (forced:
one matrix per affine run, the pre-session-13 form, whose products round outside the margin).
Same process, same instances, one thread, CPU seconds.

    PYTHONPATH=. python experiments/exact_forms/bench_conv_forms.py [TIMEOUT] [csv rows ...] \
        > experiments/results/exact_forms/oval21_forms.md
"""
import csv
import dataclasses
import sys
import time
from pathlib import Path

import torch

import certprune
from certprune.network import load_model
from certprune.verifiers import affine, bounds
from certprune.vnnlib import property_for_model, read_vnnlib

torch.set_num_threads(1)
D = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "vnncomp" / "oval21"
rows = list(csv.reader(open(D / "instances.csv")))
timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
picked = [rows[int(i)] for i in sys.argv[2:]] or rows[:4]
real_net, real_chain = bounds.affine_net, affine.is_exact_chain


def gz(p: Path) -> Path:
    return p if p.exists() else p.with_name(p.name + ".gz")


print(f"| instance | graph IR CPU s | densified CPU s | verdicts (timeout {timeout:g} s) |\n|---|---|---|---|")
tot = {"graph": 0.0, "dense": 0.0}
for onnx, vnn, _ in picked:
    net = load_model(gz(D / onnx))
    p = read_vnnlib(gz(D / vnn), num_outputs=net.info.num_outputs)[0]
    prop = property_for_model(p, net.info.input_shape, net.info.num_outputs)
    out = {}
    for form in ("graph", "dense"):
        if form == "dense":
            bounds.affine_net = lambda *a, **k: dataclasses.replace(real_net(*a, **k), exact=True)
            affine.is_exact_chain = lambda *a: True
        t = time.process_time()
        r = certprune.verify(net, prop, timeout=timeout, config={"threads": 1})
        out[form] = (time.process_time() - t, r.verdict.name)
        tot[form] += out[form][0]
        bounds.affine_net, affine.is_exact_chain = real_net, real_chain
    print(f"| {Path(vnn).stem} | {out['graph'][0]:.1f} | {out['dense'][0]:.1f} | "
          f"{out['graph'][1]} / {out['dense'][1]} |", flush=True)
print(f"| **total** | **{tot['graph']:.1f}** | **{tot['dense']:.1f}** | |")
