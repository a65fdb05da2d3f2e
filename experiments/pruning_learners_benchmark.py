"""Benchmark of the mask learners (certprune.pruning.learners) against magnitude, random and
stability pruning on the networks of experiments/pruning_benchmark.py: the MNIST MLP
(784-128-128-10), the convnet (Conv 8x4x4/2, Conv 16x4x4/2, Linear 64, Linear 10) and the same
convnet with BatchNorm (``conv-bn``), ``--nets``. Data: the 10,000-image MNIST test split; the
dense net and every method train on its first ``--train-images`` (6,400) images; methods that
stop or choose on a validation set (brain, agn) also get the next ``--val-images`` (1,600) as that
set (never trained on); everything is evaluated on the ``--eval-images`` (2,000) after those.

Rows per net, method and seed: params, nonzeros, compression and theoretical speed-up (one
function for every row, :func:`certprune.pruning.metrics.pruning_metrics` with the dense net as
reference: dense params / non-zeros, dense MACs / non-zero MACs), clean accuracy and its drop from
the dense net of the same seed (``acc_drop``, in accuracy points), unstable ReLUs per input at
``--eps`` (CROWN), CROWN certified accuracy on the first ``--verify-samples`` held-out images
(``--verify-samples-conv`` on the convnets) and, for the first seed of ``--seeds`` and ``--bab-methods``
(``all``: every row but gating), branch-and-bound certified accuracy on the first
``--bab-samples`` images (``--bab-samples-conv`` on the convnets; 0: none): an image the CROWN
pass certifies counts as certified, every other one goes to ``certprune.verify`` with
``--bab-timeout`` s (``--bab-timeout-conv``); a timed-out image (``bab_timeouts``) counts as not
certified, ``bab_falsified`` counts validated counterexamples (BaB on another seed: a run with
``--seeds S``; the tables give its mean +- std over the seeds that have it and the timeouts summed);
and the time the method took. Training budget: the learners train
``LEARN`` epochs while pruning and then fine-tune ``FT`` epochs; the one-shot baselines fine-tune
``FT + LEARN`` epochs (two-step unit pruning: half of that per step), so every row gets the same
epochs after the dense training (brain: one epoch per round, as many rounds as its 1-point
validation tolerance allows). Baselines: global (``magnitude@0.8``) and layer-wise
(``magnitude-local@0.8``) magnitude masks, random masks, magnitude and stability unit pruning.
``-neuron`` rows remove hidden Linear neurons (on the convnets only the Linear 64 layer),
``-structured`` rows channels and neurons (at least 10% of every layer kept). Extra columns:
``dnr`` (dynamic dead-neuron rate on the evaluation images; AP rows wrap the same base with
``activate_while_pruning``); gating (MLP only): ``runtime_macs`` per input and no certification
(refused: the gate is not a ReLU graph); agn (MLP only): ``energy_saving``, the simulated
approximate network's accuracy ``approx_acc`` and ``approx_cert_acc`` (CROWN with each layer's
worst-case multiplier error as a bounded perturbation), and the same two figures for the plan
with every layer's truncation capped at 4 columns (``_t4``).

Resumable: every (method, seed) row is appended to experiments/results/pruning_learners<_net>.csv
(``pruning_learners.csv`` for the MLP) as soon as it is done and skipped when the script is run
again (a row that lacks the BaB column this run asks for, or has BaB of other settings, is run
again and replaced in place; when the method run again gives the very same network, same clean
accuracy and non-zeros, only the BaB columns are computed and the stored figures kept,
``bab_added``), so a Ctrl-C'd run continues with the first missing row (the dense nets are retrained from
their seeds, deterministically; ``--cache DIR`` keeps them). A tqdm bar shows the rows and, inside
a row, the training epochs. Seeds are the outer loop (seed 0 on every net, then seed 1, ...), so a
run stopped early has the same seeds on every method. pruning_learners.md is the mean +- std over
the seeds present, one table per net; pruning_learners.png plots clean and certified accuracy
against compression, one row of panels per net. Single-threaded (``torch.set_num_threads(1)``).

Usage: python experiments/pruning_learners_benchmark.py [--nets mlp,conv,conv-bn] [--seeds 0,1,2]
       [--methods ...] [--bab-samples 20 --bab-timeout 1] [--bab-samples-conv 10 --bab-timeout-conv 5]
       [--bab-methods all] [--quick]
(``--nets ""`` only rewrites the .md and .png from the CSVs; ``--merge DIR`` first appends the
rows of a parallel run's ``--out DIR`` that the CSVs lack, and replaces a row by the incoming one
when only the incoming one has BaB.)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pruning_benchmark import build, train  # noqa: E402  (the same nets and training)

from certprune.pruning.metrics import BAB_MODE  # noqa: E402  (bab_columns' procedure; rows of another mode are run again)

RESULTS = Path(__file__).resolve().parent / "results"
NETS = ("mlp", "conv", "conv-bn")
FT = 2  # fine-tuning epochs after every method that masks (the same for all)
LEARN = 4  # epochs the learners train while pruning; one-shot baselines fine-tune FT + LEARN epochs
UNITS = dict(amount=0.5, steps=2, finetune_epochs=(FT + LEARN) // 2)  # two-step unit pruning
METHODS = {
    "magnitude@0.8": dict(method="magnitude", amount=0.8, finetune_epochs=FT + LEARN),
    "magnitude-local@0.8": dict(method="magnitude", amount=0.8, scope="local", finetune_epochs=FT + LEARN),
    "random@0.8": dict(method="random", amount=0.8, finetune_epochs=FT + LEARN),
    "scl": dict(method="scl", scl_weight=0.5, scl_epochs=4, scl_mask_lr=2e-3, finetune_epochs=FT),
    "scl-neuron": dict(method="scl", granularity="neuron", scl_weight=0.5, scl_epochs=4, scl_mask_lr=2e-3,
                       finetune_epochs=FT),
    "dynamic-surgery@0.8": dict(method="dynamic-surgery", amount=0.8, surgery_epochs=4, finetune_epochs=FT),
    "gibbs@0.8": dict(method="gibbs", amount=0.8, gibbs_epochs=4, finetune_epochs=FT),
    "gibbs-neuron@0.5": dict(method="gibbs", granularity="neuron", amount=0.5, gibbs_epochs=4, finetune_epochs=FT),
    "brain": dict(method="brain", brain_rate=0.2, brain_epochs=1, lr=3e-4),
    "magnitude-neuron@0.5": dict(method="magnitude", granularity="neuron", **UNITS),
    "magnitude-neuron@0.5+AP": dict(method="magnitude", granularity="neuron", activate_while_pruning=True, **UNITS),
    "magnitude-structured@0.5": dict(method="magnitude", granularity="structured", min_keep=0.1, **UNITS),
    "stability-neuron@0.5": dict(method="stability", granularity="neuron", **UNITS),
    "stability-structured@0.5": dict(method="stability", granularity="structured", min_keep=0.1, **UNITS),
    "magnitude@0.8+AP": dict(method="magnitude", amount=0.8, finetune_epochs=FT + LEARN, activate_while_pruning=True),
    "gating@0.5": dict(method="gating", granularity="neuron", amount=0.5, gating_epochs=LEARN, finetune_epochs=FT),
    "agn": dict(method="agn", agn_epochs=LEARN, finetune_epochs=0),
}
WITH_VALIDATION = ("brain", "agn")
MLP_ONLY = ("gating@0.5", "agn", "stability-neuron@0.5")  # gating, agn: MLP learners; stability: -structured
CONV_ONLY = ("magnitude-structured@0.5", "stability-structured@0.5")  # on the MLP: the -neuron rows
BAB_DEFAULT = ("dense,magnitude@0.8,magnitude-local@0.8,scl,dynamic-surgery@0.8,gibbs@0.8,brain,"
               "stability-neuron@0.5,stability-structured@0.5,agn")


def applies(name: str, net: str) -> bool:
    """Whether method row ``name`` is run on ``net`` (MLP-only learners, convnet-only rows)."""
    return not ((net != "mlp" and name in MLP_ONLY) or (net == "mlp" and name in CONV_ONLY))


def spec_for(name: str, net: str, args) -> dict:
    """The certprune.prune arguments of row ``name`` (stability rows get eps and score samples;
    validation learners the validation share of their data)."""
    spec = dict(METHODS.get(name, {}))
    if spec.get("method") == "stability":
        spec.update(epsilon=args.eps, score_samples=args.score_samples if net == "mlp" else args.score_samples_conv)
    share = args.val_images / (args.train_images + args.val_images)
    if spec.get("method") == "brain":
        spec["brain_val"] = share
    if spec.get("method") == "agn":
        spec["agn_val"] = share
    return spec


def run_one(name: str, spec: dict, dense, data, eval_data, args, seed: int, n_verify: int, bab,
            old: dict | None = None) -> dict:
    """Prune ``dense`` with one method and measure it (one table row; ``bab``: see :func:`bab_plan`).
    ``old``: this row as stored without the BaB columns asked for; when the method, run again,
    gives the very same network (same clean accuracy and non-zeros: the runs are deterministic),
    the stored figures are kept and only the BaB columns are computed (``bab_added``)."""
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
    if bab and old is not None and same_network(model, old, eval_data):
        return {**{k: v for k, v in old.items() if not str(k).startswith("bab_")},
                **bab_columns(model, eval_data, args.eps, *bab), "bab_added": True}
    if spec.get("method") == "gating":
        row = gating_row(model, learned, eval_data)
    else:
        row = pruning_metrics({name: model}, eval_data, args.eps, reference=dense,
                              verify_samples=n_verify).iloc[0].to_dict()
        row["dnr"] = dynamic_dnr(model, eval_data[0])
        if bab:
            row.update(bab_columns(model, eval_data, args.eps, *bab))
    if spec.get("method") == "agn":
        row.update(agn_columns(model, learned, eval_data, args, n_verify))
    row.update(method=name, seed=seed, prune_s=seconds, learned_amount=learned.get("amount"))
    return row


def same_network(model, old: dict, eval_data) -> bool:
    """Whether ``model`` has the stored row's clean accuracy (exactly) and number of non-zeros."""
    from certprune.pruning.layers import base_module

    module = base_module(model).eval()
    X, y = eval_data
    with torch.no_grad():
        acc = float((module(X).argmax(1) == y).float().mean())
    nonzeros = sum(int(torch.count_nonzero(p)) for p in module.parameters())
    return pd.notna(old.get("clean_acc")) and acc == float(old["clean_acc"]) and nonzeros == int(old["nonzeros"])


