"""The model-form caches of ``verifiers.bounds``: a model that is not a chain is refused by
``affine_net`` once per fingerprint (model_forms tries the chain form first on every call), and
an edit of the weights invalidates the cached refusal like a cached form."""
from __future__ import annotations

import pytest
import torch

from certprune.errors import UnsupportedModelError
from certprune.verifiers import bounds
from certprune.verifiers.affine import AffineReluNet
from tests.graph_nets import GRAPHS


def test_affine_net_refusal_is_cached_per_fingerprint(monkeypatch):
    m = GRAPHS["residual_mlp"][0](0)
    calls = []
    real = AffineReluNet.from_module
    monkeypatch.setattr(AffineReluNet, "from_module", staticmethod(lambda *a, **k: calls.append(1) or real(*a, **k)))
    with pytest.raises(UnsupportedModelError) as first:
        bounds.affine_net(m, (6,))
    with pytest.raises(UnsupportedModelError) as second:
        bounds.affine_net(m, (6,))
    assert len(calls) == 1 and str(first.value) == str(second.value)
    with torch.no_grad():
        next(m.parameters()).add_(1.0)  # new fingerprint: tried again
    with pytest.raises(UnsupportedModelError):
        bounds.affine_net(m, (6,))
    assert len(calls) == 2
    g = bounds.graph_of(m, (6,))
    assert bounds.graph_of(m, (6,)) is g  # the graph form is cached per fingerprint as well
