"""Shared fixtures: the data directory (CERTPRUNE_DATA, default ../shared/data) and small nets."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]

# Tests run many small tensor operations; with torch's intra-op threads they are several times
# slower on a 2-core machine (thread hand-off dominates), so the suite runs single-threaded.
torch.set_num_threads(1)


def data_dir() -> Path:
    return Path(os.environ.get("CERTPRUNE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data directory {d} not present")
    return d


def random_mlp(sizes: list[int], seed: int = 0) -> nn.Sequential:
    """A random ReLU MLP with the given layer widths (eval mode)."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) / sizes[i] ** 0.5)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.1)
        layers += [lin, nn.ReLU()] if i < len(sizes) - 2 else [lin]
    return nn.Sequential(*layers).eval()


def race_is_two_model() -> nn.Sequential:
    """Inputs (race in 0..2, age): logit = relu(race - 1) - 0.5, i.e. decision = (race == 2)."""
    m = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        m[0].bias.fill_(-1.0)
        m[2].weight.fill_(1.0)
        m[2].bias.fill_(-0.5)
    return m