def bab_columns(model, eval_data, eps: float, n: int, timeout: float) -> dict:
    """Branch-and-bound columns on the first ``n`` images: the one procedure,
    :func:`certprune.pruning.metrics.bab_counts` (CROWN first, then certprune.verify with
    ``timeout`` s on the images it leaves open; a timed-out image counts as not certified)."""
    from certprune.pruning.metrics import bab_counts

    return bab_counts(model, eval_data[0][:n], eval_data[1][:n], eps, timeout)


def gating_row(model, learned: dict, eval_data) -> dict:
    """Accuracy and run-time MACs of a gated model; it is not certified (refused by design)."""
    X, y = eval_data
    with torch.no_grad():
        acc = float((model(X).argmax(1) == y).float().mean())
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "nonzeros": params, "compression": float("nan"), "clean_acc": acc,
            "unstable_per_input": float("nan"), "crown_cert_acc": float("nan"),
            "runtime_macs": learned["runtime_macs"]}


def agn_columns(model, learned: dict, eval_data, args, n: int) -> dict:
    """Energy saving, simulated approximate accuracy, certified accuracy under multiplier error."""
    from certprune.pruning.learners import agn

    X, y = eval_data
    plans = agn.plans_from_stats(learned)
    approx = float((agn.simulate(model, X, plans, learned["bits"]).argmax(1) == y).double().mean())
    cert = agn.certified_with_multiplier_error(model, X[:n], y[:n], args.eps, plans)
    capped = [agn.LayerPlan(min(p.t, 4), p.dw, p.dx) for p in plans]  # a verification-friendly plan
    cert4 = agn.certified_with_multiplier_error(model, X[:n], y[:n], args.eps, capped)
    return {"energy_saving": learned["energy_saving"], "approx_acc": approx,
            "approx_cert_acc": float(cert.double().mean()), "truncation": str(learned["truncation"]),
            "energy_saving_t4": agn.energy_saving(model, capped, learned["bits"]),
            "approx_cert_acc_t4": float(cert4.double().mean())}


