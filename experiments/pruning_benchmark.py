"""Pruning benchmark: does pruning (by which criterion) make MNIST networks easier to certify?

Data: the 10,000-image MNIST *test* split in $CERTPRUNE_DATA; we train on its first 8,000
images and evaluate on the other 2,000 (the held-out images are never used for training,
scoring or fine-tuning). Networks: an MLP 784-128-128-10 and a small convnet
(Conv 8x4x4/2, Conv 16x4x4/2, Linear 64, Linear 10), trained with fixed seeds.

For each criterion and each amount (fraction of hidden neurons/channels removed physically,
one-shot, then ``--finetune-epochs`` epochs of plain cross-entropy fine-tuning, the same for every
criterion) we report, on the first ``--verify-samples`` held-out images: clean accuracy (all
2,000), unstable ReLUs per input at ``--eps`` (CROWN bounds), CROWN certified accuracy and CROWN
time per input; optionally branch-and-bound certified accuracy (certprune.verify, per-input
timeout) for the dense and stability models. ``stability+loss`` is stability pruning followed by
fine-tuning with the stability loss; ``dense+loss`` applies the same fine-tuning without pruning
(ablation: how much comes from pruning itself).

Usage: python experiments/pruning_benchmark.py [--nets mlp,conv] [--quick]
Writes experiments/results/pruning_benchmark_<net>.csv, pruning_benchmark.md and
pruning_certified_vs_sparsity.png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ["random", "magnitude", "taylor", "obd", "snip", "stability"]


def build(net: str) -> nn.Sequential:
    """The two benchmark architectures."""
    if net == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 8, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 4, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


def train(model: nn.Module, X, y, epochs: int, seed: int) -> nn.Module:
    """Adam 1e-3, batch 128, cosine LR, fixed seed."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(128):
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


def run_net(net: str, args, Xtr, ytr, Xte, yte) -> pd.DataFrame:
    """Train, prune with every criterion at every amount, measure; one row per model."""
    import certprune
    from certprune.pruning.metrics import pruning_metrics

    t0 = time.time()
    cache = args.cache / f"certprune_bench_{net}_s{args.seed}_e{args.train_epochs}.pt" if args.cache else None
    dense = build(net)
    if cache is not None and cache.is_file():
        dense.load_state_dict(torch.load(cache, weights_only=True))
        dense.eval()
    else:
        dense = train(dense, Xtr, ytr, args.train_epochs, args.seed)
        if cache is not None:
            torch.save(dense.state_dict(), cache)
    print(f"[{net}] trained in {time.time() - t0:.0f}s", flush=True)
    common = dict(granularity="structured", data=(Xtr, ytr), epsilon=args.eps, seed=args.seed,
                  score_samples=args.score_samples, hvp_samples=8, min_keep=args.min_keep,
                  stability_reduce=args.stability_reduce)
    models, meta, timing = {"dense": dense}, {"dense": ("dense", 0.0)}, {"dense": 0.0}
    loss_opts = dict(stability_weight=args.stability_weight, train_epsilon=args.train_eps)
    t = time.time()
    models["dense+loss"], _ = certprune.prune(dense, method="random", amount=0.0, finetune_epochs=args.loss_epochs,
                                              **common, **loss_opts)
    meta["dense+loss"], timing["dense+loss"] = ("dense+loss", 0.0), time.time() - t
    for amount in args.amounts:
        for method in args.methods + ["stability+loss"]:
            name = f"{method}@{amount:g}"
            t = time.time()
            if method == "stability+loss":
                pruned, _ = certprune.prune(dense, method="stability", amount=amount, scope=args.stability_scope,
                                            finetune_epochs=args.loss_epochs, **common, **loss_opts)
            elif method == "stability":
                pruned, _ = certprune.prune(dense, method=method, amount=amount, scope=args.stability_scope,
                                            finetune_epochs=args.finetune_epochs, **common)
            else:
                pruned, _ = certprune.prune(dense, method=method, amount=amount,
                                            finetune_epochs=args.finetune_epochs, **common)
            models[name], meta[name], timing[name] = pruned, (method, amount), time.time() - t
            print(f"[{net}] {name}: pruned+fine-tuned in {timing[name]:.1f}s", flush=True)
    eval_X = Xte.reshape(len(Xte), 1, 28, 28)
    table = pruning_metrics(models, (eval_X, yte), args.eps, reference="dense", verify_samples=args.verify_samples)
    table.insert(1, "criterion", [meta[m][0] for m in table.model])
    table.insert(2, "amount", [meta[m][1] for m in table.model])
    table["prune_s"] = [timing[m] for m in table.model]
    if args.bab_samples:
        table = add_bab(table, models, eval_X, yte, args)
    table.insert(0, "net", net)
    return table


