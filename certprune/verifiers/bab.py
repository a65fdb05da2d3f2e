"""Branch and bound over domains (box + ReLU phases) until every sub-problem is decided.

One loop serves both strategies; only the branching rule differs:
- ``input``: bisect the input dimension with the best smear score (``bab_input``); a domain
  switches to ReLU splitting once it has few unstable neurons left or its input depth reaches
  ``max_input_depth`` (boxes touching a ReLU's hyperplane never become stable by bisection).
- ``relu``: split the unstable neuron with the best BaBSR-style score (``bab_relu``).
Domains are bounded in batches on the graph engine (``bounds.engine.domain_bounds``: CROWN with
interval-intersected intermediate bounds, splits clamped, alpha/beta-CROWN on ReLU-split
domains); a domain whose ReLUs are all stable is an exact LP leaf (``lp_leaf``); under ReLU
branching a domain with few unstable ReLUs is first handed to the MILP (``milp_leaf``), and
keeps branching if it stays open. Both leaves are built from the same graph IR
(``graph.encode``), so chains, residual adds, concats, convolutions and twin graphs take one
path. Fractional values of integer inputs in an LP optimum branch on that
input. Every candidate point (box centers, CROWN primal vertices, LP optima) is checked on the
float32 model by ``confirm``; only a confirmed point ends the search as a violation.
Without a deadline the search is complete on piecewise-linear networks, except that an LP
optimum which violates in exact arithmetic but not in float32 leaves the answer UNKNOWN.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from certprune.bounds.engine import domain_bounds
from certprune.graph import Graph
from certprune.verifiers.bab_input import choose_input_dims, split_box
from certprune.verifiers.bab_relu import choose_relus, choose_relus_fsb, split_relu
from certprune.verifiers.domains import Domain, DomainQueue, timed_batch
from certprune.verifiers.lp_leaf import solve_leaf

Confirm = Callable[[np.ndarray], "np.ndarray | None"]  # (N, n_in) -> first confirmed float32 point or None


@dataclass
class Spec:
    """The property's disjuncts stacked: bounds are on ``C y + c`` = ``A y - b`` row by row;
    ``row_disjunct[r]`` names the disjunct of row r, ``tol[r]`` its certification margin."""

    C: torch.Tensor
    c: torch.Tensor
    row_disjunct: torch.Tensor
    tol: torch.Tensor
    A: list[np.ndarray]
    b: list[np.ndarray]

    @property
    def num_disjuncts(self) -> int:
        return len(self.A)

    def disjunct_max(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, m) per-row values -> (N, D) max over each disjunct's rows."""
        out = torch.full((rows.shape[0], self.num_disjuncts), -torch.inf, dtype=rows.dtype)
        return out.scatter_reduce(1, self.row_disjunct.expand_as(rows), rows, reduce="amax")


@dataclass
class BabOutcome:
    """``status``: 'certified', 'falsified' (``x`` is the confirmed float32 point) or 'unknown'."""

    status: str
    x: np.ndarray | None = None
    stats: dict = field(default_factory=dict)


@dataclass
class BabSettings:
    """Knobs of the search (filled from VerifyConfig)."""

    strategy: str
    batch: int
    queue_cap: int
    max_input_depth: int
    relu_switch_unstable: int
    optimize_iters: int = 0
    milp_max_unstable: int = 0
    milp_time_limit: float = 5.0
    box_batch: int = 0  # input strategy: children per step of bab_input.box_search (0 = off)
    branch_candidates: int = 1  # ReLU splits: filtered smart branching among this many (1 = BaBSR score only)
    box_alpha_iters: int = 0  # alpha-CROWN steps per box in that search (0 = plain CROWN)
    box_alpha_after: int = 0  # ... once that search has bounded this many boxes


