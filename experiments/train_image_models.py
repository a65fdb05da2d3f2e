"""Train the two small bundled image classifiers (fixed seeds) and export them as ONNX.

- ``certprune/models/digits_mlp.onnx``: scikit-learn digits, input (1, 8, 8) in [0, 1],
  MLP 64-32-32-10, trained on images 0..1499, accuracy reported on the held-out 1500..1796.
- ``certprune/models/mnist_mlp.onnx``: MNIST, input (1, 28, 28) in [0, 1], MLP 784-64-32-10,
  trained on the FIRST 8,000 images of the MNIST *test* set (the only MNIST split in the shared
  data); accuracy reported on the last 2,000 test images, which are never used in training and
  are the split ``certprune certify --dataset mnist`` evaluates by default.

Usage: ``python experiments/train_image_models.py [--data-dir D]`` (prints accuracies).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODELS = Path(__file__).resolve().parents[1] / "certprune" / "models"
DIGITS_TRAIN, MNIST_TRAIN = 1500, 8000  # held-out splits start here (see certify's defaults)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Flatten then Linear/ReLU layers with the given widths (no final activation: logits)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> nn.Module:
    """Adam + cross-entropy, mini-batches of 64, fixed shuffling seed."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def build(name: str, x: np.ndarray, y: np.ndarray, n_train: int, sizes: list[int], epochs: int) -> None:
    from certprune.io.onnx_export import save_onnx
    torch.manual_seed(0)
    model = train(mlp(sizes), x[:n_train], y[:n_train], epochs, seed=0)
    path = save_onnx(model, MODELS / f"{name}.onnx", input_shape=tuple(x.shape[1:]),
                     metadata={"trained_on": f"first {n_train} images", "held_out_from": n_train})
    print(f"{name}: train acc {accuracy(model, x[:n_train], y[:n_train]):.4f}, held-out acc "
          f"{accuracy(model, x[n_train:], y[n_train:]):.4f} on {len(x) - n_train} images, "
          f"{path.stat().st_size / 1024:.0f} KiB -> {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from certprune.datasets import load_digits, load_mnist
    build("digits_mlp", *load_digits(), DIGITS_TRAIN, [64, 32, 32, 10], epochs=60)
    build("mnist_mlp", *load_mnist(args.data_dir), MNIST_TRAIN, [784, 64, 32, 10], epochs=30)


if __name__ == "__main__":
    main()
