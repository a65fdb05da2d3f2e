"""Train the small bundled fairness models (fixed seeds) and export them as ONNX + JSON.

One MLP per tabular data set (``certprune/models/<dataset>_mlp.onnx``), trained on the data set's
training split from ``certprune.datasets.load_tabular`` (Fairify's 85/15 split for Adult,
German, Bank; FairQuant's train+validation for COMPAS) and evaluated on its test split.

Inputs are the schema's raw integer features: training standardises them, and the scaling is
then folded into the first Linear layer (``W' = W / std``, ``b' = b - W' @ mean``) so the
exported model takes the integers directly. Output: one logit; decision = ``logit > 0``
(label 1, the data set's ``favourable_label`` for Adult/German/Bank; for COMPAS label 1 is a
high risk score). A JSON file next to each model records data set, features, accuracy, seed.

Usage: ``python experiments/train_fairness_models.py [--data-dir D] [--only german]``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODELS = Path(__file__).resolve().parents[1] / "certprune" / "models"
SEED = 0
# data set -> (hidden widths, epochs, weight decay)
CONFIG = {"german": ([16, 8], 150, 1e-3), "adult": ([32, 16], 25, 1e-4),
          "bank": ([32, 16], 25, 1e-4), "compas": ([16, 8], 60, 1e-4)}


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear/ReLU layers with the given widths, one output logit."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, wd: float) -> nn.Module:
    """Adam + BCE-with-logits, mini-batches of 64, fixed shuffling seed."""
    g = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=wd)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(model(xt[idx]).squeeze(1), yt[idx]).backward()
            opt.step()
    return model.eval()


def fold_standardisation(model: nn.Sequential, mean: np.ndarray, std: np.ndarray) -> nn.Sequential:
    """Absorb ``(x - mean) / std`` into the first Linear (in float64, then stored as float32)."""
    first = model[0]
    w = first.weight.detach().double() / torch.from_numpy(std)
    b = first.bias.detach().double() - w @ torch.from_numpy(mean)
    with torch.no_grad():
        first.weight.copy_(w.float())
        first.bias.copy_(b.float())
    return model


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float(((model(torch.from_numpy(x).float()).squeeze(1) > 0).numpy() == y).mean())


def build(name: str, data_dir) -> dict:
    from certprune.datasets import load_tabular
    from certprune.io.onnx_export import save_onnx
    data = load_tabular(name, data_dir)
    hidden, epochs, wd = CONFIG[name]
    mean = data.X_train.mean(axis=0).astype(np.float64)
    std = data.X_train.std(axis=0).astype(np.float64)
    std[std == 0] = 1.0
    torch.manual_seed(SEED)
    model = mlp([data.schema.num_features, *hidden, 1])
    train(model, (data.X_train - mean) / std, data.y_train, epochs, wd)
    model = fold_standardisation(model, mean, std)
    record = {
        "dataset": name, "file": f"{name}_mlp.onnx", "features": list(data.schema.names),
        "protected": list(data.schema.protected), "architecture": [data.schema.num_features, *hidden, 1],
        "output": "one logit; decision = logit > 0 (label 1)", "label_1": data.schema.favourable_label
        if name != "compas" else "score_factor = 1 (high risk score)",
        "inputs": "raw integer features in schema order (standardisation folded into the first layer)",
        "seed": SEED, "epochs": epochs, "weight_decay": wd,
        "train_accuracy": round(accuracy(model, data.X_train, data.y_train), 4),
        "test_accuracy": round(accuracy(model, data.X_test, data.y_test), 4),
        "test_rows": int(len(data.X_test)),
        "majority_class_test_accuracy": round(float(max(data.y_test.mean(), 1 - data.y_test.mean())), 4),
    }
    path = save_onnx(model, MODELS / record["file"], input_shape=(data.schema.num_features,),
                     metadata={k: record[k] for k in ("dataset", "features", "test_accuracy", "seed")})
    (MODELS / f"{name}_mlp.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{name}: {record['architecture']} train {record['train_accuracy']:.4f} test {record['test_accuracy']:.4f} "
          f"(majority {record['majority_class_test_accuracy']:.4f}), {path.stat().st_size / 1024:.1f} KiB -> {path}")
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--only", choices=sorted(CONFIG), default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in ([args.only] if args.only else ["german", "compas", "bank", "adult"]):
        build(name, args.data_dir)


if __name__ == "__main__":
    main()
