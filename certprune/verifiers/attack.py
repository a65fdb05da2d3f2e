"""Falsification: PGD on the violation margin plus random and corner sampling, all batched.

PGD from uniform random starts can miss a narrow violating region on nets whose margin is
nearly flat over most of the box (mnist_fc 256x4 / prop 6 and 256x6 / prop 1 at eps 0.05:
500 restarts all stop at one local minimum). :func:`odi_starts` diversifies the starts the way
Output Diversified Initialization does (Tashiro et al., NeurIPS 2020): a few signed-gradient
steps that maximise a random direction ``w . y`` of the output, then PGD on the margin.

Conventions: points are float64 numpy arrays of the model's flattened input, ``(N, n_in)``;
the *margin* is :meth:`Property.violation_margin` of the float32 model output (violated iff
``<= 0``). Integer inputs (``InputRegion.integer_mask``) are rounded into the box before every
evaluation, so every returned point is a valid input of the region.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from certprune.specs import Property
from certprune.verifiers.affine import AffineReluNet

Float32Model = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackResult:
    """Best point found (flattened input, float64 copy of float32 values) and its float32 margin."""

    x: np.ndarray
    margin: float
    evaluations: int

    @property
    def violated(self) -> bool:
        return self.margin <= 0


def float32_forward(model, input_shape: tuple[int, ...]) -> Float32Model:
    """A differentiable float32 forward ``(N, n_in) -> (N, n_out)`` of the ORIGINAL model.

    A Network or nn.Module is deep-copied and cast to float32 (the caller's module is never
    mutated); an AffineReluNet runs its float64 weights rounded to float32.
    """
    if isinstance(model, AffineReluNet):
        ws = [w.float() for w in model.weights]
        bs = [b.float() for b in model.biases]

        def run_affine(x: torch.Tensor) -> torch.Tensor:
            h = x.float().reshape(len(x), -1)
            for i, (w, b) in enumerate(zip(ws, bs)):
                h = h @ w.T + b
                if i < len(ws) - 1:
                    h = torch.relu(h)
            return h
        return run_affine
    module: nn.Module = getattr(model, "module", model)
    module = copy.deepcopy(module).float().eval()
    for p in module.parameters():
        p.requires_grad_(False)

    def run_module(x: torch.Tensor) -> torch.Tensor:
        return module(x.float().reshape(len(x), *input_shape)).reshape(len(x), -1)
    return run_module


def torch_margin(prop: Property, y: torch.Tensor) -> torch.Tensor:
    """Differentiable violation margin of outputs ``y`` (N, n_out): min_d max_rows (A y - b)."""
    per = []
    for d in prop.disjuncts:
        A = torch.tensor(d.A, dtype=y.dtype)  # copy: the spec's arrays are read-only
        b = torch.tensor(d.b, dtype=y.dtype)
        per.append((y @ A.T - b).max(dim=1).values)
    return torch.stack(per).min(dim=0).values


def float32_margin(run: Float32Model, prop: Property, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(margins (N,), outputs (N, n_out)) of points ``x`` evaluated in float32; margin in float64."""
    with torch.no_grad():
        y = run(torch.as_tensor(np.asarray(x, dtype=np.float32))).double().numpy()
    return prop.violation_margin(y), y


def project(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, int_mask: torch.Tensor | None) -> torch.Tensor:
    """Clip into the box; round integer inputs to the nearest integer inside it."""
    x = torch.maximum(torch.minimum(x, hi), lo)
    if int_mask is not None:
        r = torch.maximum(torch.minimum(torch.round(x), torch.floor(hi)), torch.ceil(lo))
        x = torch.where(int_mask, r, x)
    return x


