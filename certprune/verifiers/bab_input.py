"""Input branching rules of the one branch-and-bound loop (``bab``): the smear score and the look-ahead.

Smear score (:func:`choose_input_dims`, rule ``INPUT``): pick the input dimension with the largest
score and bisect it. Score of dimension i in a domain: ``sum over live spec rows of |lam_x[row, i]| * width_i`` (the
amount the CROWN bound loses to the box's extent along i), plus a tiny width term so that a
splittable dimension is always chosen. Integer inputs split at integer points: ``[lo, v]`` and
``[v + 1, hi]`` with ``v = floor(mid)``; they are splittable only while they hold two integers.

Look-ahead (:func:`lookahead_children` + :func:`lookahead_pick`, rule ``LOOKAHEAD``): bisect a
box along EVERY splittable input, bound all those children at once and keep the pair of the
best dimension: the one whose worse child gains most over the parent's bound, then the larger
total gain (keys and gains capped at 0: CROWN is not monotone), and where no split gains, the
relatively widest input. (The smear score ranks dimensions by the final linear bound only and,
on ACAS Xu property 1, kept bisecting one angle while the unstable ReLUs came from the others.)
"""
from __future__ import annotations

import torch


def choose_input_dims(lam_x: torch.Tensor, row_live: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                      int_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per domain: (dimension to split, or -1 if none is splittable; split value). lam_x (N, m, n),
    row_live (N, m) bool, lo/hi (N, n)."""
    width = hi - lo
    score = (lam_x.abs() * row_live.unsqueeze(-1).to(lam_x.dtype)).sum(1) * width
    score = score + 1e-9 * width / (width.max(dim=1, keepdim=True).values + 1e-300)
    ok, mid = splittable(lo, hi, int_mask)
    score = torch.where(ok, score, torch.full_like(score, -1.0))
    dims = score.argmax(dim=1)
    dims = torch.where(ok.any(dim=1), dims, torch.full_like(dims, -1))
    return dims, mid.gather(1, dims.clamp(min=0).unsqueeze(1)).squeeze(1)


def splittable(lo: torch.Tensor, hi: torch.Tensor, int_mask: torch.Tensor | None):
    """(N, n) splittable dims and split values (integers at floor(mid), their right child from +1)."""
    ok, mid = hi > lo, (lo + hi) / 2
    if int_mask is not None:
        ok = torch.where(int_mask, torch.floor(hi) - torch.ceil(lo) >= 1, ok)
        mid = torch.where(int_mask, torch.floor(mid), mid)
    return ok, mid


def lookahead_children(lo: torch.Tensor, hi: torch.Tensor, int_mask: torch.Tensor | None):
    """Both children of B boxes along every splittable input: (c_lo, c_hi) of shape (K, n), with
    ``sel`` (B, n, 2) marking which of the (box, dim, side) slots they fill (K = sel.sum())."""
    B, n = lo.shape
    ok, mid = splittable(lo, hi, int_mask)
    eye = torch.eye(n, dtype=torch.bool)
    c_lo = lo[:, None, None, :].expand(B, n, 2, n).clone()
    c_hi = hi[:, None, None, :].expand(B, n, 2, n).clone()
    shift = mid if int_mask is None else mid + int_mask.to(lo.dtype)
    c_hi[:, :, 0, :] = torch.where(eye, mid[:, None, :], c_hi[:, :, 0, :])
    c_lo[:, :, 1, :] = torch.where(eye, shift[:, None, :], c_lo[:, :, 1, :])
    sel = ok[:, :, None].expand(B, n, 2)
    return c_lo[sel], c_hi[sel], sel


def lookahead_pick(parent_key: torch.Tensor, child_key: torch.Tensor, sel: torch.Tensor, lo: torch.Tensor,
                   hi: torch.Tensor, root_width: torch.Tensor) -> torch.Tensor:
    """(K,) bool: the two children kept per box among the K of :func:`lookahead_children`, whose
    keys are ``child_key`` (refuted children +inf); every box must have a splittable input."""
    B, n, _ = sel.shape
    key = torch.full((B, n, 2), -torch.inf, dtype=child_key.dtype)
    key[sel] = child_key
    parent = parent_key.clamp(max=0.0)[:, None, None]
    gain = (key.clamp(max=0.0) - parent).clamp(min=0.0)
    rel = (hi - lo) / root_width
    score = gain.min(dim=2).values + gain.sum(dim=2) + 1e-3 * (1 + parent.abs().clamp(max=1e6))[:, :, 0] * rel
    score = torch.where(sel[:, :, 0], score, torch.full((B, n), -torch.inf, dtype=score.dtype))
    pick = torch.zeros(B, n, 2, dtype=torch.bool)
    pick[torch.arange(B), score.argmax(dim=1)] = True
    return pick[sel]