def add_bab(table, models, X, y, args) -> pd.DataFrame:
    """Branch-and-bound certified accuracy for dense and stability models on a small subset."""
    from certprune.pruning.metrics import bab_certified

    cols = {"bab_cert_acc": [], "bab_s_per_input": []}
    for name in table.model:
        if name.startswith(("dense", "stability")):
            t = time.time()
            cert = bab_certified(models[name], X[:args.bab_samples], y[:args.bab_samples], args.eps, args.bab_timeout)
            cols["bab_cert_acc"].append(float(cert.mean()))
            cols["bab_s_per_input"].append((time.time() - t) / args.bab_samples)
        else:
            cols["bab_cert_acc"].append(np.nan)
            cols["bab_s_per_input"].append(np.nan)
    return table.assign(**cols)


def plot(tables: list[pd.DataFrame], path: Path) -> None:
    """Certified accuracy (CROWN) vs fraction of neurons removed, one line per criterion."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 4), squeeze=False)
    for ax, t in zip(axes[0], tables):
        dense = t[t.model == "dense"].crown_cert_acc.item()
        for crit in [c for c in t.criterion.unique() if c not in ("dense", "dense+loss")]:
            sub = t[t.criterion == crit].sort_values("amount")
            ax.plot([0.0] + list(sub.amount), [dense] + list(sub.crown_cert_acc), marker="o", label=crit)
        ax.axhline(t[t.model == "dense+loss"].crown_cert_acc.item(), ls=":", c="gray", label="dense+loss (no pruning)")
        ax.set(title=f"MNIST {t.net.iloc[0]}", xlabel="fraction of hidden neurons removed",
               ylabel="CROWN certified accuracy", ylim=(0, 1))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(t: pd.DataFrame) -> str:
    cols = ["net", "model", "params", "clean_acc", "unstable_per_input", "crown_cert_acc", "crown_s_per_input"]
    cols += [c for c in ("bab_cert_acc", "bab_s_per_input") if c in t]
    # hand-written to avoid the optional 'tabulate' dependency of DataFrame.to_markdown
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in t[cols].itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default="mlp,conv")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--amounts", default="0.5,0.8")
    p.add_argument("--eps", type=float, default=0.08)
    p.add_argument("--train-eps", type=float, default=None, help="epsilon of the stability loss (default: --eps)")
    p.add_argument("--stability-weight", type=float, default=1.0)
    p.add_argument("--train-epochs", type=int, default=10)
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--loss-epochs", type=int, default=5, help="fine-tuning epochs with the stability loss")
    p.add_argument("--score-samples", type=int, default=512)
    p.add_argument("--verify-samples", type=int, default=300)
    p.add_argument("--bab-samples", type=int, default=0)
    p.add_argument("--bab-timeout", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-keep", type=float, default=0.1, help="fraction of every layer never removed")
    p.add_argument("--quick", action="store_true", help="tiny run for smoke-testing (not for the README)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=None, help="folder to cache the trained dense models in")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stability-reduce", default="mean", choices=("mean", "sum"))
    p.add_argument("--stability-scope", default="global", choices=("global", "local"))
    args = p.parse_args(argv)
    args.methods = args.methods.split(",")
    args.amounts = [float(a) for a in args.amounts.split(",")]
    if args.quick:
        args.train_epochs, args.finetune_epochs, args.loss_epochs = 1, 1, 1
        args.verify_samples, args.score_samples, args.methods = 50, 64, ["magnitude", "stability"]
    torch.set_num_threads(args.threads)
    from certprune.datasets import load_mnist

    X, y = (torch.from_numpy(a) for a in load_mnist())
    Xtr, ytr, Xte, yte = X[:8000], y[:8000], X[8000:], y[8000:]
    args.out.mkdir(parents=True, exist_ok=True)
    for net in args.nets.split(","):
        t = run_net(net, args, Xtr, ytr, Xte, yte)
        t.to_csv(args.out / f"pruning_benchmark_{net}.csv", index=False)
        print(markdown(t), flush=True)
    # the table and plot cover every net measured into this folder (nets may run as separate processes)
    tables = [pd.read_csv(f) for f in sorted(args.out.glob("pruning_benchmark_*.csv"))]
    (args.out / "pruning_benchmark.md").write_text("\n\n".join(markdown(t) for t in tables) + "\n")
    plot(tables, args.out / "pruning_certified_vs_sparsity.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
