"""Metrics for a list of models, computed the same way for every method (ShrinkBench spirit:
Blalock et al. 2020, "What is the State of Neural Network Pruning?").

Columns: params, nonzeros, compression (reference params / nonzeros), macs (dense MACs of this
model), nonzero_macs, speedup (reference MACs / nonzero MACs, theoretical), latency_ms (median
CPU time of one forward pass on a batch, single thread), clean_acc, unstable_per_input (unstable
ReLUs per input at epsilon, CROWN), crown_cert_acc and crown_s_per_input, and with
``verify_timeout`` also the branch-and-bound columns of :func:`bab_counts` (the one procedure:
CROWN first, then :func:`certprune.verify` on the inputs it leaves open). MACs count Linear and Conv2d multiply-accumulates only.

CROWN certification: input i is certified iff it is classified correctly and the float64 CROWN
lower bound of y_label - y_j exceeds ``CERT_MARGIN`` for every j != label: the margin of the one
soundness policy's default (:data:`certprune.semantics.DEFAULT`, ``exact``) for a row ``y_label -
y_j > 0``, i.e. ``1e-7 * (1 + 0)``, the criterion ``verify`` uses (it was an absolute 1e-6 before).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch import nn

from certprune.pruning.layers import base_module
from certprune.pruning.stability import perturbation_boxes
from certprune.semantics import DEFAULT

CERT_MARGIN = float(DEFAULT.slack(0.0, 0.0))  # exact policy, row constant b = 0


def mac_counts(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(dense MACs, non-zero-weight MACs) of one forward pass on one input."""
    counts = [0, 0]

    def hook(m, _inp, out):
        positions = out[0, 0].numel() if isinstance(m, nn.Conv2d) else 1
        counts[0] += m.weight.numel() * positions
        counts[1] += int(torch.count_nonzero(m.weight)) * positions

    module = base_module(model).eval()
    hooks = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return counts[0], counts[1]


def latency_ms(model: nn.Module, X: torch.Tensor, repeats: int = 20) -> float:
    """Median wall time (ms) of one single-threaded forward pass on the batch ``X``."""
    module = base_module(model).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            module(X)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                module(X)
                times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return 1000.0 * float(np.median(times))


