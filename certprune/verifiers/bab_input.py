"""Input splitting: pick the input dimension with the largest smear score and bisect it.

Score of dimension i in a domain: ``sum over live spec rows of |lam_x[row, i]| * width_i`` (the
amount the CROWN bound loses to the box's extent along i), plus a tiny width term so that a
splittable dimension is always chosen. Integer inputs split at integer points: ``[lo, v]`` and
``[v + 1, hi]`` with ``v = floor(mid)``; they are splittable only while they hold two integers.
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
    ok = width > 0
    mid = (lo + hi) / 2
    if int_mask is not None:
        ok = torch.where(int_mask, torch.floor(hi) - torch.ceil(lo) >= 1, ok)
        mid = torch.where(int_mask, torch.floor(mid), mid)
    score = torch.where(ok, score, torch.full_like(score, -1.0))
    dims = score.argmax(dim=1)
    dims = torch.where(ok.any(dim=1), dims, torch.full_like(dims, -1))
    return dims, mid.gather(1, dims.clamp(min=0).unsqueeze(1)).squeeze(1)


def split_box(lo: torch.Tensor, hi: torch.Tensor, dim: int, value: float, integer: bool):
    """The two child boxes of one flattened box split along ``dim`` at ``value``."""
    lo_l, hi_l, lo_r, hi_r = lo, hi.clone(), lo.clone(), hi
    hi_l[dim] = value
    lo_r[dim] = value + 1 if integer else value
    return (lo_l, hi_l), (lo_r, hi_r)
