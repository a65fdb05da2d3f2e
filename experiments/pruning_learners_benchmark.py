"""Benchmark of the mask learners (certprune.pruning.learners) against magnitude pruning on the
MNIST MLP of experiments/pruning_benchmark.py (784-128-128-10; train on the first 8,000 test-split
images, evaluate on the other 2,000).

Rows per method and seed: params, nonzeros, compression, clean accuracy (2,000 held-out images),
unstable ReLUs per input at ``--eps`` (CROWN), CROWN certified accuracy on the first
``--verify-samples`` held-out images, and the time the method took. Training budget: the learners
train ``LEARN`` epochs while pruning and then fine-tune ``FT`` epochs; the one-shot baselines
(global magnitude, random) fine-tune ``FT + LEARN`` epochs, so every row gets the same epochs
after the dense training (brain: one epoch per round, as many rounds as the tolerance allows). Every (method, seed) row is
appended to experiments/results/pruning_learners.csv as soon as it is done and skipped when the
script is run again (resumable); experiments/results/pruning_learners.md is the mean +- std over
the seeds present. Single-threaded (``torch.set_num_threads(1)``).

Usage: python experiments/pruning_learners_benchmark.py [--seeds 0,1,2] [--methods ...] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pruning_benchmark import build, train  # noqa: E402  (the same nets and training)

RESULTS = Path(__file__).resolve().parent / "results"
FT = 2  # fine-tuning epochs after every method that masks (the same for all)
LEARN = 4  # epochs the learners train while pruning; one-shot baselines fine-tune FT + LEARN epochs
METHODS = {
    "magnitude@0.8": dict(method="magnitude", amount=0.8, finetune_epochs=FT + LEARN),
    "random@0.8": dict(method="random", amount=0.8, finetune_epochs=FT + LEARN),
    "scl": dict(method="scl", scl_weight=0.5, scl_epochs=4, scl_mask_lr=2e-3, finetune_epochs=FT),
    "scl-neuron": dict(method="scl", granularity="neuron", scl_weight=0.5, scl_epochs=4, scl_mask_lr=2e-3,
                       finetune_epochs=FT),
    "dynamic-surgery@0.8": dict(method="dynamic-surgery", amount=0.8, surgery_epochs=4, finetune_epochs=FT),
    "gibbs@0.8": dict(method="gibbs", amount=0.8, gibbs_epochs=4, finetune_epochs=FT),
    "gibbs-neuron@0.5": dict(method="gibbs", granularity="neuron", amount=0.5, gibbs_epochs=4, finetune_epochs=FT),
    "brain": dict(method="brain", brain_rate=0.3, brain_epochs=1),
}


def run_one(name: str, spec: dict, dense, data, eval_data, args, seed: int) -> dict:
    """Prune ``dense`` with one method and measure it (one table row)."""
    import certprune
    from certprune.pruning.metrics import pruning_metrics

    t = time.time()
    if name == "dense":
        model, learned = dense, {}
    else:
        model, manifest = certprune.prune(dense, data=data, seed=seed, **spec)
        learned = manifest.config.get("learned", {})
    seconds = time.time() - t
    row = pruning_metrics({"dense": dense, name: model}, eval_data, args.eps, reference="dense",
                          verify_samples=args.verify_samples).iloc[-1].to_dict()
    row.update(method=name, seed=seed, prune_s=seconds, learned_amount=learned.get("amount"))
    return row


def summary(table: pd.DataFrame) -> str:
    """Markdown: mean +- std over seeds per method."""
    cols = ["params", "nonzeros", "compression", "clean_acc", "unstable_per_input", "crown_cert_acc", "prune_s"]
    g = table.groupby("method", sort=False)
    lines = ["| method | seeds | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for method, sub in g:
        cells = []
        for c in cols:
            m, s = sub[c].mean(), sub[c].std(ddof=0)
            cells.append(f"{m:.0f}" if c in ("params", "nonzeros") else f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {method} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(["dense", *METHODS]))
    p.add_argument("--eps", type=float, default=0.02)
    p.add_argument("--train-epochs", type=int, default=8)
    p.add_argument("--verify-samples", type=int, default=200)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 1 epoch, 20 verified inputs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.train_epochs, args.verify_samples = seeds[:1], 1, 20
    from certprune.datasets import load_mnist

    X, y = (torch.from_numpy(a) for a in load_mnist())
    Xtr, ytr = X[:8000].reshape(8000, -1), y[:8000]
    Xte, yte = X[8000:].reshape(len(X) - 8000, -1), y[8000:]
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / ("pruning_learners_quick.csv" if args.quick else "pruning_learners.csv")
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=["method", "seed"])
    for seed in seeds:
        torch.manual_seed(seed)
        dense = train(build("mlp")[1:], Xtr, ytr, args.train_epochs, seed)  # without Flatten: flat inputs
        for name in args.methods.split(","):
            if ((done.method == name) & (done.seed == seed)).any():
                continue
            row = run_one(name, METHODS.get(name, {}), dense, (Xtr, ytr), (Xte, yte), args, seed)
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            done.to_csv(csv, index=False)
            print(f"seed {seed} {name}: acc {row['clean_acc']:.3f} cert {row['crown_cert_acc']:.3f} "
                  f"nonzeros {row['nonzeros']} ({row['prune_s']:.0f}s)", flush=True)
    md = csv.with_suffix(".md")
    md.write_text(f"MNIST MLP 784-128-128-10, eps={args.eps}, CROWN on {args.verify_samples} held-out images; "
                  f"mean ± std over seeds; machine shared and loaded (timings indicative).\n\n"
                  + summary(done) + "\n")
    print(summary(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
