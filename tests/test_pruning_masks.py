"""Unstructured and N:M masks: exact counts, exact group structure, bad input."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import certprune
from certprune.errors import ConfigError
from certprune.pruning.masks import nm_mask, unstructured_masks
from conftest import random_mlp


def _convnet(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 2), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.37, 0.5, 0.9])
def test_global_unstructured_amount_is_exact(amount):
    model = random_mlp([12, 10, 7, 3])
    pruned, manifest = certprune.prune(model, method="random", amount=amount, seed=3)
    total = sum(m.weight.numel() for m in pruned if isinstance(m, nn.Linear))
    zeros = sum(int((m.weight == 0).sum()) for m in pruned if isinstance(m, nn.Linear))
    assert zeros == round(amount * total)
    assert manifest.steps[0].masks and manifest.granularity == "unstructured"


def test_local_unstructured_amount_is_exact_per_layer():
    model = random_mlp([12, 10, 7, 3])
    pruned, _ = certprune.prune(model, method="magnitude", amount=0.3, scope="local")
    for m in pruned:
        if isinstance(m, nn.Linear):
            assert int((m.weight == 0).sum()) == round(0.3 * m.weight.numel())


def test_magnitude_mask_removes_the_smallest():
    scores = {"a": torch.tensor([[5.0, 1.0], [3.0, 0.5]]), "b": torch.tensor([[2.0, 4.0]])}
    keep = unstructured_masks(scores, 0.5, "global")
    assert keep["a"].tolist() == [[True, False], [True, False]] and keep["b"].tolist() == [[False, True]]


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (3, 8), (1, 2), (4, 4)])
def test_nm_masks_have_exactly_n_per_group(n, m):
    model = random_mlp([16, 8, 8, 4], seed=1)
    pruned, manifest = certprune.prune(model, method="magnitude", granularity="nm", n=n, m=m)
    for layer in pruned:
        if isinstance(layer, nn.Linear):
            groups = (layer.weight != 0).reshape(layer.weight.shape[0], -1, m).sum(-1)
            assert (groups == n).all()
    assert manifest.amount == pytest.approx(1 - n / m)


def test_nm_keeps_the_largest_in_each_group():
    score = torch.tensor([[0.1, 0.9, 0.5, 0.2, 3.0, 2.0, 1.0, 0.0]])
    assert nm_mask(score, 2, 4).int().tolist() == [[0, 1, 1, 0, 1, 1, 0, 0]]


def test_nm_on_conv_groups_over_flattened_filter():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(4, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    pruned, _ = certprune.prune(conv, method="magnitude", granularity="nm", n=2, m=4, input_shape=(4, 5, 5))
    w = pruned[0].weight.reshape(3, -1, 4)
    assert ((w != 0).sum(-1) == 2).all()


@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5, "half"])
def test_amount_outside_unit_interval_is_rejected(amount):
    with pytest.raises(ConfigError, match="amount"):
        certprune.prune(random_mlp([4, 4, 2]), method="magnitude", amount=amount)


def test_n_greater_than_m_is_rejected():
    with pytest.raises(ConfigError, match="N <= M"):
        certprune.prune(random_mlp([8, 4, 2]), method="magnitude", granularity="nm", n=5, m=4)


def test_nm_group_size_must_divide_the_inputs():
    with pytest.raises(ConfigError, match="not a multiple of M=4"):
        certprune.prune(random_mlp([10, 4, 2]), method="magnitude", granularity="nm", n=2, m=4)


def test_iterative_unstructured_reaches_the_exact_target():
    model = random_mlp([12, 10, 7, 3])
    X, y = torch.rand(40, 12), torch.randint(0, 3, (40,))
    pruned, manifest = certprune.prune(model, method="magnitude", amount=0.8, steps=3, data=(X, y), finetune_epochs=1)
    total = sum(m.weight.numel() for m in pruned if isinstance(m, nn.Linear))
    zeros = sum(int((m.weight == 0).sum()) for m in pruned if isinstance(m, nn.Linear))
    assert len(manifest.steps) == 3 and zeros == round(0.8 * total)
    # fine-tuning kept the earlier masks: step 1's zeros are still zero
    first = manifest.steps[0].masks
    from certprune.pruning.manifest import decode_mask
    assert all((pruned[int(k)].weight[~decode_mask(v)] == 0).all() for k, v in first.items())
