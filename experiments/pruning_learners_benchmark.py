"""Benchmark of the mask learners (certprune.pruning.learners) against magnitude pruning on the
MNIST MLP of experiments/pruning_benchmark.py (784-128-128-10). Data: the 10,000-image MNIST test
split; the dense net and every method train on its first 6,400 images; methods that stop or
choose on a validation set (brain, agn) get the next 1,600 as that set (never trained on);
everything is evaluated on the last 2,000.

Rows per method and seed: params, nonzeros, compression, clean accuracy (2,000 held-out images),
unstable ReLUs per input at ``--eps`` (CROWN), CROWN certified accuracy on the first
``--verify-samples`` held-out images, and the time the method took. Training budget: the learners
train ``LEARN`` epochs while pruning and then fine-tune ``FT`` epochs; the one-shot baselines
(global magnitude, random) fine-tune ``FT + LEARN`` epochs, so every row gets the same epochs
after the dense training (brain: one epoch per round, as many rounds as the tolerance allows).
Extra columns: ``dnr`` (dynamic dead-neuron rate on the evaluation images; AP rows wrap the
same base with ``activate_while_pruning``); gating: ``runtime_macs`` per input and no
certification (refused: the gate is not a ReLU graph); agn: ``energy_saving``, the simulated
approximate network's accuracy ``approx_acc`` and ``approx_cert_acc`` (CROWN with each layer's
worst-case multiplier error as a bounded perturbation), and the same two figures for the plan with
every layer's truncation capped at 4 columns (``_t4``). Every (method, seed) row is
appended to experiments/results/pruning_learners.csv as soon as it is done and skipped when the
script is run again (resumable); experiments/results/pruning_learners.md is the mean +- std over
the seeds present, pruning_learners.png plots clean and certified accuracy against compression.
Single-threaded (``torch.set_num_threads(1)``).

With ``--bab-samples N`` the first seed's models of ``--bab-methods`` are also verified by branch
and bound (``certprune.verify``, ``--bab-timeout`` s per input) on the first N evaluation images
(pruning_learners_bab.csv, resumable, and a second table in the .md).

Usage: python experiments/pruning_learners_benchmark.py [--seeds 0,1,2] [--methods ...]
       [--bab-samples 30 --bab-timeout 1] [--quick]
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
    "brain": dict(method="brain", brain_rate=0.2, brain_epochs=1, lr=3e-4),
    "magnitude-neuron@0.5": dict(method="magnitude", granularity="neuron", amount=0.5, steps=2,
                                 finetune_epochs=(FT + LEARN) // 2),
    "magnitude-neuron@0.5+AP": dict(method="magnitude", granularity="neuron", amount=0.5, steps=2,
                                    finetune_epochs=(FT + LEARN) // 2, activate_while_pruning=True),
    "magnitude@0.8+AP": dict(method="magnitude", amount=0.8, finetune_epochs=FT + LEARN, activate_while_pruning=True),
    "gating@0.5": dict(method="gating", granularity="neuron", amount=0.5, gating_epochs=LEARN, finetune_epochs=FT),
    "agn": dict(method="agn", agn_epochs=LEARN, finetune_epochs=0),
}
WITH_VALIDATION = ("brain", "agn")


def run_one(name: str, spec: dict, dense, data, eval_data, args, seed: int) -> dict:
    """Prune ``dense`` with one method and measure it (one table row)."""
    import certprune
    from certprune.pruning.learners.activate import dynamic_dnr
    from certprune.pruning.metrics import pruning_metrics

    t = time.time()
    if name == "dense":
        model, learned = dense, {}
    else:
        model, manifest = certprune.prune(dense, data=data, seed=seed, **spec)
        learned = manifest.config.get("learned", {})
    seconds = time.time() - t
    if spec.get("method") == "gating":
        row = gating_row(model, learned, eval_data)
    else:
        row = pruning_metrics({"dense": dense, name: model}, eval_data, args.eps, reference="dense",
                              verify_samples=args.verify_samples).iloc[-1].to_dict()
        row["dnr"] = dynamic_dnr(model, eval_data[0])
    if spec.get("method") == "agn":
        row.update(agn_columns(model, learned, eval_data, args))
    row.update(method=name, seed=seed, prune_s=seconds, learned_amount=learned.get("amount"))
    return row


def gating_row(model, learned: dict, eval_data) -> dict:
    """Accuracy and run-time MACs of a gated model; it is not certified (refused by design)."""
    X, y = eval_data
    with torch.no_grad():
        acc = float((model(X).argmax(1) == y).float().mean())
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "nonzeros": params, "compression": float("nan"), "clean_acc": acc,
            "unstable_per_input": float("nan"), "crown_cert_acc": float("nan"),
            "runtime_macs": learned["runtime_macs"]}


def agn_columns(model, learned: dict, eval_data, args) -> dict:
    """Energy saving, simulated approximate accuracy, certified accuracy under multiplier error."""
    from certprune.pruning.learners import agn

    X, y = eval_data
    plans = agn.plans_from_stats(learned)
    approx = float((agn.simulate(model, X, plans, learned["bits"]).argmax(1) == y).double().mean())
    n = args.verify_samples
    cert = agn.certified_with_multiplier_error(model, X[:n], y[:n], args.eps, plans)
    capped = [agn.LayerPlan(min(p.t, 4), p.dw, p.dx) for p in plans]  # a verification-friendly plan
    cert4 = agn.certified_with_multiplier_error(model, X[:n], y[:n], args.eps, capped)
    return {"energy_saving": learned["energy_saving"], "approx_acc": approx,
            "approx_cert_acc": float(cert.double().mean()), "truncation": str(learned["truncation"]),
            "energy_saving_t4": agn.energy_saving(model, capped, learned["bits"]),
            "approx_cert_acc_t4": float(cert4.double().mean())}


def bab_rows(args, Xtr, ytr, Xval, yval, Xte, yte) -> pd.DataFrame:
    """Branch-and-bound certified accuracy (certprune.verify, ``--bab-timeout`` s per input) on the
    first ``--bab-samples`` evaluation images, first seed only; resumable per method."""
    import certprune
    from certprune.pruning.metrics import bab_certified

    csv = args.out / "pruning_learners_bab.csv"
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=["method"])
    todo = [m for m in args.bab_methods.split(",") if m not in set(done.method)]
    if not todo:
        return done
    seed = int(args.seeds.split(",")[0])
    torch.manual_seed(seed)
    dense = train(build("mlp")[1:], Xtr, ytr, args.train_epochs, seed)
    n = args.bab_samples
    for name in todo:
        data = (Xval, yval) if name in WITH_VALIDATION else (Xtr, ytr)
        model = dense if name == "dense" else certprune.prune(dense, data=data, seed=seed, **METHODS[name])[0]
        t = time.time()
        cert = bab_certified(model, Xte[:n], yte[:n], args.eps, args.bab_timeout)
        row = {"method": name, "seed": seed, "samples": n, "timeout_s": args.bab_timeout,
               "bab_cert_acc": float(cert.mean()), "bab_s_per_input": (time.time() - t) / n}
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_csv(csv, index=False)
        print(f"bab {name}: {row['bab_cert_acc']:.3f} ({row['bab_s_per_input']:.2f} s/input)", flush=True)
    return done


def summary(table: pd.DataFrame) -> str:
    """Markdown: mean +- std over seeds per method."""
    cols = ["params", "nonzeros", "compression", "clean_acc", "unstable_per_input", "crown_cert_acc", "dnr", "prune_s"]
    cols += [c for c in ("runtime_macs", "energy_saving", "approx_acc", "approx_cert_acc", "energy_saving_t4",
                         "approx_cert_acc_t4") if c in table]
    g = table.groupby("method", sort=False)
    lines = ["| method | seeds | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for method, sub in g:
        cells = []
        for c in cols:
            m, s = sub[c].mean(), sub[c].std(ddof=0)
            if pd.isna(m):
                cells.append("—")
            else:
                cells.append(f"{m:.0f}" if c in ("params", "nonzeros", "runtime_macs") else f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {method} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: pd.DataFrame, path: Path) -> None:
    """Clean and CROWN-certified accuracy against compression (mean and std over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = table[table.compression.notna()].groupby("method", sort=False)
    stats = g[["compression", "clean_acc", "crown_cert_acc"]].agg(["mean", "std"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharex=True)
    colours = plt.get_cmap("tab20").colors
    for ax, col, title in zip(axes, ("clean_acc", "crown_cert_acc"), ("clean accuracy", "CROWN certified accuracy")):
        for i, (method, row) in enumerate(stats.iterrows()):
            ax.errorbar(row[("compression", "mean")], row[(col, "mean")], xerr=row[("compression", "std")],
                        yerr=row[(col, "std")], fmt="osD^v<>"[i % 7], color=colours[i % 20], capsize=3, label=method)
        ax.set(xscale="log", xlabel="compression (dense params / non-zeros)", ylabel=title, title=f"MNIST MLP: {title}")
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(["dense", *METHODS]))
    p.add_argument("--eps", type=float, default=0.02)
    p.add_argument("--train-epochs", type=int, default=8)
    p.add_argument("--verify-samples", type=int, default=200)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--bab-samples", type=int, default=0, help="branch and bound on this many images (first seed)")
    p.add_argument("--bab-timeout", type=float, default=1.0)
    p.add_argument("--bab-methods", default="dense,magnitude@0.8,scl,scl-neuron,dynamic-surgery@0.8,gibbs@0.8,"
                                            "gibbs-neuron@0.5,brain,agn")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 1 epoch, 20 verified inputs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.train_epochs, args.verify_samples = seeds[:1], 1, 20
    from certprune.datasets import load_mnist

    X, y = (torch.from_numpy(a) for a in load_mnist())
    Xtr, ytr = X[:6400].reshape(6400, -1), y[:6400]
    Xval, yval = X[:8000].reshape(8000, -1), y[:8000]  # training images + 1,600 validation images
    Xte, yte = X[8000:].reshape(len(X) - 8000, -1), y[8000:]
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / ("pruning_learners_quick.csv" if args.quick else "pruning_learners.csv")
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=["method", "seed"])
    for seed in seeds:
        todo = [n for n in args.methods.split(",") if not ((done.method == n) & (done.seed == seed)).any()]
        if not todo:
            continue
        torch.manual_seed(seed)
        dense = train(build("mlp")[1:], Xtr, ytr, args.train_epochs, seed)  # without Flatten: flat inputs
        for name in todo:
            data = (Xval, yval) if name in WITH_VALIDATION else (Xtr, ytr)
            row = run_one(name, METHODS.get(name, {}), dense, data, (Xte, yte), args, seed)
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            done.to_csv(csv, index=False)
            print(f"seed {seed} {name}: acc {row['clean_acc']:.3f} cert {row['crown_cert_acc']:.3f} "
                  f"nonzeros {row['nonzeros']} ({row['prune_s']:.0f}s)", flush=True)
    bab = bab_rows(args, Xtr, ytr, Xval, yval, Xte, yte) if args.bab_samples and not args.quick else None
    md = csv.with_suffix(".md")
    bab_md = "" if bab is None else (
        f"\n\nBranch and bound (certprune.verify, {args.bab_timeout:g} s per input, first {args.bab_samples} "
        f"evaluation images, seed {args.seeds.split(',')[0]} only):\n\n| method | bab_cert_acc | s/input |\n|---|---|---|\n"
        + "\n".join(f"| {r.method} | {r.bab_cert_acc:.3f} | {r.bab_s_per_input:.2f} |" for r in bab.itertuples()))
    md.write_text(f"MNIST MLP 784-128-128-10, eps={args.eps}, CROWN on {args.verify_samples} held-out images; "
                  f"mean ± std over seeds; machine shared and loaded (timings indicative). "
                  f"Written by experiments/pruning_learners_benchmark.py (see its docstring).\n\n"
                  + summary(done) + bab_md + "\n")
    plot(done, csv.with_suffix(".png"))
    print(summary(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