def sample_points(lo: np.ndarray, hi: np.ndarray, n_random: int, n_corners: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Center, random uniform points and box corners (all 2^d when few, else random ones)."""
    d = lo.size
    pts = [((lo + hi) / 2)[None]]
    if n_random:
        pts.append(lo + rng.random((n_random, d)) * (hi - lo))
    if n_corners:
        if d <= 12 and 2 ** d <= n_corners:
            bits = ((np.arange(2 ** d)[:, None] >> np.arange(d)) & 1).astype(bool)
        else:
            bits = rng.random((n_corners, d)) < 0.5
        pts.append(np.where(bits, hi, lo))
    return np.concatenate(pts)


def pgd(run: Float32Model, prop: Property, lo: np.ndarray, hi: np.ndarray, starts: np.ndarray,
        steps: int, int_mask: np.ndarray | None, deadline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Signed-gradient descent on the margin from every start at once; returns the best point
    (projected) seen per start and its float32 margin. Step size decays from width/4 to width/100."""
    lo_t, hi_t = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
    m_t = None if int_mask is None else torch.as_tensor(int_mask)
    width = hi_t - lo_t
    x = project(torch.as_tensor(starts, dtype=torch.float32), lo_t, hi_t, m_t)
    best_x, best_m = x.clone(), torch.full((len(x),), float("inf"))
    for k in range(steps + 1):
        x = x.detach().requires_grad_(True)
        xe = project(x, lo_t, hi_t, m_t) if m_t is not None else x
        margin = torch_margin(prop, run(xe).double())
        with torch.no_grad():
            better = margin.float() < best_m
            best_x[better], best_m[better] = xe.detach()[better], margin.float()[better]
        if k == steps or bool((best_m <= 0).any()) or (deadline is not None and time.monotonic() > deadline):
            break
        (g,) = torch.autograd.grad(margin.sum(), x)
        step = width * (0.25 * (0.04 ** (k / max(steps - 1, 1))))
        with torch.no_grad():
            x = torch.maximum(torch.minimum(x - step * g.sign(), hi_t), lo_t)
    bx = best_x.double().numpy()
    m, _ = float32_margin(run, prop, bx)
    return bx, m


def odi_starts(run: Float32Model, lo: np.ndarray, hi: np.ndarray, n: int, steps: int,
               rng: np.random.Generator, int_mask: np.ndarray | None = None,
               deadline: float | None = None) -> np.ndarray:
    """``n`` output-diversified starts (n, n_in): from uniform random points, ``steps`` signed-gradient
    steps of a quarter of the box width that increase ``w_i . y`` for a random ``w_i`` in [-1, 1]^n_out
    (fewer steps once ``deadline``, a ``time.monotonic()`` value, has passed)."""
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    m_t = None if int_mask is None else torch.tensor(int_mask)
    x = torch.as_tensor(lo + rng.random((n, lo.size)) * (hi - lo), dtype=torch.float32)
    x = torch.maximum(torch.minimum(x, hi_t), lo_t)
    w = None
    for _ in range(steps):
        if deadline is not None and time.monotonic() > deadline:
            break
        x = x.detach().requires_grad_(True)
        y = run(project(x, lo_t, hi_t, m_t) if m_t is not None else x)
        if w is None:
            w = torch.as_tensor(rng.uniform(-1.0, 1.0, (n, y.shape[1])), dtype=y.dtype)
        (g,) = torch.autograd.grad((y * w).sum(), x)
        with torch.no_grad():
            x = torch.maximum(torch.minimum(x + 0.25 * (hi_t - lo_t) * g.sign(), hi_t), lo_t)
    return x.detach().double().numpy()


def odi_pgd(run: Float32Model, prop: Property, lo: np.ndarray, hi: np.ndarray, n: int, steps: int,
            odi_steps: int, rng: np.random.Generator, int_mask: np.ndarray | None = None,
            deadline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PGD (``steps``) from ``n`` :func:`odi_starts`; (points (n, n_in), float32 margins (n,))."""
    starts = odi_starts(run, lo, hi, n, odi_steps, rng, int_mask, deadline)
    return pgd(run, prop, lo, hi, starts, steps, int_mask, deadline)


def falsify(run: Float32Model, prop: Property, lo: np.ndarray, hi: np.ndarray, *, restarts: int = 32,
            steps: int = 50, samples: int = 1024, corners: int = 256, seed: int = 0,
            int_mask: np.ndarray | None = None, deadline: float | None = None,
            odi_restarts: int = 0, odi_steps: int = 10) -> AttackResult:
    """Sampling, then PGD with ``restarts`` random starts (plus center), then, when still not
    violated, PGD (20 steps) from ``odi_restarts`` output-diversified starts; best point by float32 margin."""
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(lo, dtype=np.float64).ravel(), np.asarray(hi, dtype=np.float64).ravel()
    pts = sample_points(lo, hi, samples, corners, rng)
    if int_mask is not None:
        pts = np.where(int_mask, np.clip(np.round(pts), np.ceil(lo), np.floor(hi)), pts)
    best_x, best_m, evals = None, np.inf, 0
    for chunk in np.array_split(pts, max(1, len(pts) // 4096)):
        m, _ = float32_margin(run, prop, chunk)
        evals += len(chunk)
        i = int(np.argmin(m))
        if m[i] < best_m:
            best_x, best_m = chunk[i], float(m[i])
    if best_m <= 0 or restarts <= 0:
        return AttackResult(best_x, best_m, evals)
    starts = np.concatenate([((lo + hi) / 2)[None], lo + rng.random((restarts, lo.size)) * (hi - lo)])
    xs, ms = pgd(run, prop, lo, hi, starts, steps, int_mask, deadline)
    evals += len(starts) * (steps + 1)
    i = int(np.argmin(ms))
    if ms[i] < best_m:
        best_x, best_m = xs[i], float(ms[i])
    if best_m <= 0 or odi_restarts <= 0 or (deadline is not None and time.monotonic() > deadline):
        return AttackResult(best_x, best_m, evals)
    xs, ms = odi_pgd(run, prop, lo, hi, odi_restarts, 20, odi_steps, rng, int_mask, deadline)
    evals += odi_restarts * (odi_steps + 21)
    i = int(np.argmin(ms))
    if ms[i] < best_m:
        best_x, best_m = xs[i], float(ms[i])
    return AttackResult(best_x, best_m, evals)
