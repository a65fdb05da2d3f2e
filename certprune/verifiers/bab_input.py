"""Input splitting: pick the input dimension with the largest smear score and bisect it.

Score of dimension i in a domain: ``sum over live spec rows of |lam_x[row, i]| * width_i`` (the
amount the CROWN bound loses to the box's extent along i), plus a tiny width term so that a
splittable dimension is always chosen. Integer inputs split at integer points: ``[lo, v]`` and
``[v + 1, hi]`` with ``v = floor(mid)``; they are splittable only while they hold two integers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from certprune.verifiers.domains import timed_batch


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


# ---------------------------------------------------------------------------------------------
# Batched input splitting on tensors: the first phase of input branch and bound.
# ---------------------------------------------------------------------------------------------

@dataclass
class BoxSearchOutcome:
    """``status``: 'certified', 'falsified' (``x`` confirmed float32 point), 'timeout', or 'handoff'
    (``left`` holds the boxes (lo, hi, alive, depth) the exact loop must finish: ReLUs all stable
    but not refuted, no dimension left to split, or the input depth exhausted)."""

    status: str
    x: np.ndarray | None = None
    left: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    stats: dict = field(default_factory=dict)


def box_bounds(net, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, c: torch.Tensor, iters: int = 0,
               target: torch.Tensor | None = None):
    """(lower (N, m) of ``C y + c``, lam_x (N, m, n_in), unstable ReLU count (N,)) on N boxes of
    a graph: the search's own bound (``bounds.engine.domain_bounds``: CROWN layer bounds
    intersected with their interval image, no ReLU splits; ``iters`` > 0: alpha-CROWN slopes
    optimised towards ``target``, and then ``lower`` may exceed the minimum of the CROWN linear
    bound ``lam_x`` over the box)."""
    from certprune.bounds.engine import domain_bounds

    n = lo.shape[0]
    db = domain_bounds(net, lo, hi, [torch.zeros(n, k, dtype=torch.int8) for k in net.relu_sizes], C, c,
                       iters, target)
    return db.lower, db.lam_x, db.unstable_count()


def box_search(net, spec, lo: np.ndarray, hi: np.ndarray, alive: np.ndarray, int_mask: np.ndarray | None,
               confirm, deadline: float | None, *, batch: int = 2048, max_depth: int = 64,
               attack: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
               pending_cap: int = 1_000_000, handoff_unstable: int = 0, alpha_iters: int = 0, alpha_after: int = 0, progress: Callable[[dict], None] | None = None) -> BoxSearchOutcome:
    """Input splitting with every box kept in tensors (no per-box Python objects) and look-ahead
    branching. Every queued box is already bounded. A step pops up to ``batch / (2 n_in)`` boxes
    (the lowest keys first; the newest, depth-first, once ``pending_cap`` boxes are queued; fewer
    when the measured bounding time would make a step last over ~0.5 s or a tenth of the time
    left), bisects each along EVERY splittable input, bounds all those children at once
    (:func:`box_bounds`) and keeps, per box, the pair of children of the best dimension: the one
    whose worse child gains most over the parent's bound, then the larger total gain (keys and
    gains capped at 0: CROWN is not monotone), and where no split gains, the relatively widest
    input. (The smear score :func:`choose_input_dims` ranks dimensions by the final linear bound
    only and, on ACAS Xu property 1, kept bisecting one angle while the unstable ReLUs came from
    the others.) Children whose disjuncts are all refuted are dropped; the centers and CROWN
    primal vertices of all children are confirmed on the float32 model; about once a second
    ``attack`` (PGD) runs inside the 32 lowest-key boxes. Boxes whose ReLUs are all stable (the
    bound is then exact up to rounding, and the primal vertex was tried) or with at most
    ``handoff_unstable`` unstable ReLUs (ReLU splits and LP leaves finish them), with no
    splittable input, or at ``max_depth`` are handed back for the exact loop. ``alpha_iters`` > 0
    bounds every box with alpha-CROWN once ``alpha_after`` boxes were bounded with plain CROWN (easy
    instances, e.g. ACAS Xu property 1, close faster without it) (that many Adam steps on the lower ReLU slopes, stopping
    early once every row clears its margin): on the frontier of ACAS Xu 3_3 / property 2 ten steps
    refuted 184 of 1,174 open boxes CROWN left open and moved the median bound from -0.017 to
    -0.005, for ~1.5x the time per box; it closed 3_3 / 4_2 property 2 and 1_1 property 5,
    which plain CROWN left open (README, ACAS Xu)."""
    dt = torch.float64
    n_in = len(lo)
    lo_t, hi_t = torch.as_tensor(lo, dtype=dt), torch.as_tensor(hi, dtype=dt)
    imask = None if int_mask is None or not int_mask.any() else torch.as_tensor(int_mask)
    left: list[tuple] = []
    stats = {"box_domains": 0, "box_steps": 0, "box_max_depth": 0, "box_attacks": 0, "box_handoff": 0}
    last_attack = last_report = time.monotonic()
    P = None  # queued boxes: (lo, hi, alive, depth, key)
    per_box = None  # seconds per bounded box, measured

    def finish(status, x=None):
        res_left = None
        if left:
            res_left = tuple(torch.cat(t) for t in zip(*left))
            stats["box_handoff"] = int(res_left[0].shape[0])
            if status == "certified":
                status = "handoff"
        stats["box_pending"] = 0 if P is None else int(P[0].shape[0])
        return BoxSearchOutcome(status, x, res_left, stats)

    def bound(b_lo, b_hi, b_alive, b_depth):
        """Bound boxes, confirm their points; returns (alive, keys, unstable) or a found point."""
        iters = alpha_iters if stats["box_domains"] >= alpha_after else 0
        lower, lam_x, unstable = box_bounds(net, b_lo, b_hi, spec.C, spec.c, iters, spec.tol)
        stats["box_domains"] += len(b_lo)
        stats["box_max_depth"] = max(stats["box_max_depth"], int(b_depth.max()))
        b_alive = b_alive & ~(spec.disjunct_max(lower - spec.tol) > 0)
        row_live = b_alive[:, spec.row_disjunct]
        lb = torch.where(row_live, lower, torch.full_like(lower, torch.inf))
        lam = lam_x[torch.arange(len(b_lo)), lb.argmin(dim=1)]
        open_ = b_alive.any(1)
        pts = torch.cat([((b_lo + b_hi) / 2)[open_], torch.where(lam > 0, b_lo, b_hi)[open_]]).numpy()
        if imask is not None:
            pts = np.where(int_mask, np.clip(np.round(pts), np.ceil(lo), np.floor(hi)), pts)
        found = confirm(pts) if len(pts) else None
        disj_lb = spec.disjunct_max(lower)
        keys = torch.where(b_alive, disj_lb, torch.full_like(disj_lb, torch.inf)).min(dim=1).values
        return found, b_alive, keys, unstable

    def enqueue(b_lo, b_hi, b_alive, b_depth, keys, unstable, splittable):
        nonlocal P
        open_ = b_alive.any(1)
        done = open_ & ((unstable <= handoff_unstable) | (b_depth >= max_depth) | ~splittable)
        if bool(done.any()):
            left.append((b_lo[done], b_hi[done], b_alive[done], b_depth[done]))
        go = open_ & ~done
        new = (b_lo[go], b_hi[go], b_alive[go], b_depth[go], keys[go])
        P = new if P is None else tuple(torch.cat([a, b]) for a, b in zip(P, new))

    def can_split(b_lo, b_hi):
        """(N, n_in) splittable dims and split values (integers at floor(mid), right child from +1)."""
        ok, mid = b_hi > b_lo, (b_lo + b_hi) / 2
        if imask is not None:
            ok = torch.where(imask, torch.floor(b_hi) - torch.ceil(b_lo) >= 1, ok)
            mid = torch.where(imask, torch.floor(mid), mid)
        return ok, mid

    root_lo, root_hi = lo_t[None], hi_t[None]
    root_w = torch.where(hi_t > lo_t, hi_t - lo_t, torch.ones_like(hi_t))
    found, r_alive, r_key, r_unst = bound(root_lo, root_hi, torch.as_tensor(alive, dtype=torch.bool)[None],
                                          torch.zeros(1, dtype=torch.long))
    if found is not None:
        return finish("falsified", found)
    enqueue(root_lo, root_hi, r_alive, torch.zeros(1, dtype=torch.long), r_key, r_unst, can_split(root_lo, root_hi)[0].any(1))
    while P is not None and P[0].shape[0]:
        if deadline is not None and time.monotonic() > deadline:
            return finish("timeout")
        n = P[0].shape[0]
        k = timed_batch(max(1, batch // (2 * n_in)), None if per_box is None else 2 * n_in * per_box, deadline, 8)
        if n <= k:
            take = torch.arange(n)
        elif n > pending_cap:
            take = torch.arange(n - k, n)
        else:
            take = torch.topk(P[4], k, largest=False).indices
        keep = torch.ones(n, dtype=torch.bool)
        keep[take] = False
        b_lo, b_hi, b_alive, b_depth, b_key = (t[take] for t in P)
        P = tuple(t[keep] for t in P)
        stats["box_steps"] += 1
        ok, mid = can_split(b_lo, b_hi)
        B = len(b_lo)
        eye = torch.eye(n_in, dtype=torch.bool)
        # children (B, n_in, 2, n_in): for dim i, left [lo, hi with hi_i = mid_i], right [lo_i = mid_i (+1)]
        c_lo = b_lo[:, None, None, :].expand(B, n_in, 2, n_in).clone()
        c_hi = b_hi[:, None, None, :].expand(B, n_in, 2, n_in).clone()
        shift = mid if imask is None else mid + imask.to(dt)
        c_hi[:, :, 0, :] = torch.where(eye, mid[:, None, :], c_hi[:, :, 0, :])
        c_lo[:, :, 1, :] = torch.where(eye, shift[:, None, :], c_lo[:, :, 1, :])
        sel = ok[:, :, None].expand(B, n_in, 2)  # only splittable dims are bounded
        f_lo, f_hi = c_lo[sel], c_hi[sel]
        f_alive = b_alive[:, None, None, :].expand(B, n_in, 2, b_alive.shape[1])[sel]
        f_depth = (b_depth + 1)[:, None, None].expand(B, n_in, 2)[sel]
        t0 = time.monotonic()
        found, f_alive, f_key, f_unst = bound(f_lo, f_hi, f_alive, f_depth)
        per_box = (time.monotonic() - t0) / max(len(f_lo), 1)
        if found is not None:
            return finish("falsified", found)
        key = torch.full((B, n_in, 2), -torch.inf, dtype=dt)
        key[sel] = f_key
        # gain of each child over its parent, keys capped at 0 (a refuted child gains all) and
        # gains at 0 (CROWN is not monotone: a child can bound worse): the worse child first, the
        # sum second; where no split gains (a plateau), the relatively widest input wins
        parent = b_key.clamp(max=0.0)[:, None, None]
        gain = (key.clamp(max=0.0) - parent).clamp(min=0.0)
        rel = (b_hi - b_lo) / root_w
        score = gain.min(dim=2).values + gain.sum(dim=2) + 1e-3 * (1 + parent.abs().clamp(max=1e6))[:, :, 0] * rel
        score = torch.where(ok, score, torch.full((B, n_in), -torch.inf, dtype=dt))
        best = score.argmax(dim=1)  # every popped box has a splittable dim (enqueue checked)
        pick = torch.zeros(B, n_in, 2, dtype=torch.bool)
        pick[torch.arange(B), best] = True
        chosen = pick[sel]
        c_lo2, c_hi2 = f_lo[chosen], f_hi[chosen]
        enqueue(c_lo2, c_hi2, f_alive[chosen], f_depth[chosen], f_key[chosen], f_unst[chosen],
                can_split(c_lo2, c_hi2)[0].any(1))
        if attack is not None and P is not None and P[0].shape[0] and time.monotonic() - last_attack > 1.0:
            order = torch.argsort(P[4])[:32]
            found = confirm(attack(P[0][order].numpy(), P[1][order].numpy()))
            stats["box_attacks"] += 1
            last_attack = time.monotonic()
            if found is not None:
                return finish("falsified", found)
        if progress is not None and time.monotonic() - last_report > 0.5 and P is not None:
            progress({"phase": "bab", "domains": int(P[0].shape[0]),
                      "bound": float(P[4].min()) if P[0].shape[0] else None, "processed": stats["box_domains"]})
            last_report = time.monotonic()
    return finish("certified")
