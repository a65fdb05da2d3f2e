"""Branch and bound over domains (input boxes + ReLU splits) until every sub-problem is decided.

ONE loop (:func:`search.run_search`, the loop of every search, fairness's included, over the
frontier ``domains.Frontier``: a struct of arrays, best-first with a LIFO cap) serves both
strategies; each domain carries the branching rule chosen when it was bounded:
- ``LOOKAHEAD`` (input strategy, ``box_batch`` > 0): bisect along every splittable input, bound
  all children at once, keep the best pair (``bab_input.lookahead_children`` / ``lookahead_pick``);
  ``INPUT`` (``box_batch`` = 0, and fractional integers of LP leaves): bisect the input with the
  best smear score (``bab_input.choose_input_dims``). A domain switches (hands off) to ReLU
  splitting once it has ``relu_switch_unstable`` or fewer unstable neurons, no splittable input,
  or its input depth reaches ``max_input_depth`` (boxes touching a ReLU's hyperplane never become
  stable by bisection).
- ``RELU`` (relu strategy, and after the hand-off): split the unstable neuron with the best
  BaBSR-style score or filtered smart branching (``bab_relu``).
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

from certprune.bounds.engine import DomainBounds, domain_bounds
from certprune.graph import Graph
from certprune.graph.encode import encoding_exact
from certprune.results import Verdict
from certprune.verifiers.bab_input import choose_input_dims, lookahead_children, lookahead_pick
from certprune.verifiers.bab_relu import choose_relus, choose_relus_fsb, split_relus
from certprune.verifiers.domains import INPUT, LOOKAHEAD, RELU, Frontier, outward32, rows_where, timed_batch
from certprune.verifiers.lp_leaf import solve_leaf
from certprune.verifiers.search import run_search

WARM_MAX_VALUES = 1 << 16  # warm starts kept where spec rows x ReLU neurons is at most this (2 x 256 KB float32
# per queued domain; mnist_fc 256x6: 9 x 1536)
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
    """``status``: CERTIFIED, FALSIFIED (``x`` is the confirmed float32 point) or UNKNOWN."""

    status: Verdict
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
    box_batch: int = 0  # input strategy: children per step under the look-ahead rule (0 = smear score rule)
    branch_candidates: int = 1  # ReLU splits: filtered smart branching among this many (1 = BaBSR score only)
    box_alpha_iters: int = 0  # alpha-CROWN steps per split-free box under look-ahead (0 = plain CROWN)
    box_alpha_after: int = 0  # ... once this many split-free boxes were bounded with plain CROWN
    lookahead_queue_cap: int = 1_000_000  # the frontier's best-first cap under look-ahead (queue_cap otherwise)
    milp_after: int = 0  # ReLU branching: domains bounded before any goes to the MILP leaf (where branching
    # is cheap, e.g. mnist_fc 256x2 prop_6/0.03: 117 domains in 1 s against 27 s of MILPs, it decides first)
    warm_start: bool = True  # ReLU branching with interm_reuse: alpha/beta start from the parent's last iterate
    interm_reuse: bool = True  # ReLU branching: children start from the parent's ReLU input bounds, bounded
    # in groups by split layer, without a CROWN pass up to it (False: every layer afresh)


@dataclass
class Bounded:
    """Domains just bounded: their frontier columns (``alive`` already minus what the bounds
    refuted; no ``rule``/``idx``/``value`` yet), the bounds, the live spec rows and the keys."""

    rows: dict[str, torch.Tensor]
    db: DomainBounds
    row_live: torch.Tensor
    keys: torch.Tensor

    def subset(self, mask: torch.Tensor) -> "Bounded":
        db = self.db
        sub = DomainBounds(db.lower[mask], [(l[mask], u[mask]) for l, u in db.pre], db.infeasible[mask],
                           db.lam_x[mask], [s[mask] for s in db.relu_scores],
                           None if db.params is None else (db.params[0][mask], db.params[1][mask]))
        return Bounded(rows_where(self.rows, mask), sub, self.row_live[mask], self.keys[mask])


class BranchAndBound:
    """State of one search; call :meth:`run` once (or :meth:`step` after bounding the root, in tests)."""

    def __init__(self, net: Graph, spec: Spec, lo: np.ndarray, hi: np.ndarray,
                 int_mask: np.ndarray | None, confirm: Confirm, settings: BabSettings, deadline: float | None,
                 attack: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                 progress: Callable[[dict], None] | None = None,
                 root_attack: Callable[[], np.ndarray] | None = None,
                 prior: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.net, self.spec, self.settings, self.deadline = net, spec, settings, deadline
        self.prior = prior  # fixed ReLU input bounds of the root box (verifiers.refine), kept by every domain
        self.lo = torch.as_tensor(lo, dtype=torch.float64)
        self.hi = torch.as_tensor(hi, dtype=torch.float64)
        self.int_mask = None if int_mask is None or not int_mask.any() else torch.as_tensor(int_mask)
        self.confirm = confirm
        self.sizes = net.relu_sizes
        # the MILP leaf trusts HiGHS on the encoder's rows: only where they are the model's own
        # weights (no float64 products of composed layers; graph.encode.rows_copied)
        self.milp_usable = settings.milp_max_unstable > 0 and encoding_exact(net)
        self.lookahead = settings.strategy == "input" and settings.box_batch > 0
        cap = settings.lookahead_queue_cap if self.lookahead else settings.queue_cap
        # ReLU branching keeps each queued domain's ReLU input bounds for its children (``_bound``)
        self.keep_pre = settings.strategy == "relu" and settings.interm_reuse and bool(self.sizes)
        # ... and its last alpha/beta iterate, the children's starting point (where it is small)
        m = spec.C.shape[0]
        self.keep_params = (self.keep_pre and settings.warm_start and settings.optimize_iters > 0
                            and m * sum(self.sizes) <= WARM_MAX_VALUES)
        self.frontier = Frontier(cap, len(self.lo), sum(self.sizes), spec.num_disjuncts, pre=self.keep_pre,
                                 params_rows=m if self.keep_params else 0)
        self.root_width = torch.where(self.hi > self.lo, self.hi - self.lo, torch.ones_like(self.hi))
        self.stats = {"domains": 0, "lp_leaves": 0, "unresolved_leaves": 0, "max_depth": 0,
                      "input_splits": 0, "relu_splits": 0, "lookahead_splits": 0, "box_domains": 0, "handoffs": 0,
                      "time_bound": 0.0, "time_lp": 0.0}
        self.found: np.ndarray | None = None
        self.root_alive: np.ndarray | None = None  # the disjuncts open at the root (:meth:`run`)
        self.timed_out = False  # set when a domain was left unprocessed for lack of time
        self._per_child: dict[bool, float | None] = {True: None, False: None}  # seconds per child (look-ahead or not)
        self.attack = attack  # (lo (k, n), hi (k, n)) -> candidate points, or None
        self._last_attack = self._started = time.monotonic()
        self.root_attack = root_attack  # () -> candidate points of a fresh attack round on the root box
        self.progress = progress  # called about twice a second with the queue size and global bound
        self._last_progress = time.monotonic()

    def run(self, alive: np.ndarray) -> BabOutcome:
        """Search from the root box with the disjuncts ``alive`` still open, on the one search loop
        (:func:`search.run_search`): bound the root, then :meth:`step` until the frontier is
        empty, a point is confirmed or the time is up."""
        self.root_alive = np.asarray(alive)
        return run_search(self, self.deadline)

    def start(self, alive: np.ndarray | None = None) -> None:
        """Bound the root box and settle it (queue it, or decide it as a leaf); ``alive``: the
        disjuncts still open (default: those given to :meth:`run`)."""
        alive = self.root_alive if alive is None else alive
        root = {"lo": self.lo[None], "hi": self.hi[None],
                "splits": torch.zeros(1, sum(self.sizes), dtype=torch.int8),
                "alive": torch.as_tensor(np.asarray(alive), dtype=torch.bool)[None],
                "depth": torch.zeros(1, dtype=torch.long), "milp_tried": torch.zeros(1, dtype=torch.bool)}
        b = self._bound(root)
        if self.found is None:
            self._settle(b, from_lookahead=False)

    def pending(self) -> bool:
        return len(self.frontier) > 0

    def stopped(self) -> bool:
        return self.found is not None or self.timed_out

    def finish(self, timed_out: bool) -> BabOutcome:
        self.timed_out |= timed_out
        return self.run_result()

    def step(self) -> None:
        """One round of the loop: pop a batch of domains, branch each by its rule, bound and settle
        the children; about once a second an attack; progress."""
        rows = self._pop()
        t0 = time.monotonic()
        look = rows["rule"] == LOOKAHEAD
        if bool(look.any()):
            self._branch_lookahead(rows_where(rows, look))
        if bool((~look).any()) and self.found is None and not self.timed_out:
            self._branch_pairs(rows_where(rows, ~look))
        if self.found is None and t0 - self._last_attack > 1.0:
            self._attack()
        self._report()

    def _pop(self) -> dict[str, torch.Tensor]:
        """The next domains in frontier order, as many as fit one step's budget of children: the
        look-ahead's ``box_batch`` (2 n_in children per box) or twice ``batch`` (2 per domain),
        after the rule of the first one, shrunk by :func:`domains.timed_batch` (~0.5 s a step)."""
        n_in = len(self.lo)
        most = max(self.settings.box_batch // 2, self.settings.batch) if self.lookahead else self.settings.batch
        order = self.frontier.order(most)
        look = self.frontier.col("rule")[order] == LOOKAHEAD
        group = bool(look[0])
        cap, first = (self.settings.box_batch, 16 * n_in) if group else (2 * self.settings.batch, 32)
        budget = timed_batch(cap, self._per_child[group], self.deadline, first)
        cost = torch.where(look, 2 * n_in, 2)
        k = max(1, int((cost.cumsum(0) <= budget).sum()))
        return self.frontier.take(order[:k])

    def _branch_lookahead(self, rows: dict[str, torch.Tensor]) -> None:
        """Look-ahead rule: bound the children along every splittable input, keep the best pair per box."""
        t0 = time.monotonic()
        c_lo, c_hi, sel = lookahead_children(rows["lo"], rows["hi"], self.int_mask)
        if not bool(sel[:, :, 0].any(1).all()):
            raise RuntimeError("look-ahead rule on a box without a splittable input")  # _settle never queues one
        B, n, _ = sel.shape

        def expand(v: torch.Tensor) -> torch.Tensor:
            return v[:, None, None].expand(B, n, 2, *v.shape[1:])[sel]
        kids = {"lo": c_lo, "hi": c_hi, "splits": expand(rows["splits"]), "alive": expand(rows["alive"]),
                "depth": expand(rows["depth"] + 1), "milp_tried": expand(rows["milp_tried"])}
        self.stats["lookahead_splits"] += B
        self.stats["input_splits"] += B
        b = self._bound(kids)
        # the batch is sized on the bounding time alone (the LP leaves that follow vary widely;
        # counting them made the batches smaller and the hard ACAS Xu instances ~5-10 % slower)
        self._per_child[True] = (time.monotonic() - t0) / len(c_lo)
        if self.found is None:
            keep = lookahead_pick(rows["key"], b.keys, sel, rows["lo"], rows["hi"], self.root_width)
            self._settle(b.subset(keep), from_lookahead=True)

    def _branch_pairs(self, rows: dict[str, torch.Tensor]) -> None:
        """Input rule (bisect input ``idx`` at ``value``) and ReLU rule (neuron ``idx`` active /
        inactive): two children per domain, bounded together; with ``keep_pre`` and ReLU splits
        only, in groups by the split neuron's layer (each group skips the CROWN passes up to it)."""
        t0 = time.monotonic()
        inp = rows["rule"] == INPUT
        lo, hi, splits, idx = rows["lo"], rows["hi"], rows["splits"], rows["idx"]
        r = torch.nonzero(inp).squeeze(1)
        hi_a, lo_b = hi.clone(), lo.clone()
        hi_a[r, idx[r]] = rows["value"][r]
        step = torch.zeros(len(r), dtype=lo.dtype) if self.int_mask is None else self.int_mask[idx[r]].to(lo.dtype)
        lo_b[r, idx[r]] = rows["value"][r] + step
        sp_a, sp_b = splits.clone(), splits.clone()
        q = torch.nonzero(~inp).squeeze(1)
        if len(q):
            sp_a[q], sp_b[q] = split_relus(splits[q], idx[q])
        self.stats["input_splits"] += len(r)
        self.stats["relu_splits"] += len(q)
        two = lambda v: torch.cat([v, v])  # noqa: E731
        kids = {"lo": torch.cat([lo, lo_b]), "hi": torch.cat([hi_a, hi]), "splits": torch.cat([sp_a, sp_b]),
                "alive": two(rows["alive"]), "depth": two(rows["depth"] + 1), "milp_tried": two(rows["milp_tried"])}
        groups: list[tuple[torch.Tensor | slice, int]] = [(slice(None), -1)]
        if self.keep_pre:
            kids["pre_lo"], kids["pre_hi"] = two(rows["pre_lo"]), two(rows["pre_hi"])
            if self.keep_params:
                kids["alpha"], kids["beta"] = two(rows["alpha"]), two(rows["beta"])
            if not len(r):  # ReLU splits only: the layers up to the split one are unchanged (``_bound``)
                layer = two(torch.searchsorted(torch.tensor(self.sizes).cumsum(0), idx, right=True))
                groups = [(layer == j, int(j)) for j in torch.unique(layer)]
        for sel, upto in groups:
            b = self._bound(rows_where(kids, sel), upto)
            if self.found is not None:
                break
            self._settle(b, from_lookahead=False)
            if self.found is not None or self.timed_out:
                break
        self._per_child[False] = (time.monotonic() - t0) / (2 * len(lo))

    def _bound(self, rows: dict[str, torch.Tensor], reuse_upto: int = -1) -> Bounded:
        """Bound the domains (split-free boxes under look-ahead with ``box_alpha_iters`` alpha steps
        once ``box_alpha_after`` were bounded; ReLU-split domains with ``optimize_iters``
        alpha/beta steps), drop refuted disjuncts, try the candidate points. With ``pre_lo`` /
        ``pre_hi`` in ``rows`` (the parents' ReLU input bounds, valid on the sub-domains) those
        are intersected in and the ReLU layers ``<= reuse_upto`` take them without a CROWN pass
        (``domain_bounds``); the new bounds go back into ``rows`` for the children to come."""
        t0 = time.monotonic()
        lo, hi, splits = rows["lo"], rows["hi"], rows["splits"]
        split_free = not bool((splits != 0).any())
        iters = 0 if split_free else self.settings.optimize_iters
        if split_free and self.lookahead and self.stats["box_domains"] >= self.settings.box_alpha_after:
            iters = self.settings.box_alpha_iters
        parent = None
        if "pre_lo" in rows:
            parent = list(zip(self._layer_splits(rows["pre_lo"].double()), self._layer_splits(rows["pre_hi"].double())))
        warm = (rows["alpha"].double(), rows["beta"].double()) if "alpha" in rows else None
        db = domain_bounds(self.net, lo, hi, self._layer_splits(splits), self.spec.C, self.spec.c, iters,
                           self.spec.tol, self.deadline, prior=self.prior, parent=parent, reuse_upto=reuse_upto,
                           warm=warm, keep_params=self.keep_params)
        if self.keep_pre:
            rows = {**rows}
            if self.keep_params:
                rows["alpha"], rows["beta"] = db.params[0].float(), db.params[1].float()
            rows["pre_lo"], rows["pre_hi"] = outward32(torch.cat([l for l, _ in db.pre], 1),
                                                       torch.cat([u for _, u in db.pre], 1))
        self.stats["domains"] += len(lo)
        self.stats["box_domains"] += len(lo) if split_free and self.lookahead else 0
        self.stats["max_depth"] = max(self.stats["max_depth"], int(rows["depth"].max()))
        refuted = self.spec.disjunct_max(db.lower - self.spec.tol) > 0
        alive = rows["alive"] & ~refuted & ~db.infeasible.unsqueeze(1)
        row_live = alive[:, self.spec.row_disjunct]
        disj_lb = self.spec.disjunct_max(db.lower)
        keys = torch.where(alive, disj_lb, torch.full_like(disj_lb, torch.inf)).min(dim=1).values
        self._try_points(db, lo, hi, row_live, alive.any(1) & ~db.infeasible)
        self.stats["time_bound"] += time.monotonic() - t0
        return Bounded({**rows, "alive": alive}, db, row_live, keys)

    def _settle(self, b: Bounded, from_lookahead: bool) -> None:
        """Decide each open bounded domain's fate: all ReLUs stable -> LP leaf; few unstable under
        ReLU branching (or input depth exhausted) -> MILP once; else queue it with its rule:
        look-ahead / smear-score input split while inputs are splittable, the input depth is left
        and more than ``relu_switch_unstable`` ReLUs are unstable (input strategy), a ReLU split
        otherwise (the hand-off, counted in ``handoffs`` when the parent was a look-ahead box)."""
        b = b.subset(b.rows["alive"].any(1) & ~b.db.infeasible)
        rows, st = b.rows, self.settings
        if not len(rows["depth"]):
            return
        unstable = b.db.unstable_count()
        in_dims, in_vals = choose_input_dims(b.db.lam_x, b.row_live, rows["lo"], rows["hi"], self.int_mask)
        input_open = (in_dims >= 0) & (rows["depth"] - (rows["splits"] != 0).sum(1) < st.max_input_depth)
        leaf = unstable == 0
        use_input = input_open & (unstable > st.relu_switch_unstable) if st.strategy == "input" else leaf & False
        # MILP: for ReLU splitting, and for input splitting once the input depth is exhausted
        # (with one or two unstable ReLUs left, splitting them and LP leaves are far cheaper)
        milp_ok = ~input_open if st.strategy == "input" else ~leaf
        milp = ~leaf & milp_ok & ~rows["milp_tried"] & (unstable <= st.milp_max_unstable)
        if (st.strategy == "relu" and self.stats["domains"] < st.milp_after) or not self.milp_usable:
            milp &= False
        # MILP domains get their ReLU split chosen too: one the MILP leaves open (time limit) is
        # queued back with this rule and index (``_milp``); choosing it there would run the
        # scoring once per such domain instead of once per batch
        relu = ~leaf & ~use_input
        rule = torch.where(use_input, LOOKAHEAD if self.lookahead else INPUT, RELU).to(torch.int8)
        idx = torch.where(use_input, in_dims, torch.full_like(in_dims, -1))
        if bool(relu.any()):
            idx[relu] = self._choose_relus(b.subset(relu))
        if from_lookahead:
            self.stats["handoffs"] += int(relu.sum())
        rows = {**rows, "key": b.keys, "rule": rule, "idx": idx,
                "value": torch.where(use_input, in_vals, torch.zeros_like(in_vals))}
        self.frontier.push(rows_where(rows, ~leaf & ~milp))
        for i in torch.nonzero(leaf | milp).squeeze(1).tolist():
            if self._out_of_time():
                self.timed_out = True
                return
            one, pre = rows_where(rows, slice(i, i + 1)), [(l[i], u[i]) for l, u in b.db.pre]
            self._leaf(one, pre) if bool(leaf[i]) else self._milp(one, pre)
            if self.found is not None:
                return

    def _choose_relus(self, b: Bounded) -> torch.Tensor:
        """The neuron to split per domain: BaBSR score, or filtered smart branching among the
        ``branch_candidates`` best under ReLU branching (``bab_relu``)."""
        k = self.settings.branch_candidates
        db, alive = b.db, b.rows["alive"]
        if k <= 1 or self.settings.strategy != "relu":
            return choose_relus(db.relu_scores, b.row_live, db.pre)

        def key_of(lower: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
            # the bound still missing over the live disjuncts: progress on any of them counts
            disj = self.spec.disjunct_max(lower - self.spec.tol)
            return torch.where(alive[owner], disj.clamp(max=0), torch.zeros_like(disj)).sum(dim=1)
        t0 = time.monotonic()
        idx = choose_relus_fsb(self.net, b.rows["lo"], b.rows["hi"], db.pre, db.relu_scores, b.row_live,
                               self.spec.C, self.spec.c, key_of, k)
        self.stats["time_fsb"] = self.stats.get("time_fsb", 0.0) + time.monotonic() - t0
        return idx

    def _attack(self) -> None:
        """About once a second: PGD inside the 32 lowest-key queued boxes (input rules), where a
        violation is most likely. When only ReLU domains are queued, a fresh ``root_attack`` round
        runs instead, while attacks have taken under a tenth of the search time."""
        t0 = time.monotonic()
        f = self.frontier
        boxes = f.col("rule") != RELU
        spent = self.stats.get("time_bab_attack", 0.0)
        if bool(boxes.any()) and self.attack is not None:
            keys = torch.where(boxes, f.col("key"), torch.full_like(f.col("key"), torch.inf))
            top = torch.topk(keys, min(32, int(boxes.sum())), largest=False).indices
            self.found = self.confirm(self.attack(f.col("lo")[top].numpy(), f.col("hi")[top].numpy()))
            self.stats["bab_attacks"] = self.stats.get("bab_attacks", 0) + 1
        elif not bool(boxes.any()) and self.root_attack is not None and spent < 0.1 * (t0 - self._started):
            self.found = self.confirm(self.root_attack())
            self.stats["bab_root_attacks"] = self.stats.get("bab_root_attacks", 0) + 1
        self.stats["time_bab_attack"] = spent + time.monotonic() - t0
        self._last_attack = time.monotonic()

    def _report(self) -> None:
        """Tell ``progress`` the queue size and the global lower bound (min key; > 0 means refuted)."""
        if self.progress is not None and time.monotonic() - self._last_progress > 0.5:
            self.progress({"phase": "bab", "domains": len(self.frontier), "bound": self.frontier.min_key(),
                           "processed": self.stats["domains"]})
            self._last_progress = time.monotonic()

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def run_result(self) -> BabOutcome:
        """The outcome once the search stopped (found, out of time, or frontier empty)."""
        if self.found is not None:
            return BabOutcome(Verdict.FALSIFIED, self.found, self._final_stats("falsified"))
        if self.timed_out:
            return BabOutcome(Verdict.UNKNOWN, stats=self._final_stats("timeout"))
        if self.stats["unresolved_leaves"]:
            why = "an LP leaf optimum not confirmed in float32 (rounding, or on a strict comparison's boundary)"
            return BabOutcome(Verdict.UNKNOWN, stats=self._final_stats(why))
        return BabOutcome(Verdict.CERTIFIED, stats=self._final_stats("all domains refuted"))

    def _final_stats(self, reason: str) -> dict:
        s = dict(self.stats)
        s["reason"] = reason
        s["queue_left"] = len(self.frontier)
        return s

    def _layer_splits(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(flat, self.sizes, dim=1)) if self.sizes else []

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

    def _np_leaf_args(self, row: dict[str, torch.Tensor], pre):
        """(lo, hi, per-layer splits, pre-activation bounds) of one domain as numpy arrays."""
        sp = [s.numpy() for s in torch.split(row["splits"][0], self.sizes)] if self.sizes else []
        return row["lo"][0].numpy(), row["hi"][0].numpy(), sp, [(l.numpy(), u.numpy()) for l, u in pre]

    def _disjunct_tol(self, k: int) -> float:
        """The one margin an exact leaf may use for disjunct ``k``: the largest of its rows' (a
        point refuted with it is refuted under every row's own margin; rows differ under
        ``--semantics float32``, whose per-row tau the smallest would drop)."""
        return float(self.spec.tol[self.spec.row_disjunct == k].max())

    def _milp(self, row: dict[str, torch.Tensor], pre) -> None:
        """Few unstable ReLUs left: try the exact MILP per live disjunct; queue back what stays open."""
        from certprune.verifiers.milp_leaf import solve_milp

        t0 = time.monotonic()
        self.stats["milp_calls"] = self.stats.get("milp_calls", 0) + 1
        lo, hi, sp, pre_np = self._np_leaf_args(row, pre)
        still = row["alive"][0].clone()
        for k in np.flatnonzero(still.numpy()):
            limit = self.settings.milp_time_limit
            if self.deadline is not None:
                limit = min(limit, self.deadline - time.monotonic())
            tol = self._disjunct_tol(k)
            out = solve_milp(self.net, lo, hi, pre_np, self.spec.A[k], self.spec.b[k], tol,
                             limit, None if self.int_mask is None else self.int_mask.numpy(), sp)
            if out.status == "refuted":
                still[k] = False
            elif out.status == "candidate":
                self.found = self.confirm(out.x[None])
                if self.found is not None:
                    break
        self.stats["time_milp"] = self.stats.get("time_milp", 0.0) + time.monotonic() - t0
        if self.found is None and bool(still.any()):
            self.frontier.push({**row, "alive": still[None], "milp_tried": torch.ones(1, dtype=torch.bool)})

    def _leaf(self, row: dict[str, torch.Tensor], pre) -> None:
        """All ReLUs stable: decide each live disjunct by an LP; branch on fractional integers."""
        t0 = time.monotonic()
        self.stats["lp_leaves"] += 1
        lo, hi, sp, pre_np = self._np_leaf_args(row, pre)
        still = row["alive"][0].clone()
        for k in np.flatnonzero(still.numpy()):
            remaining = 60.0 if self.deadline is None else self.deadline - time.monotonic()
            tol = self._disjunct_tol(k)
            out = solve_leaf(self.net, lo, hi, pre_np, sp, self.spec.A[k], self.spec.b[k], tol,
                             remaining, None if self.int_mask is None else self.int_mask.numpy())
            if out.status == "refuted":
                still[k] = False
            elif out.status == "fractional":
                self.frontier.push({**row, "alive": still[None], "rule": torch.tensor([INPUT], dtype=torch.int8),
                                    "idx": torch.tensor([out.dim]), "value": torch.tensor([float(np.floor(out.value))],
                                                                                         dtype=torch.float64),
                                    "milp_tried": torch.zeros(1, dtype=torch.bool)})
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
