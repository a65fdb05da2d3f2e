"""Agreement between back ends: the exact z3 back end vs ``certprune.verify`` (bounds + branch and
bound with LP leaves) on random properties of small nets, real and integer inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from certprune.results import Verdict
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.smt import solve_property


def _dyadic_mlp(sizes: list[int], seed: int) -> nn.Sequential:
    """Random ReLU MLP with weights on a 1/32 grid (short exact rationals keep z3 fast)."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.round(torch.randn(lin.weight.shape, generator=g) * 32 / sizes[i] ** 0.5) / 32)
            lin.bias.copy_(torch.round(torch.randn(lin.bias.shape, generator=g) * 3.2) / 32)
        layers += [lin, nn.ReLU()] if i < len(sizes) - 2 else [lin]
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("seed", range(6))
def test_z3_and_branch_and_bound_agree(seed):
    from certprune.verifiers.verify import verify
    rng = np.random.default_rng(seed)
    model = _dyadic_mlp([3, 6, 5, 2], seed)
    net = AffineReluNet.from_module(model, (3,))
    integer = seed % 2 == 1
    lo = rng.integers(-4, 0, 3).astype(float)
    hi = lo + rng.integers(2, 6, 3)
    region = InputRegion(lo, hi, np.ones(3, bool) if integer else None)
    pts = rng.uniform(lo, hi, (20000, 3))
    pts = np.round(pts) if integer else pts
    d = net.forward(torch.as_tensor(pts)).numpy() @ np.array([1.0, -1.0])
    compared = 0
    # thresholds away from the sampled optimum by a clear gap: one likely sat, one likely unsat
    for t in (float(np.quantile(d, 0.9)), float(d.max()) + 0.25):
        prop = Property(region, (LinearConstraints(np.array([[-1.0, 1.0]]), np.array([-t])),))  # y0 - y1 >= t
        z = solve_property(net, prop, timeout=30)
        r = verify(model, prop, timeout=60)
        assert z.status in ("sat", "unsat")
        if r.verdict is Verdict.UNKNOWN:
            continue
        assert (z.status == "sat") == (r.verdict is Verdict.FALSIFIED), (t, z.status, r.verdict)
        compared += 1
    assert compared >= 1   # a 3-input net is always decided by one of the two thresholds
