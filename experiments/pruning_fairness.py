"""Does pruning the edges/neurons that carry the protected attribute (m-info-flow) reduce group
unfairness, and at what cost in accuracy? Bundled Adult, German and Bank models.

For each data set, criterion (m-info-flow, magnitude, random) and amount (fraction of hidden
neurons removed, no fine-tuning: the bundled models have one logit, fine-tuning in certprune is
cross-entropy over classes), on the test split: accuracy, demographic-parity gap
|P(yhat=1 | g=1) - P(yhat=1 | g=0)| and equalised-odds gap (the larger of the true- and
false-positive-rate gaps). Groups: sex for Adult and German, age for Bank (all three 0/1 columns in
these schemas). Scores use ``--score-samples`` training rows drawn at random with each of the
``--seeds`` (the seed also drives random pruning and m-info-flow's kNN estimator), so the spread
over seeds says whether m-info-flow and random are apart; m-info-flow's message Z is the protected
column's raw values.

Individual fairness (certprune's audit, :func:`certprune.audit_fairness`, exact semantics, whole
domain, the same protected attribute): for the dense model and every pruned model at
``--audit-amounts``, ``--audit-timeout`` seconds each, the shares of the domain's individuals proven
fair / proven unfair / undecided, and the sampled unfair share (``--audit-samples`` uniform domain
points, each decided exactly). A short budget leaves much undecided: the proven shares are lower
bounds, the sampled share the estimate.

Usage: python experiments/pruning_fairness.py [--amounts 0.1,0.25,0.5] [--seeds 0,1,2]
Writes experiments/results/pruning_fairness.csv (one row per model and seed) and pruning_fairness.md
(mean and standard deviation over the seeds).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = Path(__file__).resolve().parents[1] / "certprune" / "models"
PROTECTED = {"adult": "sex", "german": "sex", "bank": "age"}


def group_gaps(pred: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """(demographic-parity gap, equalised-odds gap) of binary predictions between groups g=0/1."""
    rate = lambda m: pred[m].mean() if m.any() else np.nan  # noqa: E731
    dp = abs(rate(g == 1) - rate(g == 0))
    eo = max(abs(rate((g == 1) & (y == v)) - rate((g == 0) & (y == v))) for v in (0, 1))
    return float(dp), float(eo)


def evaluate(model, X: np.ndarray, y: np.ndarray, g: np.ndarray) -> dict:
    """Accuracy and group gaps of the one-logit model (decision logit > 0)."""
    with torch.no_grad():
        pred = (model(torch.from_numpy(X).float()).reshape(-1) > 0).numpy().astype(int)
    dp, eo = group_gaps(pred, y, g)
    return {"acc": float((pred == y).mean()), "dp_gap": dp, "eo_gap": eo}


def audit(model, spec, args) -> dict:
    """Individual-fairness audit: proven fair/unfair/undecided shares and the sampled unfair share."""
    from certprune import audit_fairness

    res = audit_fairness(model, spec, timeout=args.audit_timeout, progress=False, report=False,
                         samples=args.audit_samples)
    share, sampled = res.summary["individual_share"], res.summary["sampled_unfair_share"]
    return {"fair_proven": share["fair"], "unfair_proven": share["unfair"], "undecided": share["undecided"],
            "unfair_sampled": sampled["share"]}


def run(dataset: str, args) -> list[dict]:
    import certprune
    from certprune.datasets import load_tabular
    from certprune.fairness_spec import FairnessSpec

    data = load_tabular(dataset)
    col = data.schema.index(PROTECTED[dataset])
    raw = data.X_test[:, col]
    g = (raw == raw.max()).astype(int)  # the three protected columns are 0/1 in these schemas
    spec = FairnessSpec.from_schema(data.schema, (PROTECTED[dataset],))
    net = certprune.load_model(MODELS / f"{dataset}_mlp.onnx")
    dense = {"dataset": dataset, "criterion": "dense", "amount": 0.0, **evaluate(net, data.X_test, data.y_test, g)}
    if args.audit_timeout > 0:
        dense.update(audit(net, spec, args))
    rows = [{**dense, "seed": s} for s in args.seeds]
    n = min(args.score_samples, len(data.X_train))
    for seed in args.seeds:
        idx = np.random.default_rng(seed).permutation(len(data.X_train))[:n]
        train = (torch.from_numpy(data.X_train[idx]).float(), torch.from_numpy(data.y_train[idx]))
        for amount in args.amounts:
            for method in ("m-info-flow", "magnitude", "random"):
                pruned, _ = certprune.prune(net, method=method, amount=amount, granularity="neuron", data=train,
                                            protected=col, score_samples=n, seed=seed)
                row = {"dataset": dataset, "criterion": method, "amount": amount, "seed": seed,
                       **evaluate(pruned, data.X_test, data.y_test, g)}
                if args.audit_timeout > 0 and amount in args.audit_amounts:
                    row.update(audit(pruned, spec, args))
                rows.append(row)
                print(row, flush=True)
    return rows


def summary_table(table: pd.DataFrame) -> str:
    """Mean +- standard deviation over the seeds, one line per (data set, criterion, amount)."""
    cols = [c for c in ("acc", "dp_gap", "eo_gap", "fair_proven", "unfair_proven", "undecided", "unfair_sampled")
            if c in table]
    heads = {"acc": "acc", "dp_gap": "DP gap", "eo_gap": "EO gap", "fair_proven": "proven fair",
             "unfair_proven": "proven unfair", "undecided": "undecided", "unfair_sampled": "sampled unfair"}
    lines = ["| data set | criterion | amount | seeds | " + " | ".join(heads[c] for c in cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    for (d, c, a), grp in table.groupby(["dataset", "criterion", "amount"], sort=False):
        cells = []
        for col in cols:
            v = grp[col].dropna()
            cells.append("" if not len(v) else f"{v.mean():.3f} +- {v.std(ddof=0):.3f}")
        lines.append(f"| {d} | {c} | {a:g} | {grp.seed.nunique()} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="adult,german,bank")
    p.add_argument("--amounts", default="0.1,0.25,0.5")
    p.add_argument("--score-samples", type=int, default=4000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--audit-amounts", default="0.25", help="amounts whose pruned models are audited")
    p.add_argument("--audit-timeout", type=float, default=15.0, help="seconds per audit (0: no audit)")
    p.add_argument("--audit-samples", type=int, default=2000, help="uniform domain points decided exactly")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.amounts = [float(a) for a in args.amounts.split(",")]
    args.audit_amounts = [float(a) for a in args.audit_amounts.split(",") if a]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    rows = [r for d in args.datasets.split(",") for r in run(d, args)]
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "pruning_fairness.csv", index=False)
    text = summary_table(table)
    (args.out / "pruning_fairness.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