class BranchAndBound:
    """State of one search; call :meth:`run` once."""

    def __init__(self, net: Graph, spec: Spec, lo: np.ndarray, hi: np.ndarray,
                 int_mask: np.ndarray | None, confirm: Confirm, settings: BabSettings, deadline: float | None,
                 attack: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 progress: Callable[[dict], None] | None = None,
                 root_attack: Callable[[], np.ndarray] | None = None):
        self.net, self.spec, self.settings, self.deadline = net, spec, settings, deadline
        self.lo = torch.as_tensor(lo, dtype=torch.float64)
        self.hi = torch.as_tensor(hi, dtype=torch.float64)
        self.int_mask = None if int_mask is None or not int_mask.any() else torch.as_tensor(int_mask)
        self.confirm = confirm
        self.sizes = net.relu_sizes
        self.queue = DomainQueue(settings.queue_cap)
        self.stats = {"domains": 0, "lp_leaves": 0, "unresolved_leaves": 0, "max_depth": 0,
                      "input_splits": 0, "relu_splits": 0, "time_bound": 0.0, "time_lp": 0.0}
        self.found: np.ndarray | None = None
        self.timed_out = False  # set when a domain was left unprocessed for lack of time
        self._per_domain: float | None = None
        self.attack = attack  # (lo (k, n), hi (k, n)) -> candidate points, or None
        self._last_attack = self._started = time.monotonic()
        self.root_attack = root_attack  # () -> candidate points of a fresh attack round on the root box
        self.progress = progress  # called about twice a second with the queue size and global bound
        self._last_progress = time.monotonic()

    def _report(self) -> None:
        """Tell ``progress`` the queue size and the global lower bound (min key; > 0 means refuted)."""
        if self.progress is not None and time.monotonic() - self._last_progress > 0.5:
            self.progress({"phase": "bab", "domains": len(self.queue), "bound": self.queue.min_key(),
                           "processed": self.stats["domains"]})
            self._last_progress = time.monotonic()

    def _attack_boxes(self, batch: list[Domain]) -> None:
        """About once a second: PGD inside the boxes of the domains just popped (the lowest keys),
        where a violation is most likely. ReLU domains share the root box: there a fresh
        ``root_attack`` round runs instead, while attacks have taken under a tenth of the search time."""
        t0 = time.monotonic()
        boxes = [d for d in batch if d.branch[0] == "input"][:32]
        spent = self.stats.get("time_bab_attack", 0.0)
        if boxes and self.attack is not None:
            lo = torch.stack([d.lo for d in boxes]).numpy()
            hi = torch.stack([d.hi for d in boxes]).numpy()
            self.found = self.confirm(self.attack(lo, hi))
            self.stats["bab_attacks"] = self.stats.get("bab_attacks", 0) + 1
        elif not boxes and self.root_attack is not None and spent < 0.1 * (t0 - self._started):
            self.found = self.confirm(self.root_attack())
            self.stats["bab_root_attacks"] = self.stats.get("bab_root_attacks", 0) + 1
        self.stats["time_bab_attack"] = self.stats.get("time_bab_attack", 0.0) + time.monotonic() - t0
        self._last_attack = time.monotonic()

    def _batch_size(self) -> int:
        """Domains per step: the configured batch, shrunk so one step takes at most ~0.5 s and at
        most a tenth of the remaining time (keeps the deadline within a few percent)."""
        per_step = None if self._per_domain is None else 2 * self._per_domain  # two children per domain
        return timed_batch(self.settings.batch, per_step, self.deadline, 16)

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def run(self, alive: np.ndarray) -> BabOutcome:
        """Search from the root box with the disjuncts ``alive`` still open."""
        total = sum(self.sizes)
        if self.settings.strategy == "input" and self.settings.box_batch:
            first = self._box_phase(alive)  # batched input splitting; the loop below finishes its leftovers
            if first is not None:
                return first
        else:
            root = Domain(self.lo, self.hi, torch.zeros(total, dtype=torch.int8), torch.as_tensor(alive), 0, 0.0,
                          ("none", -1, 0.0))
            self._process([root])
        while len(self.queue) and self.found is None and not self.timed_out:
            if self._out_of_time():
                self.timed_out = True
                break
            batch = self.queue.pop_batch(self._batch_size())
            t0 = time.monotonic()
            self._process([c for d in batch for c in self._children(d)])
            self._per_domain = (time.monotonic() - t0) / (2 * len(batch))
            if self.found is None and t0 - self._last_attack > 1.0:
                self._attack_boxes(batch)
            self._report()
        return self.run_result()

    def run_result(self) -> BabOutcome:
        """The outcome once the search stopped (found, out of time, or queue empty)."""
        if self.found is not None:
            return BabOutcome("falsified", self.found, self._final_stats("falsified"))
        if self.timed_out:
            return BabOutcome("unknown", stats=self._final_stats("timeout"))
        if self.stats["unresolved_leaves"]:
            why = "an LP leaf optimum not confirmed in float32 (rounding, or on a strict comparison's boundary)"
            return BabOutcome("unknown", stats=self._final_stats(why))
        return BabOutcome("certified", stats=self._final_stats("all domains refuted"))

    def _box_phase(self, alive: np.ndarray) -> BabOutcome | None:
        """``bab_input.box_search`` on the root box: its outcome, or None after queueing the boxes
        it handed back (all ReLUs stable, or input depth exhausted) for the domain loop."""
        from certprune.verifiers.bab_input import box_search

        out = box_search(self.net, self.spec, self.lo.numpy(), self.hi.numpy(), np.asarray(alive),
                         None if self.int_mask is None else self.int_mask.numpy(), self.confirm, self.deadline,
                         batch=self.settings.box_batch, max_depth=self.settings.max_input_depth,
                         attack=self.attack, progress=self.progress,
                         handoff_unstable=self.settings.relu_switch_unstable,
                         alpha_iters=self.settings.box_alpha_iters, alpha_after=self.settings.box_alpha_after)
        self.stats.update(out.stats)
        self.stats["domains"] += out.stats["box_domains"]
        self.stats["input_splits"] += out.stats["box_steps"] and out.stats["box_domains"] // 2
        self.stats["max_depth"] = max(self.stats["max_depth"], out.stats["box_max_depth"])
        if out.status == "falsified":
            self.found = out.x
            return BabOutcome("falsified", out.x, self._final_stats("falsified"))
        if out.status in ("certified", "timeout"):
            self.timed_out = out.status == "timeout"
            return self.run_result()
        total = sum(self.sizes)
        lo, hi, al, depth = out.left
        self._process([Domain(lo[i], hi[i], torch.zeros(total, dtype=torch.int8), al[i], int(depth[i]), 0.0,
                              ("none", -1, 0.0)) for i in range(len(lo))])
        return None

    def _final_stats(self, reason: str) -> dict:
        s = dict(self.stats)
        s["reason"] = reason
        s["queue_left"] = len(self.queue)
        return s

    def _children(self, d: Domain) -> list[Domain]:
        kind, idx, value = d.branch
        if kind == "input":
            integer = self.int_mask is not None and bool(self.int_mask[idx])
            (l1, h1), (l2, h2) = split_box(d.lo, d.hi, idx, value, integer)
            self.stats["input_splits"] += 1
            return [Domain(l1, h1, d.splits, d.alive, d.depth + 1, d.key, d.branch, d.milp_tried),
                    Domain(l2, h2, d.splits, d.alive, d.depth + 1, d.key, d.branch, d.milp_tried)]
        a, b = split_relu(d.splits, idx)
        self.stats["relu_splits"] += 1
        return [Domain(d.lo, d.hi, a, d.alive, d.depth + 1, d.key, d.branch, d.milp_tried),
                Domain(d.lo, d.hi, b, d.alive, d.depth + 1, d.key, d.branch, d.milp_tried)]

    def _layer_splits(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(flat, self.sizes, dim=1)) if self.sizes else []

    def _process(self, doms: list[Domain]) -> None:
        """Bound the domains, try their candidate points, close or branch each one."""
        if not doms:
            return
        t0 = time.monotonic()
        lo = torch.stack([d.lo for d in doms])
        hi = torch.stack([d.hi for d in doms])
        splits = torch.stack([d.splits for d in doms])
        alive = torch.stack([d.alive for d in doms])
        db = domain_bounds(self.net, lo, hi, self._layer_splits(splits), self.spec.C, self.spec.c,
                           self.settings.optimize_iters if bool((splits != 0).any()) else 0, self.spec.tol,
                           self.deadline)
        self.stats["domains"] += len(doms)
        self.stats["max_depth"] = max(self.stats["max_depth"], max(d.depth for d in doms))
        refuted = self.spec.disjunct_max(db.lower - self.spec.tol) > 0
        alive = alive & ~refuted & ~db.infeasible.unsqueeze(1)
        row_live = alive[:, self.spec.row_disjunct]
        disj_lb = self.spec.disjunct_max(db.lower)
        keys = torch.where(alive, disj_lb, torch.full_like(disj_lb, torch.inf)).min(dim=1).values
        self._try_points(db, lo, hi, row_live, alive.any(1) & ~db.infeasible)
        self.stats["time_bound"] += time.monotonic() - t0
        if self.found is not None:
            return
        unstable = db.unstable_count()
        relu_idx = self._choose_relus(db, lo, hi, row_live, alive) if self.sizes else None
        in_dims, in_vals = choose_input_dims(db.lam_x, row_live, lo, hi, self.int_mask)
        for i, d in enumerate(doms):
            if not bool(alive[i].any()):
                continue
            n_relu = int((d.splits != 0).sum())
            input_open = int(in_dims[i]) >= 0 and d.depth - n_relu < self.settings.max_input_depth
            if int(unstable[i]) == 0:
                if self._out_of_time():
                    self.timed_out = True
                    return
                self._leaf(d, lo[i], hi[i], splits[i], alive[i], [(l[i], u[i]) for l, u in db.pre], float(keys[i]))
                if self.found is not None:
                    return
                continue
            use_input = (self.settings.strategy == "input" and input_open
                         and int(unstable[i]) > self.settings.relu_switch_unstable)
            # MILP: for ReLU splitting, and for input splitting once the input depth is exhausted
            # (with one or two unstable ReLUs left, splitting them and LP leaves are far cheaper)
            milp_ok = self.settings.strategy == "relu" or not input_open
            branch = ("input", int(in_dims[i]), float(in_vals[i])) if use_input else ("relu", int(relu_idx[i]), 0.0)
            dom = Domain(lo[i], hi[i], splits[i], alive[i], d.depth, float(keys[i]), branch, d.milp_tried)
            if milp_ok and not d.milp_tried and int(unstable[i]) <= self.settings.milp_max_unstable:
                if self._out_of_time():
                    self.timed_out = True
                    return
                self._milp(dom, [(l[i], u[i]) for l, u in db.pre])
                if self.found is not None:
                    return
                continue
            self.queue.push(dom)

    def _choose_relus(self, db, lo, hi, row_live, alive) -> torch.Tensor:
        """The neuron to split per domain: BaBSR score, or filtered smart branching among the
        ``branch_candidates`` best under ReLU branching (``bab_relu``)."""
        k = self.settings.branch_candidates
        if k <= 1 or self.settings.strategy != "relu":
            return choose_relus(db.relu_scores, row_live, db.pre)

        def key_of(lower: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
            # the bound still missing over the live disjuncts: progress on any of them counts
            disj = self.spec.disjunct_max(lower - self.spec.tol)
            return torch.where(alive[owner], disj.clamp(max=0), torch.zeros_like(disj)).sum(dim=1)
        t0 = time.monotonic()
        idx = choose_relus_fsb(self.net, lo, hi, db.pre, db.relu_scores, row_live, self.spec.C, self.spec.c,
                               key_of, k)
        self.stats["time_fsb"] = self.stats.get("time_fsb", 0.0) + time.monotonic() - t0
        return idx

    def _try_points(self, db, lo, hi, row_live, open_: torch.Tensor) -> None:
        """Check box centers and the CROWN primal vertex of each domain's worst live row."""
        if not bool(open_.any()):
            return
        lb = torch.where(row_live, db.lower, torch.full_like(db.lower, torch.inf))
        worst = lb.argmin(dim=1)
        lam = db.lam_x[torch.arange(len(lo)), worst]
        primal = torch.where(lam > 0, lo, hi)
        pts = torch.cat([((lo + hi) / 2)[open_], primal[open_]]).numpy()
        if self.int_mask is not None:
            m = self.int_mask.numpy()
            pts = np.where(m, np.clip(np.round(pts), np.ceil(self.lo.numpy()), np.floor(self.hi.numpy())), pts)
        self.found = self.confirm(pts)

    def _milp(self, d: Domain, pre) -> None:
        """Few unstable ReLUs left: try the exact MILP per live disjunct; push back what stays open."""
        from certprune.verifiers.milp_leaf import solve_milp

        t0 = time.monotonic()
        self.stats["milp_calls"] = self.stats.get("milp_calls", 0) + 1
        pre_np = [(l.numpy(), u.numpy()) for l, u in pre]
        sp = [s.numpy() for s in torch.split(d.splits, self.sizes)] if self.sizes else []
        still = d.alive.clone()
        for k in np.flatnonzero(d.alive.numpy()):
            limit = self.settings.milp_time_limit
            if self.deadline is not None:
                limit = min(limit, self.deadline - time.monotonic())
            tol = float(self.spec.tol[self.spec.row_disjunct == k].min())
            out = solve_milp(self.net, d.lo.numpy(), d.hi.numpy(), pre_np, self.spec.A[k], self.spec.b[k], tol,
                             limit, None if self.int_mask is None else self.int_mask.numpy(), sp)
            if out.status == "refuted":
                still[k] = False
            elif out.status == "candidate":
                self.found = self.confirm(out.x[None])
                if self.found is not None:
                    break
        self.stats["time_milp"] = self.stats.get("time_milp", 0.0) + time.monotonic() - t0
        if self.found is None and bool(still.any()):
            d.alive, d.milp_tried = still, True
            self.queue.push(d)

    def _leaf(self, d: Domain, lo, hi, splits, alive, pre, key: float) -> None:
        """All ReLUs stable: decide each live disjunct by an LP; branch on fractional integers."""
        t0 = time.monotonic()
        self.stats["lp_leaves"] += 1
        pre_np = [(l.numpy(), u.numpy()) for l, u in pre]
        sp = [s.numpy() for s in torch.split(splits, self.sizes)] if self.sizes else []
        still = alive.clone()
        for k in np.flatnonzero(alive.numpy()):
            remaining = 60.0 if self.deadline is None else self.deadline - time.monotonic()
            tol = float(self.spec.tol[self.spec.row_disjunct == k].min())
            out = solve_leaf(self.net, lo.numpy(), hi.numpy(), pre_np, sp, self.spec.A[k], self.spec.b[k], tol,
                             remaining, None if self.int_mask is None else self.int_mask.numpy())
            if out.status == "refuted":
                still[k] = False
            elif out.status == "fractional":
                branch = ("input", out.dim, float(np.floor(out.value)))
                self.queue.push(Domain(lo, hi, splits, still, d.depth, key, branch))
                break
            elif out.status == "candidate":
                self.found = self.confirm(out.x[None])
                if self.found is not None:
                    break
                self.stats["unresolved_leaves"] += 1
                still[k] = False
            else:
                self.stats["unresolved_leaves"] += 1
                still[k] = False
        self.stats["time_lp"] += time.monotonic() - t0