def csv_path(out: Path, net: str, quick: bool = False) -> Path:
    """pruning_learners.csv (MLP, the first table's name) or pruning_learners_<net>.csv."""
    return out / (f"pruning_learners{'' if net == 'mlp' else '_' + net}{'_quick' if quick else ''}.csv")


def dense_model(net: str, seed: int, Xtr, ytr, args):
    """The dense net of ``seed`` (pruning_benchmark's training; cached in ``--cache`` if given)."""
    path = args.cache / f"learners_{net}_s{seed}_e{args.train_epochs}_n{args.train_images}.pt" if args.cache else None
    torch.manual_seed(seed)
    model = build(net)[1:] if net == "mlp" else build(net)  # the MLP without Flatten: flat inputs
    if path is not None and path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = train(model, Xtr, ytr, args.train_epochs, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    return model




def bab_plan(name: str, net: str, seed: int, args) -> tuple[int, float] | None:
    """(images, seconds per image) of row ``name``'s branch-and-bound column, or None: first seed,
    ``--bab-methods`` only (gating is refused by the verifier); convnets: ``--bab-*-conv``."""
    n = args.bab_samples if net == "mlp" else args.bab_samples_conv
    methods = set(args.bab_methods.split(",")) if args.bab_methods != "all" else {"dense", *METHODS} - {"gating@0.5"}
    if not n or seed != args.seed_list[0] or name not in methods:
        return None
    return n, args.bab_timeout if net == "mlp" else args.bab_timeout_conv


def is_done(done: pd.DataFrame, name: str, seed: int, bab) -> bool:
    """Whether the CSV has row (name, seed) with every column this run asks for (a row without
    the requested BaB column, or with BaB of other settings, is run again and replaced)."""
    hit = done[(done.method == name) & (done.seed == seed)]
    if not len(hit):
        return False
    if bab is None:
        return True
    row = hit.iloc[-1]
    return all(c in done for c in ("bab_cert_acc", "bab_samples", "bab_timeout_s", "bab_mode")) and \
        pd.notna(row.bab_cert_acc) and row.bab_mode == BAB_MODE and \
        (int(row.bab_samples), float(row.bab_timeout_s)) == (bab[0], float(bab[1]))


def replace_row(done: pd.DataFrame, row: dict, name: str, seed: int) -> pd.DataFrame:
    """``done`` with ``row`` in place of its old (name, seed) row, or appended (the order of rows,
    hence of the tables, stays the order they were first run in)."""
    old = ((done.method == name) & (done.seed == seed)).to_numpy()
    if not old.any():
        return pd.concat([done, pd.DataFrame([row])], ignore_index=True)
    at = int(old.argmax())
    keep = done[~old]
    return pd.concat([keep.iloc[:at], pd.DataFrame([row]), keep.iloc[at:]], ignore_index=True)


def run_net_seed(net: str, seed: int, args, splits, bar) -> None:
    """Every missing row of (net, seed), appended to the net's CSV as it finishes (a row run
    again replaces the old one)."""
    csv = csv_path(args.out, net, args.quick)
    done = pd.read_csv(csv) if csv.is_file() else pd.DataFrame(columns=["method", "seed"])
    rows = [n for n in args.methods.split(",") if applies(n, net)]
    todo = [n for n in rows if not is_done(done, n, seed, bab_plan(n, net, seed, args))]
    bar.update(len(rows) - len(todo))
    if not todo:
        return
    (Xtr, ytr), (Xval, yval), (Xte, yte) = splits[net]
    dense = dense_model(net, seed, Xtr, ytr, args)
    n_verify = args.verify_samples if net == "mlp" else args.verify_samples_conv
    with torch.no_grad():
        dense_acc = float((dense(Xte).argmax(1) == yte).float().mean())
    for name in todo:
        bar.set_description(f"{net} s{seed} {name}")
        data = (Xval, yval) if name in WITH_VALIDATION else (Xtr, ytr)
        bab = bab_plan(name, net, seed, args)
        hit = done[(done.method == name) & (done.seed == seed)]
        old = hit.iloc[-1].to_dict() if len(hit) else None
        old = old if old is not None and pd.notna(old.get("verify_samples")) and int(old["verify_samples"]) == n_verify \
            else None
        row = run_one(name, spec_for(name, net, args), dense, data, (Xte, yte), args, seed, n_verify, bab, old)
        row.update(net=net, acc_drop=100.0 * (dense_acc - row["clean_acc"]), verify_samples=n_verify)
        done = replace_row(done, row, name, seed)
        done.to_csv(csv, index=False)
        bar.update()
        tqdm.write(f"{net} seed {seed} {name}: acc {row['clean_acc']:.3f} cert {row['crown_cert_acc']:.3f} "
                   f"nonzeros {row['nonzeros']} ({row['prune_s']:.0f}s)")
        sys.stdout.flush()


SUMMARY = ["params", "nonzeros", "compression", "speedup", "clean_acc", "acc_drop", "unstable_per_input",
           "crown_cert_acc", "bab_cert_acc", "bab_timeouts", "dnr", "prune_s"]
EXTRA = ["runtime_macs", "energy_saving", "approx_acc", "approx_acc_drop", "approx_cert_acc", "energy_saving_t4", "approx_cert_acc_t4"]


def summary(table: pd.DataFrame) -> str:
    """Markdown: mean +- std over seeds per method (BaB: over the seeds that have it, their number
    in brackets when fewer than the row's; timeouts: summed, out of the images tried)."""
    cols = [c for c in SUMMARY if c in table] + [c for c in EXTRA if c in table and table[c].notna().any()]
    g = table.groupby("method", sort=False)
    lines = ["| method | seeds | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for method, sub in g:
        cells = []
        for c in cols:
            vals = pd.to_numeric(sub[c], errors="coerce")
            m, sd = vals.mean(), vals.std(ddof=0)
            if pd.isna(m):
                cells.append("—")
            elif c in ("params", "nonzeros", "runtime_macs"):
                cells.append(f"{m:.0f}")
            elif c == "bab_cert_acc":
                k = int(vals.notna().sum())
                cells.append(f"{m:.3f} ± {sd:.3f}" + (f" ({k})" if k < len(sub) else ""))
            elif c == "bab_timeouts":
                tried = pd.to_numeric(sub.bab_samples, errors="coerce")[vals.notna()].sum()
                cells.append(f"{vals.sum():.0f}/{tried:.0f}")
            elif c == "acc_drop":
                cells.append(f"{m:.2f} ± {sd:.2f}")
            else:
                cells.append(f"{m:.3f} ± {sd:.3f}")
        lines.append(f"| {method} | {len(sub)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TITLES = {"mlp": "MNIST MLP 784-128-128-10", "conv": "MNIST convnet", "conv-bn": "MNIST convnet + BatchNorm"}


def header(net: str, table: pd.DataFrame, args) -> str:
    """The sample sizes and settings of one net's table."""
    n_verify = int(table.verify_samples.dropna().iloc[0]) if "verify_samples" in table and table.verify_samples.notna().any() \
        else (args.verify_samples if net == "mlp" else args.verify_samples_conv)
    bab = ""
    if "bab_cert_acc" in table and table.bab_cert_acc.notna().any():
        first = table[table.bab_cert_acc.notna()].iloc[0]
        bab = (f"; BaB (CROWN, then certprune.verify with {first.bab_timeout_s:g} s on each image CROWN leaves open; "
               f"a timeout counts as not certified, bab_timeouts) on the first {int(first.bab_samples)} "
               f"images (seeds {', '.join(str(int(x)) for x in sorted(table[table.bab_cert_acc.notna()].seed.unique()))})")
    return (f"### {TITLES.get(net, net)}\n\neps={args.eps}, train {args.train_images} / validation "
            f"{args.val_images} / evaluation {args.eval_images} images, CROWN on the first {n_verify} evaluation "
            f"images{bab}; seeds {', '.join(str(s) for s in sorted(table.seed.unique()))}; mean ± std over seeds; "
            f"acc_drop in accuracy points vs the dense net of the same seed.")


def derived(table: pd.DataFrame) -> pd.DataFrame:
    """Adds ``approx_acc_drop`` (agn: accuracy points of the simulated approximate net below the
    dense net of the same seed)."""
    if "approx_acc" not in table:
        return table
    dense = table[table.method == "dense"].set_index("seed").clean_acc
    table = table.copy()
    table["approx_acc_drop"] = 100.0 * (table.seed.map(dense) - pd.to_numeric(table.approx_acc, errors="coerce"))
    return table


def closing(table: pd.DataFrame, net: str) -> str:
    """Per method, compression and the differences (accuracy points) of clean and CROWN-certified
    accuracy to global magnitude pruning at 80% and to stability unit pruning at 50% on the same
    net, averaged over the seeds both rows have (their number in brackets); BaB: mean over its seeds."""
    stab = "stability-neuron@0.5" if net == "mlp" else "stability-structured@0.5"
    by = table.set_index(["method", "seed"])[["compression", "speedup", "clean_acc", "crown_cert_acc"]]
    by = by.apply(pd.to_numeric, errors="coerce")
    refs = [r for r in ("magnitude@0.8", stab) if r in by.index.get_level_values(0)]
    if not refs:
        return ""

    def diff(method: str, ref: str) -> list[str]:
        a, b = by.loc[method], by.loc[ref]
        seeds = a.index.intersection(b.index)
        if not len(seeds):
            return ["–", "–"]
        d = 100 * (a.loc[seeds] - b.loc[seeds]).mean()
        return [f"{d.clean_acc:+.1f} ({len(seeds)})", f"{d.crown_cert_acc:+.1f} ({len(seeds)})"]

    head = " | ".join(f"Δacc vs {r} | Δcert vs {r}" for r in refs)
    bab = table.dropna(subset=["bab_cert_acc"]).groupby("method").bab_cert_acc.agg(["mean", "count"]) \
        if "bab_cert_acc" in table else pd.DataFrame(columns=["mean", "count"])
    lines = [f"| method | compression | speed-up | clean acc | CROWN cert. | BaB cert. (seeds) | {head} |",
             "|" + "---|" * (6 + 2 * len(refs))]
    for method in dict.fromkeys(table.method):
        row = by.loc[method].mean()
        if pd.isna(row.crown_cert_acc):
            continue
        cells = [c for r in refs for c in diff(method, r)]
        b = f"{bab.loc[method, 'mean']:.2f} ({int(bab.loc[method, 'count'])})" if method in bab.index else "–"
        lines.append(f"| {method} | {row.compression:.2f} | {row.speedup:.2f} | {row.clean_acc:.3f} | "
                     f"{row.crown_cert_acc:.3f} | {b} | " + " | ".join(cells) + " |")
    return ("Closing comparison (accuracy points, mean over the seeds both rows have):\n\n" + "\n".join(lines))


def plot(tables: dict[str, pd.DataFrame], path: Path) -> None:
    """Clean and CROWN-certified accuracy against compression, one row of panels per net."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tables), 2, figsize=(13, 4.3 * len(tables)), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    order = list(dict.fromkeys(["dense", *METHODS]))
    for r, (net, table) in enumerate(tables.items()):
        g = table[table.compression.notna()].groupby("method", sort=False)
        stats = g[["compression", "clean_acc", "crown_cert_acc"]].agg(["mean", "std"])
        for ax, col, title in zip(axes[r], ("clean_acc", "crown_cert_acc"), ("clean accuracy", "CROWN certified accuracy")):
            for method, row in stats.iterrows():
                i = order.index(method) if method in order else len(order)
                ax.errorbar(row[("compression", "mean")], row[(col, "mean")], xerr=row[("compression", "std")],
                            yerr=row[(col, "std")], fmt="osD^v<>"[i % 7], color=colours[i % 20], capsize=3, label=method)
            ax.set(xscale="log", xlabel="compression (dense params / non-zeros)", ylabel=title,
                   title=f"{TITLES.get(net, net)}: {title}")
        axes[r][1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(args) -> str:
    """pruning_learners.md and .png from every net's CSV present."""
    tables = {net: derived(pd.read_csv(csv_path(args.out, net, args.quick))) for net in NETS
              if csv_path(args.out, net, args.quick).is_file()}
    if not tables:
        return ""
    text = ("Mask learners vs magnitude, random and stability pruning. Written by "
            "experiments/pruning_learners_benchmark.py (see its docstring); machine shared and loaded "
            "(timings indicative).\n\n" + "\n\n".join(header(n, t, args) + "\n\n" + summary(t) + "\n\n" + closing(t, n)
                                                for n, t in tables.items()) + "\n")
    stem = "pruning_learners_quick" if args.quick else "pruning_learners"
    (args.out / f"{stem}.md").write_text(text)
    plot(tables, args.out / f"{stem}.png")
    return text


def merge_rows(out: Path, other: Path, quick: bool = False) -> dict[str, int]:
    """Merge into every net's CSV in ``out`` the (method, seed) rows of ``other``'s CSV (a run of
    other seeds in parallel, ``--out other``): a row it lacks is appended; a row it has is replaced
    (in place, :func:`replace_row`) when the incoming one carries BaB of this script's mode that
    the stored one lacks (:func:`is_done`); returns rows added or replaced per net."""
    added = {}
    for net in NETS:
        src, dst = csv_path(other, net, quick), csv_path(out, net, quick)
        if not src.is_file():
            continue
        new = pd.read_csv(src)
        table = pd.read_csv(dst) if dst.is_file() else new.iloc[:0]
        n = 0
        for row in new.to_dict("records"):
            name, seed = row["method"], row["seed"]
            has = bool(((table.method == name) & (table.seed == seed)).any())
            bab = None
            if pd.notna(row.get("bab_cert_acc")) and row.get("bab_mode") == BAB_MODE:
                bab = (int(row["bab_samples"]), float(row["bab_timeout_s"]))
            if not has or (bab is not None and not is_done(table, name, seed, bab)):
                table, n = replace_row(table, row, name, seed), n + 1
        table.to_csv(dst, index=False)
        added[net] = n
    return added


def data_splits(args) -> dict:
    """Per net, (train, train + validation, evaluation) tensors, flat for the MLP."""
    from certprune.datasets import load_mnist

    X, y = (torch.from_numpy(a) for a in load_mnist())
    a, b = args.train_images, args.train_images + args.val_images
    c = b + args.eval_images
    if c > len(X):
        raise SystemExit(f"error: {c} images requested, the MNIST split has {len(X)}")
    out = {}
    for net in NETS:
        Z = X.reshape(len(X), -1) if net == "mlp" else X.reshape(len(X), 1, 28, 28)
        out[net] = ((Z[:a], y[:a]), (Z[:b], y[:b]), (Z[b:c], y[b:c]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(["dense", *METHODS]))
    p.add_argument("--eps", type=float, default=0.02)
    p.add_argument("--train-epochs", type=int, default=8)
    p.add_argument("--train-images", type=int, default=6400)
    p.add_argument("--val-images", type=int, default=1600)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--verify-samples", type=int, default=200)
    p.add_argument("--verify-samples-conv", type=int, default=100)
    p.add_argument("--score-samples", type=int, default=512, help="inputs the stability criterion scores (MLP)")
    p.add_argument("--score-samples-conv", type=int, default=64, help="... on the convnets")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=None, help="folder to keep the trained dense nets in")
    p.add_argument("--bab-samples", type=int, default=0, help="branch and bound on this many images (first seed)")
    p.add_argument("--bab-timeout", type=float, default=1.0)
    p.add_argument("--bab-samples-conv", type=int, default=0, help="... on the convnets")
    p.add_argument("--bab-timeout-conv", type=float, default=5.0)
    p.add_argument("--bab-methods", default=BAB_DEFAULT, help="rows with BaB (comma list, or 'all')")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 1 epoch, 20 verified inputs")
    p.add_argument("--merge", type=Path, action="append", default=[],
                   help="folder of a parallel run (--out) whose rows the CSVs lack: appended before the report")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    nets = [n for n in args.nets.split(",") if n]
    bad = [n for n in nets if n not in NETS] + [m for m in args.methods.split(",") if m != "dense" and m not in METHODS]
    if bad:
        raise SystemExit(f"error: unknown net or method {', '.join(bad)}")
    if args.quick:
        args.seed_list, args.train_epochs = args.seed_list[:1], 1
        args.verify_samples = args.verify_samples_conv = 20
    args.out.mkdir(parents=True, exist_ok=True)
    splits = data_splits(args) if nets else {}
    total = sum(applies(m, n) for n in nets for m in args.methods.split(",")) * len(args.seed_list)
    with tqdm(total=total, desc="rows", unit="row", disable=None) as bar:
        for seed in args.seed_list:
            for net in nets:
                run_net_seed(net, seed, args, splits, bar)
    for folder in args.merge:
        print(f"merged from {folder}: {merge_rows(args.out, folder, args.quick)}")
    print(write_report(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
