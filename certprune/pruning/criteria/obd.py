"""Second-order Taylor / Optimal Brain Damage (LeCun et al. 1990, "Optimal Brain Damage"):
saliency s_j = h_jj * w_j^2 / 2, with h_jj the diagonal of the Hessian of the mean
cross-entropy. The diagonal comes from Hessian-vector products: exactly (one HVP per unit
vector) when ``ctx.hvp_samples`` is None and there are at most ``EXACT_LIMIT`` parameters,
else Hutchinson's estimator E[v * Hv] with Rademacher v (Yao et al. 2020, "PyHessian")."""
from __future__ import annotations

import torch
from torch import nn

from certprune.pruning.criteria.base import ScoreContext, batches, require_data, summed_loss, unit_sum
from certprune.pruning.layers import UnitLayer

EXACT_LIMIT = 2048
DEFAULT_SAMPLES = 32


def hessian_diagonal(ctx: ScoreContext, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Diagonal of the Hessian of the mean loss w.r.t. ``params`` (float64, params' shapes)."""
    n_params = sum(p.numel() for p in params)
    exact = ctx.hvp_samples is None and n_params <= EXACT_LIMIT
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    gen = torch.Generator().manual_seed(ctx.seed)
    n = len(require_data(ctx, "obd")[0])
    for x, y in batches(ctx, "obd"):
        grads = torch.autograd.grad(summed_loss(ctx.model, x, y), params, create_graph=True)
        vectors = _unit_vectors(params, n_params) if exact else _rademacher(params, ctx.hvp_samples or DEFAULT_SAMPLES, gen)
        for v, weight in vectors:
            # v holds a batch of vectors (leading dim); one vmapped HVP call for the whole batch
            hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True, is_grads_batched=True)
            for t, vi, hvi in zip(total, v, hv):
                t += (weight * vi * hvi).double().sum(0)
    return [t / n for t in total]


def _unit_vectors(params, n_params, chunk: int = 256):
    """Batches of unit vectors e_k with weight 1: sum_k e_k * H e_k is exactly diag(H)."""
    eye = torch.eye(n_params)
    for s in range(0, n_params, chunk):
        yield _split(eye[s:s + chunk], params), 1.0


def _rademacher(params, samples: int, gen: torch.Generator, chunk: int = 64):
    """Batches of Rademacher v with weight 1/samples: the mean of v * Hv estimates diag(H)."""
    n_params = sum(p.numel() for p in params)
    for s in range(0, samples, chunk):
        flat = torch.randint(0, 2, (min(chunk, samples - s), n_params), generator=gen).float() * 2 - 1
        yield _split(flat, params), 1.0 / samples


def _split(flat: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """(B, n_params) -> per-parameter (B, *shape) tensors."""
    out, s = [], 0
    for p in params:
        out.append(flat[:, s:s + p.numel()].reshape(len(flat), *p.shape).to(p.dtype))
        s += p.numel()
    return out


def weight_scores(ctx: ScoreContext, layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """OBD saliency h_jj w_j^2 / 2 per weight."""
    params = [m.weight for _, m in layers]
    diag = hessian_diagonal(ctx, params)
    return {name: 0.5 * h * p.detach().double() ** 2 for (name, _), p, h in zip(layers, params, diag)}


def unit_scores(ctx: ScoreContext, layers: list[UnitLayer]) -> dict[str, torch.Tensor]:
    """Sum of OBD saliencies of the unit's incoming weights and bias."""
    params = [p for l in layers for p in (l.module.weight, l.module.bias) if p is not None]
    diag = iter(hessian_diagonal(ctx, params))
    out = {}
    for l in layers:
        w = l.module.weight
        score = unit_sum(0.5 * next(diag) * w.detach().double() ** 2)
        if l.module.bias is not None:
            score = score + 0.5 * next(diag) * l.module.bias.detach().double() ** 2
        out[l.name] = score
    return out