def crown_certified(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epsilon: float,
                    domain=(0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(certified mask, unstable ReLUs per input) from one CROWN pass per input (see module doc;
    the margins are :func:`certprune.verifiers.robustness.crown_margins`, certify's copy)."""
    from certprune.verifiers.robustness import crown_margins

    lo, hi = perturbation_boxes(X.double(), epsilon, domain)
    margins, unstable = crown_margins(base_module(model), lo, hi, y)
    with torch.no_grad():
        correct = base_module(model)(X).argmax(1) == y
    return (margins > CERT_MARGIN) & correct.numpy(), unstable


BAB_MODE = "crown-then-verify"  # the name of :func:`bab_verdicts`' procedure, stored with its counts


def verify_each(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epsilon: float, timeout: float,
                domain=(0.0, 1.0)) -> list:
    """One :class:`~certprune.results.Verdict` per input from :func:`certprune.verify` alone
    (falsification, bounds, branch and bound; ``timeout`` s per input; UNKNOWN when it ran out)."""
    from certprune.specs import RobustnessSpec
    from certprune.verifiers.verify import verify

    module = base_module(model).eval()
    k = int(module(X[:1]).shape[1])
    out = []
    for x, label in zip(X.numpy(), y.tolist()):
        prop = RobustnessSpec(x, epsilon, int(label), domain[0], domain[1]).to_property(k)
        out.append(verify(module, prop, timeout=timeout).verdict)
    return out


def _crown_then_verify(model, X, y, epsilon, timeout, domain) -> tuple[np.ndarray, list]:
    """(CROWN-certified mask, one verdict per input): the inputs the CROWN pass certifies are
    CERTIFIED, every other one gets :func:`verify_each`'s verdict."""
    from certprune.results import Verdict

    by_crown = crown_certified(model, X, y, epsilon, domain)[0]
    rest = torch.from_numpy(~by_crown)
    open_verdicts = iter(verify_each(model, X[rest], y[rest], epsilon, timeout, domain) if rest.any() else [])
    return by_crown, [Verdict.CERTIFIED if c else next(open_verdicts) for c in by_crown]


def bab_verdicts(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epsilon: float, timeout: float,
                 domain=(0.0, 1.0)) -> list:
    """The one branch-and-bound certified-accuracy procedure (``BAB_MODE``): one
    :class:`~certprune.results.Verdict` per input, CERTIFIED where one batched CROWN pass
    (:func:`crown_certified`) certifies it, else :func:`certprune.verify` with ``timeout`` s per
    input (FALSIFIED carries a counterexample re-run in float32 on ``model``; UNKNOWN: time ran
    out). verify alone spends part of its budget on falsification first, which under load left
    nothing for inputs one CROWN pass closes."""
    return _crown_then_verify(model, X, y, epsilon, timeout, domain)[1]


def bab_counts(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epsilon: float, timeout: float,
               domain=(0.0, 1.0)) -> dict:
    """:func:`bab_verdicts` counted, as table columns: ``bab_cert_acc`` (certified share; a
    timed-out input counts as not certified), ``bab_by_crown`` (certified by the CROWN pass),
    ``bab_falsified``, ``bab_timeouts``, ``bab_s_per_input`` (wall time, CROWN pass included),
    ``bab_samples``, ``bab_timeout_s`` and ``bab_mode``."""
    from certprune.results import Verdict

    t = time.perf_counter()
    by_crown, verdicts = _crown_then_verify(model, X, y, epsilon, timeout, domain)
    n = max(len(verdicts), 1)
    return dict(bab_cert_acc=sum(v is Verdict.CERTIFIED for v in verdicts) / n, bab_by_crown=int(by_crown.sum()),
                bab_falsified=sum(v is Verdict.FALSIFIED for v in verdicts),
                bab_timeouts=sum(v is Verdict.UNKNOWN for v in verdicts),
                bab_s_per_input=(time.perf_counter() - t) / n, bab_samples=len(verdicts), bab_timeout_s=timeout,
                bab_mode=BAB_MODE)


def pruning_metrics(models: dict[str, nn.Module], data, epsilon: float, reference: str | None = None,
                    verify_samples: int = 100, verify_timeout: float | None = None, domain=(0.0, 1.0),
                    latency_batch: int = 256) -> pd.DataFrame:
    """One row per model (see module doc); ``reference`` (a name in ``models``, default the first
    one, or a module measured only as that reference) is the denominator of compression and
    speedup; verification uses the first ``verify_samples`` inputs."""
    from certprune.pruning.api import as_tensors

    X, y = as_tensors(data)
    shape = tuple(X.shape[1:])
    ref = reference if isinstance(reference, nn.Module) else models[reference or next(iter(models))]
    ref_params = sum(p.numel() for p in base_module(ref).parameters())
    ref_macs = mac_counts(ref, shape)[0]
    rows = [_row(name, m, X, y, epsilon, shape, ref_params, ref_macs, verify_samples, verify_timeout, domain,
                 latency_batch) for name, m in models.items()]
    return pd.DataFrame(rows)


def _row(name, model, X, y, epsilon, shape, ref_params, ref_macs, n_verify, timeout, domain, latency_batch) -> dict:
    module = base_module(model).eval()
    params = sum(p.numel() for p in module.parameters())
    nonzeros = sum(int(torch.count_nonzero(p)) for p in module.parameters())
    macs, nz_macs = mac_counts(module, shape)
    with torch.no_grad():
        acc = float((module(X).argmax(1) == y).float().mean())
    Xv, yv = X[:n_verify], y[:n_verify]
    t = time.perf_counter()
    cert, unstable = crown_certified(module, Xv, yv, epsilon, domain)
    crown_s = (time.perf_counter() - t) / len(Xv)
    row = {"model": name, "params": params, "nonzeros": nonzeros, "compression": ref_params / max(nonzeros, 1),
           "macs": macs, "nonzero_macs": nz_macs, "speedup": ref_macs / max(nz_macs, 1),
           "latency_ms": latency_ms(module, X[:latency_batch]), "clean_acc": acc,
           "unstable_per_input": float(unstable.mean()), "crown_cert_acc": float(cert.mean()),
           "crown_s_per_input": crown_s}
    if timeout is not None:
        row.update(bab_counts(module, Xv, yv, epsilon, timeout, domain))
    return row
