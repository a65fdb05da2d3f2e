"""Does pruning the edges/neurons that carry the protected attribute (m-info-flow) reduce group
unfairness, and at what cost in accuracy? Bundled Adult, German and Bank models.

For each data set, criterion (m-info-flow, magnitude, random) and amount (fraction of hidden
neurons removed, no fine-tuning: the bundled models have one logit, fine-tuning in certprune is
cross-entropy over classes), on the test split: accuracy, demographic-parity gap
|P(yhat=1 | g=1) - P(yhat=1 | g=0)| and equalised-odds gap (the larger of the true- and
false-positive-rate gaps). Groups: sex for Adult and German, age for Bank (all three 0/1 columns in
these schemas). Scores use the first ``--score-samples`` training rows; m-info-flow's message Z is the
protected column's raw values. The individual-fairness audit is not run here.

Usage: python experiments/pruning_fairness.py [--amounts 0.1,0.25,0.5]
Writes experiments/results/pruning_fairness.csv and pruning_fairness.md.
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


def run(dataset: str, args) -> list[dict]:
    import certprune
    from certprune.datasets import load_tabular

    data = load_tabular(dataset)
    col = data.schema.index(PROTECTED[dataset])
    raw = data.X_test[:, col]
    g = (raw == raw.max()).astype(int)  # the three protected columns are 0/1 in these schemas
    net = certprune.load_model(MODELS / f"{dataset}_mlp.onnx")
    rows = [{"dataset": dataset, "criterion": "dense", "amount": 0.0, **evaluate(net, data.X_test, data.y_test, g)}]
    n = args.score_samples
    train = (torch.from_numpy(data.X_train[:n]).float(), torch.from_numpy(data.y_train[:n]))
    for amount in args.amounts:
        for method in ("m-info-flow", "magnitude", "random"):
            pruned, _ = certprune.prune(net, method=method, amount=amount, granularity="neuron", data=train,
                                        protected=col, score_samples=n, seed=args.seed)
            rows.append({"dataset": dataset, "criterion": method, "amount": amount,
                         **evaluate(pruned, data.X_test, data.y_test, g)})
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="adult,german,bank")
    p.add_argument("--amounts", default="0.1,0.25,0.5")
    p.add_argument("--score-samples", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.amounts = [float(a) for a in args.amounts.split(",")]
    torch.set_num_threads(1)
    rows = [r for d in args.datasets.split(",") for r in run(d, args)]
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "pruning_fairness.csv", index=False)
    lines = ["| data set | criterion | amount | acc | DP gap | EO gap |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.dataset} | {r.criterion} | {r.amount:g} | {r.acc:.3f} | {r.dp_gap:.3f} | {r.eo_gap:.3f} |"
              for r in table.itertuples()]
    (args.out / "pruning_fairness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
