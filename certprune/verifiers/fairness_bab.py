"""Batched integer branch and bound that counts individuals, over the units of many partitions.

An *individual* is an integer point x of the domain; it is *unfair* when some x' of the domain
that differs from it on a protected feature (relaxed ones within delta, the others equal) gets the
other decision under the audit's semantics (below). A *unit* is an integer box U of the non-protected
features (the protected ones range over their domain) in one partition, with a mask of the
protected values v whose individuals (u, v), u in U, are still undecided. Per round, on a batch of
units taken largest first (open volume x scheduling weight, step 4):

1. units whose exact check costs at most ``enum_points`` forward passes (or that are single
   points) are enumerated: every point of U and of its relaxed neighbourhood under every protected
   value is decided under the audit's semantics (:meth:`TwinBab.decide_points`), which is exact
   per individual;
2. the others get one twin box per (value v, partner value w) and forward symbolic bounds
   (:mod:`twin_bounds`; the backward CROWN pass on top only while it closes enough boxes to pay
   for its time, :meth:`TwinBab._crown_on`): the individuals (U, v) are proven fair when every
   box of v is closed, proven unfair when the bounds fix decision(U, v) one way and decision(x')
   the other way for every x' of one box of v (every x in the box flips); boxes of units stalled at ``z3_depth``
   splits go to z3 on the reduced network (unsat closes a box);
3. candidate points (bound vertices, centres) are run in float32; validated flipping pairs are
   recorded as counterexamples (they close nothing: a partition with a pair is refined further);
4. units with open values are halved along the non-protected feature with the largest
   gradient x width score (FairQuant's rule, summed over the unit's twin boxes); the children are
   scheduled by open volume x a weight that discounts boxes straddling the decision boundary
   (:meth:`TwinBab._weight`: up to 10x; on GC-1 it halves the time to FairQuant's coverage).

When no relaxed attribute is given, one unordered box {v, w} serves both values (a box closed or
proving a flip counts for v and for w); with relaxed attributes the box (v, w) holds the
individuals (U, v) and partners x' that may leave U, so a closed box counts for v only, and a box
proving a flip proves (U, v) and also (U, w) unfair (every (u, w), u in U, is one of its x').

One semantics per audit (:class:`~certprune.semantics.Semantics`), for bounds and points alike:
``exact``: the real-arithmetic network; bounds clear zero by the 1e-7 (1 + |b|) margin, points are
decided by their float64 logit where it clears the same margin (and a rigorous float64 error
bound), in exact rational arithmetic elsewhere. ``float32``: the original model run in float32,
each input alone; bounds clear zero by the rigorous float32 margin tau, points are run batched and
re-run alone where the rigorous float32 error bound leaves the sign open. A recorded
counterexample pair always flips in float32 on the original model (each input re-run alone); under
``exact`` it must also flip in real arithmetic, so every listed pair agrees with the counts (a pair
that flips in one arithmetic only is counted by the audit's semantics and not listed). Counts are
exact Python ints.
A partition is complete when its last unit is decided; what is open at the deadline (or once the
open volume is within ``tolerance_points``) is reported with its partial counts as 'unknown'.
Before that, the final sweep (nothing relaxed; :meth:`TwinBab._sweep_cells`): each *cell* (a unit
at ``cell_depth`` and its subtree, whose decided individuals are tallied, :mod:`cells`) with open
individuals is counted as a whole from linear bounds of the copies on its box
(:mod:`sandwich_count`), and what that count proves beyond the cell's tally is credited to its
partition; the search stops when the time left is the sweep's estimate.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from certprune.fairness_spec import FairnessSpec
from certprune.results import Verdict
from certprune.semantics import DEFAULT, Semantics
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.cells import Cells
from certprune.verifiers.linear_jobs import JobQueue, LinearJob
from certprune.verifiers.partition import box_points
from certprune.verifiers.search import run_search
from certprune.verifiers.twin import TwinLayout, decision_logit_net, protected_values, twin_layout, valid_pairs
from certprune.verifiers.twin_bounds import cached_twin, copy_bounds, copy_fns, point_logits, twin_bounds
from certprune.verifiers.unit_pool import UnitPool, Units

# |float64 logit - exact logit| <= F64_ERROR * (point_logits' float32 bound): the same recurrence
# with float64's unit roundoff (2^-53 vs 2^-24), times 2 for the float64 difference of two logits
F64_ERROR = 2.0 ** -28
STRADDLE_DISCOUNT = 0.9
SWEEP_PROBE_CELLS = 64  # cells counted by the sweep's probe
SWEEP_PROBE_MIN = 1e-3  # ... below this share of their open individuals proven, the sweep is off
SWEEP_BATCH = 256  # twin boxes per bound call of the sweep (at most BabConfig.batch)
SWEEP_SECONDS = 0.0015  # estimated time of one cell's or partition's count (GC-2, AC-3, AC-4: 1.1-1.4 ms)
LINEAR_PROBE, LINEAR_MIN = 50000, 0.01  # counting stops when < 1 % of the first 50k twin boxes are linear


@dataclass(frozen=True)
class BabConfig:
    """Knobs of the engine (none affects soundness): twin boxes per round (``batch``: units x their
    protected-value pairs, so fewer units per round when the protected attribute has more values), exact-enumeration size (in
    forward passes), a box goes to z3 (0 = never) once its unit has at most ``z3_unstable``
    unstable ReLUs or reached ``z3_depth`` splits, and again every ``z3_every`` further splits; z3
    timeout per box and z3 calls per run; counterexample pairs kept per partition; beyond ``pool_cap`` open units,
    half of each batch is the smallest units (they are enumerated, which drains the pool); at most
    ``enum_per_round`` points are enumerated per round (the deadline is checked between rounds); a
    round of fewer than ``min(first_round, batch) / 2`` units (the first rounds of a small pool)
    halves each unit several times, to about that many children, so a quick model is not run 1, 2,
    4, ... units per round (on the quick Fairify models, Python overhead per round dominates); the
    pool still pops by open volume x weight. A round holds the units of about ``round_share`` of the
    run's time so far, at least ``round_seconds`` (:meth:`TwinBab._round_size`): early rounds are
    small, so the pool's order (largest open volume first) is renewed often while the decided share
    climbs fastest, and later rounds grow to ``batch`` for throughput. Units of at most
    ``count_points`` free points on which the network is linear (no relaxed attribute; any number
    of protected values) are counted exactly
    (:meth:`TwinBab._queue_linear`; 0 = never), from ``count_after`` seconds into the run on and
    once ``count_stall_rounds`` rounds in a row decided less than ``count_stall`` of the open
    volume each (:meth:`TwinBab._note_gain`; 0 rounds = at once), taking at most ``count_share``
    of the time (a queued unit is not bisected meanwhile: counting from the first round delayed
    the easy volume of very fair models, GC-4 reached 99.65 % proven fair after ~2.6 CPU s instead
    of 0.15 s). z3 is off by default:
    on real models its calls on wide boxes mostly time out, and small boxes are enumerated."""

    batch: int = 4096
    enum_points: int = 512
    z3_depth: int = 0
    z3_unstable: int = -1
    z3_every: int = 4
    z3_timeout: float = 1.0
    z3_max_calls: int = 5000
    pairs_per_partition: int = 3
    pool_cap: int = 400000
    enum_per_round: int = 65536
    first_round: int = 256
    count_points: int = 2 ** 42
    count_band: int = 4096
    count_z: float = 3.0  # 1.0 before counts got 2-3x faster: GC-3 83.3 -> 88.4 % proven fair at 40 s
    count_after: float = 0.0
    # 0.5, not 0.1 (session 19): on GC-1 ~59 % of the domain waited in the count queue for the
    # first 3 s, uncounted; with 0.5 it reaches FairQuant's 32.67 % in 2.4 s instead of 3.3, GC-3
    # decides 81.3 % at 10 s instead of 79.8 (94.61 / 94.44 % at 60 s), others unchanged
    count_share: float = 0.5
    count_stall: float = 0.1
    # 4, not 2 (session 17): two of the small first rounds already looked stalled; GC-3 / GC-1 reach
    # FairQuant's coverage 2x sooner, GC-4's complete audit takes 7.3 s instead of 4.1 (README)
    count_stall_rounds: int = 4
    count_max_share: float = 0.9
    # units per round: max(round_share x elapsed, round_seconds) / seconds per unit of the last
    # rounds, at least first_round, at most batch (0 = always batch); round_seconds keeps the
    # rounds of quick models (GC-4: ~20 us per unit) from paying Python's per-round overhead
    round_share: float = 0.25
    round_seconds: float = 0.03
    # the twin boxes' backward CROWN pass runs while crown_value x the share of the boxes it
    # bounds that it closes (and the forward bounds left open) is at least its share of the
    # bound time, else on every crown_probe-th round only (0 = always on; TwinBab._crown_on)
    crown_value: float = 8.0
    crown_probe: int = 8
    # the final sweep (TwinBab._sweep_cells, _sweep_partitions): the search stops when the time
    # left is its estimate (SWEEP_SECONDS per cell or partition, at most sweep_share of the budget;
    # 0 = no sweep); units at cell_depth open the cells it counts (0 = no cells). Depth 12, not 10
    # or 14 (GC-2 at 60 s: 93.5 % decided against 60.9 / 80.5, runs that left 0.4 / 4.1 s for the
    # sweep, depth 14 with 10,538 open cells not all counted; 58.6 without the sweep). Share 0.2:
    # a full sweep of AC-3 sex's ~3,500 cells took 3.9 s and added 21.8 points at 20 s (0.1: 7.4)
    sweep_share: float = 0.2
    cell_depth: int = 12
    sweep_probe: float = 0.5  # when the probe runs (share of the budget; 0 = never), TwinBab._probe_sweep


@dataclass
class PartitionOutcome:
    """One partition: ``verdict`` CERTIFIED (complete, every individual fair) | FALSIFIED
    (complete, some individual unfair) | UNKNOWN (budget spent); exact counts of individuals
    proven fair / unfair / undecided; validated counterexample pairs ``(x, x', logit, logit')``
    (encoded integers, float32 logits of each input run alone)."""

    pid: int
    verdict: Verdict
    fair: int = 0
    unfair: int = 0
    undecided: int = 0
    pairs: list = field(default_factory=list)
    nodes: int = 0
    z3_calls: int = 0
    seconds: float = 0.0

    @property
    def x(self):
        return self.pairs[0][0] if self.pairs else None

    @property
    def x_prime(self):
        return self.pairs[0][1] if self.pairs else None


class Float32Decider:
    """Decisions of the ORIGINAL model run in float32: logit > 0 (one output) or argmax == 1
    (two outputs; the reported logit is y1 - y0 of the float32 outputs)."""

    def __init__(self, run_float32: Callable[[np.ndarray], np.ndarray]):
        self.run = run_float32

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.asarray(self.run(np.asarray(x, dtype=np.float32)), dtype=np.float32).reshape(len(x), -1)
        if out.shape[1] == 1:
            return out[:, 0] > 0, out[:, 0].astype(np.float64)
        dec = np.argmax(out, axis=1) == 1
        return dec, out[:, 1].astype(np.float64) - out[:, 0].astype(np.float64)


def _straddle(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``2 min(hi, -lo) / (hi - lo)`` clipped to [0, 1]: how centred on 0 a decision's bounds are."""
    return np.clip(2 * np.minimum(hi, -lo) / np.maximum(hi - lo, 1e-300), 0.0, 1.0)


@dataclass
class _State:
    plo: np.ndarray
    phi: np.ndarray
    pids: np.ndarray
    points: list
    fair: list
    unfair: list
    units: np.ndarray
    done: np.ndarray
    started: np.ndarray
    nodes: np.ndarray
    z3: np.ndarray
    pairs: list
    outcomes: list = field(default_factory=list)
    npairs: np.ndarray | None = None  # len(pairs[p]) per partition, kept in step with ``pairs``

    def __post_init__(self) -> None:
        if self.npairs is None:
            self.npairs = np.array([len(q) for q in self.pairs], dtype=np.int64)


@dataclass
class _Run:
    """One :meth:`TwinBab.run`: its partitions' state, the pool of open units, where outcomes go,
    the loading chunk, the undecided tolerance, units per round (pair boxes / copy mode), the
    individuals of partitions not loaded yet, and how far outcomes were handed on."""

    st: _State
    pool: UnitPool
    on_done: Callable[[list["PartitionOutcome"]], None]
    chunk: int
    tolerance: float
    per_round: int
    per_copy_round: int
    unloaded: np.ndarray
    next_p: int = 0
    emitted: int = 0


class ExactLogit:
    """The decision logit of an AffineReluNet in exact rational arithmetic at integer points: every
    weight is a float32 (dyadic) value, so each layer is an integer matrix times 2^-s (Python ints
    in numpy object arrays; no rounding anywhere). Slow: for the few points near a tie."""

    def __init__(self, net: AffineReluNet):
        self.layers = []
        scale = 0
        for w, b in zip(net.weights, net.biases):
            w64, b64 = w.double().numpy(), b.double().numpy()
            s = max(_frac_bits(w64), _frac_bits(b64) - scale, 0)
            scale += s
            W = np.array([[_scaled(v, s) for v in row] for row in w64], dtype=object)
            B = np.array([_scaled(v, scale) for v in b64], dtype=object)
            self.layers.append((W, B))

    def __call__(self, x: np.ndarray) -> int:
        """Sign (-1, 0, +1) of the decision logit (y for one output, y1 - y0 for two) at ``x``."""
        h = np.array([int(v) for v in np.asarray(x, dtype=np.float64)], dtype=object)
        for k, (W, B) in enumerate(self.layers):
            h = W.dot(h) + B
            if k < len(self.layers) - 1:
                h = np.array([v if v > 0 else 0 for v in h], dtype=object)
        y = h[0] if len(h) == 1 else h[1] - h[0]
        return (y > 0) - (y < 0)


def _frac_bits(a: np.ndarray) -> int:
    """Binary digits after the point needed to write every value of ``a`` exactly."""
    from fractions import Fraction
    return max((Fraction(float(v)).denominator.bit_length() - 1 for v in a.ravel()), default=0)


def _scaled(v: float, s: int) -> int:
    """``v * 2^s`` as an exact Python int (``v`` has at most ``s`` binary digits after the point)."""
    from fractions import Fraction
    f = Fraction(float(v)) * (1 << s)
    if f.denominator != 1:
        raise ValueError(f"{v!r} needs more than {s} binary digits after the point")
    return f.numerator


class TwinBab:
    """The engine for one (model, spec, semantics); :meth:`run` decides a list of partitions."""

    def __init__(self, exact: AffineReluNet, decider: Float32Decider, spec: FairnessSpec, config: BabConfig,
                 semantics: Semantics = DEFAULT):
        self.spec, self.cfg, self.decide, self.semantics = spec, config, decider, semantics
        self.layout: TwinLayout = twin_layout(spec)
        self.exact = exact
        self._exact_logit = None
        self.net = decision_logit_net(exact)
        self.last_abs = None
        if exact.output_dim == 2:
            w, b = exact.weights[-1], exact.biases[-1]
            self.last_abs = ((w[0].abs() + w[1].abs())[None], (b[0].abs() + b[1].abs())[None])
        self.values = np.array(protected_values(spec), dtype=np.float64).reshape(-1, len(spec.protected))
        self.prot = list(spec.protected_indices)
        self.free = [i for i in range(spec.num_features) if i not in self.prot]
        self.dom_lo = spec.lower.astype(np.float64)
        self.dom_hi = spec.upper.astype(np.float64)
        self.unordered = not spec.relaxed
        self.z3_calls = 0
        self.deadline = float("inf")
        self._run: _Run | None = None  # the current run (TwinBab.run)
        self.budget, self.round_time = 0.0, 0.0  # seconds of the run at its start; of the last round
        self.sweep_off, self.probed = False, False  # the final sweep's probe (_probe_sweep)
        self._solver = None
        self.trace = False
        # (fair, unfair) of this run, after each round and every 0.1 s of a count drain
        self.on_progress: Callable[[int, int], None] | None = None
        # linear units waiting for an exact count (_queue_linear), touching ones joined
        self.queue = JobQueue(self.free, self._job_eps, self._count_fits)
        self.no_count: set = set()  # keys of units whose count was given up (see _unit_key)
        self.cells = Cells()  # boxes of the search tree and their decided individuals (_sweep_cells)
        self.count_time, self.started = 0.0, 0.0  # seconds spent counting in this run; its start
        self.count_rate = 5e-7  # seconds per sqrt(points) of one count, learnt as counts are made
        self.linear_seen = (0, 0)
        self.stalled = 0  # rounds in a row that decided < count_stall of the open volume (_note_gain)
        self.search_rate = float("inf")  # individuals decided per second by recent search rounds (_note_search)
        self.unit_time = 0.0  # seconds per unit of recent search rounds (_round_size; 0 = none yet)
        # the CROWN pass's recent yield and share of the bound time (_crown_on); rounds run
        self.crown_yield, self.crown_share, self.rounds = 1.0, 0.0, 0

    # ----- units and their twin boxes --------------------------------------------------------
    def initial_units(self, plo: np.ndarray, phi: np.ndarray, part: np.ndarray) -> Units:
        """One unit per partition: its box, the protected values inside it open."""
        vals = self.values
        inside = np.all((vals[None] >= plo[:, None, self.prot]) & (vals[None] <= phi[:, None, self.prot]), axis=2)
        size = np.array(box_points(plo, phi, self.free), dtype=np.float64)
        return Units(plo.copy(), phi.copy(), part, inside, np.zeros(len(part), np.int64), size)

    def _twin_boxes(self, u: Units):
        """Twin boxes of the open values of each unit: (zlo, zhi, unit, value, partner value)."""
        L, V = self.layout, len(self.values)
        off = L.n + len(self.prot)
        los, his, owners, vi, vj = [], [], [], [], []
        for i, j in itertools.permutations(range(V), 2):
            m = u.open[:, i].copy()
            if self.unordered:
                m &= ~(u.open[:, j] & (j < i))
            k = np.flatnonzero(m)
            if len(k) == 0:
                continue
            zlo = np.zeros((len(k), L.dz))
            zhi = np.zeros((len(k), L.dz))
            zlo[:, :L.n], zhi[:, :L.n] = u.lo[k], u.hi[k]
            zlo[:, self.prot] = zhi[:, self.prot] = self.values[i]
            zlo[:, L.n:off] = zhi[:, L.n:off] = self.values[j]
            for c, (r, d) in enumerate(zip(L.relaxed, L.deltas)):
                zlo[:, off + c] = np.maximum(-d, self.dom_lo[r] - u.hi[k, r])
                zhi[:, off + c] = np.minimum(d, self.dom_hi[r] - u.lo[k, r])
            los.append(zlo), his.append(zhi), owners.append(k)
            vi.append(np.full(len(k), i)), vj.append(np.full(len(k), j))
        if not los:
            e = np.zeros(0, np.int64)
            return np.zeros((0, L.dz)), np.zeros((0, L.dz)), e, e, e
        return tuple(np.concatenate(a) for a in (los, his, owners, vi, vj))

    def _fix_coupling(self, z: np.ndarray) -> None:
        """Clip relaxed offsets so that x'_r = x_r + d_r stays inside the domain."""
        L = self.layout
        off = L.n + len(L.protected)
        for c, r in enumerate(L.relaxed):
            z[:, off + c] = np.clip(z[:, off + c], self.dom_lo[r] - z[:, r], self.dom_hi[r] - z[:, r])

    # ----- counterexamples -------------------------------------------------------------------
    def _check_points(self, z: np.ndarray, part: np.ndarray, st: _State, only_new: bool = True) -> None:
        """Run candidate twin points in float32 (:meth:`float32_points`); keep validated flipping
        pairs (each input re-run alone; under ``exact`` also a flip in real arithmetic) for
        partitions with room for more (``only_new``: only those without any pair)."""
        if len(z) == 0:
            return
        cap = 1 if only_new else self.cfg.pairs_per_partition
        room = st.npairs[part] < cap
        if not room.any():
            return
        z, part = z[room], part[room]
        x, xp = self.layout.split(z)
        ok = valid_pairs(self.spec, x, xp, st.plo[part], st.phi[part])
        x, xp, part = x[ok], xp[ok], part[ok]
        if len(x) == 0:
            return
        y, err = point_logits(self.net, np.concatenate([x, xp]), self.last_abs)  # once for both rules
        n = len(x)
        lx, lxp = (y[:n], err[:n]), (y[n:], err[n:])
        flips = np.flatnonzero(self.float32_points(x, lx) != self.float32_points(xp, lxp))
        if self.semantics is Semantics.EXACT and len(flips):
            at = lambda le: (le[0][flips], le[1][flips])  # noqa: E731
            flips = flips[self.exact_points(x[flips], at(lx)) != self.exact_points(xp[flips], at(lxp))]
        for k in flips:
            p = int(part[k])
            pair = (tuple(int(v) for v in x[k]), tuple(int(v) for v in xp[k]))
            if len(st.pairs[p]) >= cap or any(q[:2] == pair for q in st.pairs[p]):
                continue
            (d1,), (l1,) = self.decide(x[k:k + 1])
            (d2,), (l2,) = self.decide(xp[k:k + 1])
            if d1 != d2:
                st.pairs[p].append((*pair, float(l1), float(l2)))
                st.npairs[p] += 1

    # ----- exact enumeration -----------------------------------------------------------------
    def _extended(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The box with relaxed features widened by delta (within the domain): every partner."""
        elo, ehi = lo.copy(), hi.copy()
        for r, d in zip(self.layout.relaxed, self.layout.deltas):
            elo[..., r] = np.maximum(self.dom_lo[r], lo[..., r] - d)
            ehi[..., r] = np.minimum(self.dom_hi[r], hi[..., r] + d)
        return elo, ehi

    def _enum_cost(self, u: Units) -> np.ndarray:
        elo, ehi = self._extended(u.lo, u.hi)
        return np.prod(ehi[:, self.free] - elo[:, self.free] + 1, axis=1) * len(self.values)

    def _enumerate(self, u: Units, st: _State, chunk_points: int = 200000) -> None:
        """Decide every individual of the small units exactly (under the audit's semantics). Units
        whose extended boxes have the same shape are gridded together: all points over the free
        features under every protected value, (units, V, *widths) in C order (value slowest)."""
        elo, ehi = self._extended(u.lo, u.hi)
        shapes = (ehi[:, self.free] - elo[:, self.free] + 1).astype(np.int64)
        keys, inv = np.unique(shapes, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        V, n = len(self.values), self.spec.num_features
        for g, S in enumerate(keys):
            idx = np.flatnonzero(inv == g)
            off = np.indices(tuple(S)).reshape(len(S), -1).T  # (M, free) offsets, C order
            M = len(off)
            step = max(1, chunk_points // (V * M))
            for c in range(0, len(idx), step):
                ks = idx[c:c + step]
                pts = np.empty((len(ks), V, M, n))
                pts[..., self.free] = elo[ks][:, self.free][:, None, None, :] + off[None, None]
                pts[..., self.prot] = self.values[None, :, None, :]
                dec = self.decide_points(pts.reshape(-1, n)).reshape(len(ks), V, *S)
                for j, k in enumerate(ks):
                    self._count_enumerated(dec[j], u, int(k), elo[k], st)

    def decide_points(self, X: np.ndarray) -> np.ndarray:
        """Per-individual decisions of integer points (N, n) under the audit's semantics:
        :meth:`exact_points` or :meth:`float32_points`."""
        if self.semantics is Semantics.EXACT:
            return self.exact_points(X)
        return self.float32_points(X)

    def float32_points(self, X: np.ndarray, logits: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Float32 decisions of the original model, each input as if run alone: batched, and re-run
        one input at a time only where the rigorous float32 error bound (point_logits) does not fix
        the sign. The one rule for float32 point decisions (counts and counterexamples).
        ``logits``: point_logits(X) if the caller has them already."""
        X = np.asarray(X, dtype=np.float64)
        d, _ = self.decide(X)
        y, err = logits if logits is not None else point_logits(self.net, X, self.last_abs)
        for k in np.flatnonzero(np.abs(y) <= err):
            d[k] = self.decide(X[k:k + 1])[0][0]
        return d

    def exact_points(self, X: np.ndarray, logits: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Real-arithmetic decisions (logit > 0): the float64 logit where it clears the exact
        margin 1e-7 (1 + |y|) and the float64 error bound, exact rational arithmetic elsewhere.
        ``logits``: point_logits(X) if the caller has them already."""
        X = np.asarray(X, dtype=np.float64)
        y, err = logits if logits is not None else point_logits(self.net, X, self.last_abs)
        d = y > 0
        near = np.flatnonzero(np.abs(y) <= np.maximum(Semantics.EXACT.slack(y, 0.0), F64_ERROR * err))
        if len(near) and self._exact_logit is None:
            self._exact_logit = ExactLogit(self.exact)
        for k in near:
            d[k] = self._exact_logit(X[k]) > 0
        return d

    def _count_enumerated(self, dec: np.ndarray, u: Units, k: int, elo: np.ndarray, st: _State) -> None:
        """Count unit k's individuals from the decisions ``dec`` (V, free widths) of its extended
        box: (u, v) is unfair iff some other value w has, within the relaxed window around u, a
        point of the other decision (window min/max by scipy.ndimage; clipped at the domain)."""
        rel = dict(zip(self.layout.relaxed, self.layout.deltas))
        win = [1] + [2 * rel.get(i, 0) + 1 for i in self.free]
        if max(win) > 1:  # (scipy.ndimage costs ~0.3 s to import: only where a window is needed)
            from scipy.ndimage import maximum_filter, minimum_filter
            d8 = dec.astype(np.uint8)
            mx = maximum_filter(d8, size=win, mode="nearest").astype(bool)
            mn = minimum_filter(d8, size=win, mode="nearest").astype(bool)
        else:
            mx = mn = dec
        sl = (slice(None),) + tuple(slice(int(u.lo[k, i] - elo[i]), int(u.hi[k, i] - elo[i]) + 1) for i in self.free)
        d, mx, mn = dec[sl], mx[sl], mn[sl]
        p = int(u.part[k])
        for i in np.flatnonzero(u.open[k]):
            others = np.arange(len(self.values)) != i
            bad = (d[i] & ~mn[others].all(0)) | (~d[i] & mx[others].any(0))
            n_bad = int(bad.sum())
            st.unfair[p] += n_bad
            st.fair[p] += int(bad.size) - n_bad
            self.cells.add(int(u.cell[k]), int(bad.size) - n_bad, n_bad)
            if n_bad and len(st.pairs[p]) < self.cfg.pairs_per_partition:
                self._record_enumerated(np.argwhere(bad)[0], i, dec, elo, u.lo[k], st, p)

    def _record_enumerated(self, idx, i: int, dec: np.ndarray, elo: np.ndarray, ulo: np.ndarray, st: _State,
                           p: int) -> None:
        """Find an explicit flipping partner of one enumerated unfair individual and record it."""
        x = np.empty(self.spec.num_features)
        x[self.free] = ulo[self.free] + idx
        x[self.prot] = self.values[i]
        rel = dict(zip(self.layout.relaxed, self.layout.deltas))
        ranges = [range(-rel.get(f, 0), rel.get(f, 0) + 1) for f in self.free]
        base = (x[self.free] - elo[self.free]).astype(int)
        for j in range(len(self.values)):
            if j == i:
                continue
            for off in itertools.product(*ranges):
                e = base + np.array(off, dtype=int)
                if np.any(e < 0) or np.any(e >= np.array(dec.shape[1:])):
                    continue
                if dec[(j, *e)] != dec[(i, *base)]:
                    xp = x.copy()
                    xp[self.free] = elo[self.free] + e
                    xp[self.prot] = self.values[j]
                    z = np.concatenate([x, self.values[j], xp[list(self.layout.relaxed)] - x[list(self.layout.relaxed)]])
                    self._check_points(z[None], np.array([p]), st, only_new=False)
                    return

    # ----- z3 leaf ---------------------------------------------------------------------------
    def _widened_pre(self, tg, zlo, zhi, pre_t) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """twin_bounds' float64 pre-activations (one (l, u) pair per ReLU pair, each (2, h) for the
        copies x, x') widened outward over the twin graph (smt.widen_bounds, so the phases z3 is
        told hold in exact arithmetic), by ReLU node of the twin graph."""
        from certprune.verifiers.smt import widen_bounds
        by_node = {}
        for (a, b), (l, u) in zip(tg.relus, pre_t):
            by_node[a], by_node[b] = (l.numpy()[0], u.numpy()[0]), (l.numpy()[1], u.numpy()[1])
        nodes = tg.graph.relu_nodes
        return dict(zip(nodes, widen_bounds(tg.graph, zlo, zhi, [by_node[i] for i in nodes])))

    def _z3(self, zlo, zhi, p, st: _State) -> bool:
        """One twin box to z3 on the reduced network; True when z3 proves it has no flip (a sat
        model is only a candidate pair, re-run in float32)."""
        tg = cached_twin(self.net, self.layout, self.last_abs)
        if self._solver is None:
            from certprune.verifiers.fairness_smt import TwinSolver
            self._solver = TwinSolver(tg, self.layout)
        lo_t, hi_t = torch.from_numpy(zlo[None]), torch.from_numpy(zhi[None])
        tb = twin_bounds(self.net, self.layout, lo_t, hi_t, self.last_abs, keep_pre=True)
        pre = self._widened_pre(tg, zlo, zhi, tb.pre)
        self.z3_calls += 1
        st.z3[p] += 1
        # exact semantics: the policy's margin around an exact tie (slack of a zero bound), as the
        # bound path uses; without it z3 certifies a real-arithmetic tie that float32 breaks
        tau = ((float(self.semantics.slack(0.0, 0.0)),) * 2 if self.semantics is Semantics.EXACT
               else (float(tb.tau[0][0]), float(tb.tau[1][0])))
        status, z = self._solver.solve(zlo, zhi, self.dom_lo, self.dom_hi, pre, tau, self.cfg.z3_timeout)
        if status == "sat":
            self._check_points(z[None], np.array([p]), st)
        return status == "unsat"

    # ----- one round -------------------------------------------------------------------------
    def _round(self, u: Units, st: _State) -> Units:
        """Process one batch of units; returns the children still open."""
        np.add.at(st.nodes, u.part, 1)
        cost = self._enum_cost(u)
        small = (cost <= self.cfg.enum_points) | np.all(u.lo[:, self.free] == u.hi[:, self.free], axis=1)
        later = small & (np.cumsum(np.where(small, cost, 0)) > max(self.cfg.enum_per_round, self.cfg.enum_points))
        small &= ~later
        if small.any():
            self._enumerate(u.take(small), st)
        back = u.take(later)  # over this round's enumeration budget: back to the pool as they are
        u = u.take(~small & ~later)
        if len(u) == 0:
            return back
        counting = self._count_now()
        if self._copy_mode(counting):
            return self._round_copies(u, st, back)
        zlo, zhi, own, vi, vj = self._twin_boxes(u)
        t0 = time.perf_counter()
        tb = twin_bounds(self.net, self.layout, torch.from_numpy(zlo), torch.from_numpy(zhi), self.last_abs,
                         keep_pre=counting, skip_closed=self.semantics, crown_pass=self._crown_on())
        self.rounds += 1
        closed = tb.closed(self.semantics).numpy()
        if len(tb.crowned):  # the pass's yield: the boxes it bounded (open before it) now closed
            share = tb.crown_seconds / max(time.perf_counter() - t0, 1e-9)
            self.crown_yield = 0.5 * self.crown_yield + 0.5 * float(closed[tb.crowned.numpy()].mean())
            self.crown_share = share if self.crown_share == 0.0 else 0.5 * self.crown_share + 0.5 * share
        sy, sp = (s.numpy().astype(np.int64) for s in tb.signs(self.semantics))
        fair, unfair, proof = self._decide_values(len(u), len(self.values), own, vi, vj, closed, sy, sp,
                                                  self.unordered)
        self._account(u, fair, unfair, st)
        self._record_proven(u, unfair & ~fair, proof, zlo, zhi, st)
        if self._z3_stalled(zlo, zhi, own, vi, vj, closed, tb.unstable.numpy(), u, st):
            fair, _, _ = self._decide_values(len(u), len(self.values), own, vi, vj, closed, sy, sp, self.unordered)
            self._account(u, fair, np.zeros_like(fair), st)
        opn = ~closed & (u.open[own, vi] | (self.unordered & u.open[own, vj]))
        if opn.any():  # candidate flips: bound vertices and centres of the open boxes
            c = [tb.vertices[0].numpy()[opn], tb.vertices[1].numpy()[opn], np.floor((zlo[opn] + zhi[opn]) / 2)]
            for z in c:
                self._fix_coupling(z)
                self._check_points(z, u.part[own[opn]], st)
        if counting:
            self._queue_linear(u, tb, own)
        score = np.zeros((len(u), self.layout.n))
        np.add.at(score, own, tb.score.numpy()[:, :self.layout.n])
        u.weight = self._weight(len(u), own, closed, tb)
        return self._children(u, score, back)

    def _children(self, u: Units, score: np.ndarray, back: Units) -> Units:
        """The round's result: the units still open split (by ``score``; several times in the
        first rounds of a small pool, see :class:`BabConfig`), and ``back``."""
        alive = u.open.any(1)
        n = int(alive.sum())
        target = min(self.cfg.first_round, self.cfg.batch)
        times = 1 if 2 * n >= target else int(np.ceil(np.log2(target / max(n, 1))))
        kids = self._split(u.take(alive), score[alive], times)
        self._new_cells(kids)
        return Units.concat([kids, back])

    # ----- one copy per protected value (attributes of more than two values) ----------------
    def _copy_mode(self, counting: bool) -> bool:
        """Whether this round bounds one copy of the model per (unit, protected value) instead of
        the twin boxes of every pair of values: for more than two values, nothing relaxed (the
        copies then differ only in the protected value), no count this round (counts need the
        pairs' pre-activations) and z3 off. A pair box costs two model evaluations and a unit has
        V (V - 1) / 2 of them (Adult race: 10 boxes, 20 evaluations, against 5 copies), and the
        decisions the search closes with are the copies' signs (measured on AC-2 race: every box
        closed was closed with both decisions fixed, 94 % of them by the copies' own bounds)."""
        return len(self.values) > 2 and self.unordered and not counting and self.cfg.z3_depth <= 0

    def _round_copies(self, u: Units, st: _State, back: Units) -> Units:
        """One round in copy mode (:meth:`_copy_mode`): per unit and protected value v the bounds of
        the model on the unit's box with value v (``twin_bounds.copy_bounds``); a value is fair
        where every value's decision is fixed to the same side on the box, unfair where its own is
        fixed and some other value's is fixed to the other side (every individual of the box
        flips with that value). The rest as :meth:`_round`: candidate pairs at the vertices that
        push the most and the least positive values apart, splits by the copies' gradient x width."""
        N, V, n = len(u), len(self.values), self.layout.n
        lo = np.repeat(u.lo, V, axis=0)
        hi = np.repeat(u.hi, V, axis=0)
        vals = np.tile(self.values, (N, 1))
        lo[:, self.prot] = hi[:, self.prot] = vals
        cb = copy_bounds(self.net, torch.from_numpy(lo), torch.from_numpy(hi), self.last_abs)
        sign = cb.signs(self.semantics).numpy().astype(np.int64).reshape(N, V)
        pos, neg = (sign > 0).any(1, keepdims=True), (sign < 0).any(1, keepdims=True)
        fair = (sign != 0).all(1, keepdims=True) & ~(pos & neg)
        fair = np.repeat(fair, V, axis=1)
        unfair = ((sign > 0) & neg) | ((sign < 0) & pos)
        self._account(u, fair, unfair, st)
        yl, yu = (t.numpy().reshape(N, V) for t in cb.y)
        grad = cb.grad.numpy().reshape(N, V, n)
        top, bot = np.argmax(yu, axis=1), np.argmin(yl, axis=1)  # most / least likely yes
        centre = np.floor((u.lo + u.hi) / 2)
        for k, v in np.argwhere(unfair):  # a validated pair for partitions with proven-unfair values
            p = int(u.part[k])
            if not st.pairs[p]:
                w = int(np.flatnonzero(sign[k] == -sign[k, v])[0])
                self._check_points(self._copy_points(centre[k:k + 1], v, w), np.array([p]), st)
        opn = u.open.any(1) & (top != bot)
        if opn.any():  # candidate flips: vertices pushing y_top up and y_bot down, and centres
            k = np.flatnonzero(opn)
            d = grad[k, top[k]] - grad[k, bot[k]]
            for x in (np.where(d > 0, u.hi[k], u.lo[k]), np.where(d > 0, u.lo[k], u.hi[k]), centre[k]):
                self._check_points(self._copy_points(x, top[k], bot[k]), u.part[k], st)
        score = (np.abs(grad).sum(1) + (grad.max(1) - grad.min(1))) * (u.hi - u.lo)
        hard = np.where(u.open.any(1), _straddle(yl, yu).max(1), 0.0)
        u.weight = 1.0 - STRADDLE_DISCOUNT * hard  # as :meth:`_weight`, over the unit's copies
        return self._children(u, score, back)

    def _copy_points(self, x: np.ndarray, v, w) -> np.ndarray:
        """Twin points z of individuals x (m, n) with protected value(s) v and partner value(s) w."""
        x = np.array(x, dtype=np.float64)
        x[:, self.prot] = self.values[v]
        return np.concatenate([x, np.broadcast_to(self.values[w], (len(x), len(self.prot)))], axis=1)

    # ----- the final sweep: partitions counted from linear bounds -----------------------------
    def _new_cells(self, kids: Units) -> None:
        """Children that reach ``cell_depth`` outside any cell open one each (:mod:`cells`)."""
        if self.cfg.cell_depth <= 0 or not self._sweepable():
            return
        # tallies are int64: a cell holds fewer than 2^62 individuals (a larger unit's descendants
        # open cells once they are that small)
        m = (kids.cell < 0) & (kids.depth >= self.cfg.cell_depth) & (kids.size * len(self.values) < 2.0 ** 61)
        if m.any():
            kids.cell[m] = self.cells.new(kids.lo[m], kids.hi[m], kids.part[m])

    def _tally(self, u: Units, rows: np.ndarray, nf: np.ndarray, nu: np.ndarray) -> None:
        """Tally the individuals decided in units ``rows`` (``nf`` / ``nu`` values each, aligned
        with ``rows``) in their cells."""
        m = u.cell[rows] >= 0
        if m.any():
            n = np.asarray(box_points(u.lo[rows[m]], u.hi[rows[m]], self.free), dtype=np.int64)
            self.cells.add_many(u.cell[rows[m]], n * np.asarray(nf)[m], n * np.asarray(nu)[m])

    def _sweepable(self) -> bool:
        """Whether the final sweep applies: nothing relaxed, on, not turned off by its probe."""
        return self.cfg.sweep_share > 0 and len(self.values) >= 2 and self.unordered and not self.sweep_off

    def _open_per_cell(self) -> np.ndarray:
        """Open individuals per cell (int64): units in the pool and in the count queue."""
        out = np.zeros(len(self.cells), dtype=np.int64)
        queued = [j.unit for j in self.queue.values()]
        # the pool chunk by chunk (UnitPool.peek_chunks: a copy of all of it took 0.8-2.5 s of
        # GC-1's 2.2 s sweep at 60 s), the queue (GC-1: 4,000 jobs) in one batch
        for u in itertools.chain(self._run.pool.peek_chunks(), [Units.concat(queued)] if queued else []):
            m = (u.cell >= 0) & u.open.any(1)
            if m.any():
                n = np.asarray(box_points(u.lo[m], u.hi[m], self.free), dtype=np.int64)
                np.add.at(out, u.cell[m], n * u.open[m].sum(1))
        return out

    def _probe_sweep(self, st: _State) -> None:
        """Once, at ``sweep_probe`` of the budget: count the ``SWEEP_PROBE_CELLS`` cells with the
        most open individuals without crediting them; where that proves less than
        ``SWEEP_PROBE_MIN`` of their open individuals the sweep is turned off for this run (no
        cells, no time kept for it), as on the Bank models, whose bounds at cell depth are too
        loose for any count (BM-1 at 30 s: 60,084 of ~10^13 open individuals; before the probe
        the Bank audits lost 0.2-0.9 points at 60 s to the time kept for the sweep)."""
        self.probed = True
        if len(self.cells) == 0:
            return
        opened = self._open_per_cell()
        credit = self._sweep_cells(st, limit=SWEEP_PROBE_CELLS, apply=False, opened=opened)
        top = np.sort(opened)[::-1][:SWEEP_PROBE_CELLS].sum()
        if credit < SWEEP_PROBE_MIN * max(1, int(top)):
            self.sweep_off = True

    def _sweep_cells(self, st: _State, limit: int | None = None, apply: bool = True,
                     opened: np.ndarray | None = None) -> int:
        """At the deadline: count the cells with open individuals from linear bounds on their boxes,
        largest open share first, until the deadline (:mod:`cells`). A cell is used only if its tally
        plus its open individuals are all of its individuals (every decision inside it tallied);
        with D its tally and ``F`` the count (a lower bound of the box's fair individuals), its open
        individuals hold at least ``F - D`` fair ones (likewise unfair), added to its partition.
        The units stay undecided otherwise; the sweep adds proven counts only. ``limit``: only
        that many cells; ``apply`` False: nothing credited; ``opened``: :meth:`_open_per_cell` if
        the caller has it. Returns the individuals credited (or that would have been)."""
        C = len(self.cells)
        if C == 0:
            return 0
        cl = self.cells
        opened = self._open_per_cell() if opened is None else opened
        points = np.asarray(box_points(cl.lo[:C], cl.hi[:C], self.free), dtype=np.int64) * len(self.values)
        ok = (opened > 0) & (cl.fair[:C] + cl.unfair[:C] + opened == points)
        ids = np.flatnonzero(ok)
        ids = ids[np.argsort(-opened[ids], kind="stable")][:limit]
        credited = 0
        step = max(1, min(SWEEP_BATCH, self.cfg.batch))
        if len(self.values) > 2:
            step = max(1, step // len(self.values))
        for c0 in range(0, len(ids), step):
            if time.monotonic() > self.deadline:
                break
            sel = ids[c0:c0 + step]
            if len(self.values) > 2:
                credited += self._sweep_cell_copies(sel, opened, st, apply)
                continue
            u = self.initial_units(cl.lo[sel], cl.hi[sel], cl.part[sel])
            zlo, zhi, own, _, _ = self._twin_boxes(u)
            for m, same, differ in self._twin_box_counts(zlo, zhi):
                credited += self._credit_cell(int(sel[own[m]]), 2 * same, 2 * differ, opened, st, apply)  # both values
        return credited

    def _credit_cell(self, c: int, fair: int, unfair: int, opened: np.ndarray, st: _State, apply: bool) -> int:
        """What cell c's counts (``fair`` / ``unfair`` individuals of the whole cell, lower bounds)
        prove beyond its tally, credited to its partition if ``apply``; more than its open
        individuals is a bug."""
        cl = self.cells
        df, du = max(0, fair - int(cl.fair[c])), max(0, unfair - int(cl.unfair[c]))
        if df + du > int(opened[c]):
            raise RuntimeError(f"cell {c}: counted {df + du} more individuals than are open ({opened[c]})")
        if apply:
            p = int(cl.part[c])
            st.fair[p] += df
            st.unfair[p] += du
        return df + du

    def _twin_box_counts(self, zlo: np.ndarray, zhi: np.ndarray):
        """Yield ``(i, same, differ)`` for twin boxes i (one value in x, the other in x') in order:
        :func:`sandwich_count.box_counts` on the kept functions of ``twin_bounds`` (y and y' over
        the shared z), bounded ``SWEEP_BATCH`` boxes at a time, until the deadline."""
        from certprune.verifiers.sandwich_count import box_counts
        step = max(1, min(SWEEP_BATCH, self.cfg.batch))
        for c in range(0, len(zlo), step):
            if time.monotonic() > self.deadline:
                return
            sl = slice(c, c + step)
            tb = twin_bounds(self.net, self.layout, torch.from_numpy(zlo[sl]), torch.from_numpy(zhi[sl]),
                             self.last_abs, crown_pass=False, keep_fns=True)
            fl, fu, err, mag = tb.fns
            Al, bl, Au, bu = (t.numpy() for t in (fl.A, fl.b, fu.A, fu.b))
            err, mag = err.numpy(), mag.numpy()
            margin = self.semantics.slack(mag, np.stack([t.numpy() for t in tb.tau], 1))
            for m in range(len(err)):
                if time.monotonic() > self.deadline:
                    return
                r, i = (m if Al.shape[0] > 1 else 0), c + m
                box = np.stack([zlo[i], zlo[i]]), np.stack([zhi[i], zhi[i]])
                lower, upper = [(Al[r, :, v], bl[r, v]) for v in (0, 1)], [(Au[r, :, v], bu[r, v]) for v in (0, 1)]
                yield (i, *box_counts(lower, upper, *box, err[m], mag[m], margin[m]))

    def _sweep_cell_copies(self, sel: np.ndarray, opened: np.ndarray, st: _State, apply: bool) -> int:
        """:meth:`_sweep_cells` for a protected attribute of more than two values: per cell one
        copy of the model per value (``twin_bounds.copy_fns``), counted by
        :func:`sandwich_count.box_counts` (points whose copies are proven to agree: all V variants
        fair; proven not to: all V unfair, each decision differs from another's)."""
        from certprune.verifiers.sandwich_count import box_counts
        cl, V = self.cells, len(self.values)
        lo = np.repeat(cl.lo[sel], V, axis=0)
        hi = np.repeat(cl.hi[sel], V, axis=0)
        lo[:, self.prot] = hi[:, self.prot] = np.tile(self.values, (len(sel), 1))
        fl, fu, err, mag, tau = copy_fns(self.net, torch.from_numpy(lo), torch.from_numpy(hi), self.last_abs)
        Al, bl, Au, bu = (t.numpy() for t in (fl.A, fl.b, fu.A, fu.b))
        err, mag = err.numpy()[:, 0], mag.numpy()[:, 0]
        margin = self.semantics.slack(mag, tau.numpy())
        credited = 0
        for m, c in enumerate(sel.tolist()):
            if time.monotonic() > self.deadline:
                break
            rows = slice(m * V, (m + 1) * V)
            k = np.arange(m * V, (m + 1) * V) if Al.shape[0] > 1 else np.zeros(V, dtype=np.int64)
            same, differ = box_counts([(Al[r, :, 0], bl[r, 0]) for r in k], [(Au[r, :, 0], bu[r, 0]) for r in k],
                                      lo[rows], hi[rows], err[rows], mag[rows], margin[rows])
            credited += self._credit_cell(c, V * same, V * differ, opened, st, apply)
        return credited

    def _sweep_partitions(self, st: _State) -> None:
        """At the deadline, before what is open is given up: each unfinished partition whose box
        holds both protected values is counted as a whole from both copies' linear bounds on its
        box (:meth:`_twin_box_counts`, the forward pass on that one twin box), largest
        open volume first, until the deadline. The search has decided part of the partition
        exactly and the counts bound the whole from below, so the partition holds at least
        ``max(decided, counted)`` fair individuals and as many unfair ones: true fair (unfair)
        individuals are at least the count, and at least those already proven; both can be taken
        (the true fair plus unfair are at most the partition's points). Its open units stay
        undecided, as they would without the sweep."""
        if len(self.values) != 2:
            return
        parts = np.flatnonzero(~st.done)
        inside = np.all((self.values[None] >= st.plo[parts][:, None, self.prot])
                        & (self.values[None] <= st.phi[parts][:, None, self.prot]), axis=2).all(1)
        parts = parts[inside]
        if len(parts) == 0:
            return
        open_pts = np.array([float(st.points[p] - st.fair[p] - st.unfair[p]) for p in parts])
        parts = parts[np.argsort(-open_pts, kind="stable")]
        u = self.initial_units(st.plo[parts], st.phi[parts], parts)
        zlo, zhi, own, _, _ = self._twin_boxes(u)
        for b, same, differ in self._twin_box_counts(zlo, zhi):
            p = int(u.part[own[b]])
            st.fair[p] = max(st.fair[p], 2 * same)  # both values: each point is two individuals
            st.unfair[p] = max(st.unfair[p], 2 * differ)

    # ----- exact counts on linear units --------------------------------------------------------
    def _counting(self) -> bool:
        """Whether units may be counted exactly on linear boxes: no relaxed attribute (any number of
        protected values), ``count_points`` > 0, bisection has stalled
        (:meth:`_note_gain`), and (once LINEAR_PROBE twin boxes were seen) at least LINEAR_MIN
        of them linear: on models whose open boxes are rarely linear (AC-3: 0.15 %) the check
        costs more than the counts gain."""
        seen, linear = self.linear_seen
        if (seen >= LINEAR_PROBE and linear < LINEAR_MIN * seen) or self.stalled < self.cfg.count_stall_rounds:
            return False
        return self.cfg.count_points > 0 and self.unordered and len(self.values) >= 2

    def _count_now(self) -> bool:
        """Whether this round may count (:meth:`_counting`, and ``count_after`` seconds into the run)."""
        return self._counting() and time.perf_counter() - self.started >= self.cfg.count_after

    def _linear_boxes(self, tb, M: int) -> np.ndarray:
        """``(ok, patterns)``: ``ok`` (M,) marks the twin boxes whose ReLUs are all stable in both
        copies with one and the same activation pattern; ``patterns[k]`` (M, h_k) the active ReLUs
        of hidden layer k (meaningful where ``ok``). A ReLU is stable only when its float64 bound
        clears zero by ``1e-9 (1 + |bound|)``, far beyond the rounding of the forward pass, so the
        pattern holds for the real-arithmetic network."""
        ok = np.ones(M, dtype=bool)
        pats = []
        for lo, hi in tb.pre:
            lo, hi = lo.numpy(), hi.numpy()
            act, ina = lo > 1e-9 * (1 + np.abs(lo)), hi < -1e-9 * (1 + np.abs(hi))
            stable = act | ina
            ok &= stable[:M].all(1) & stable[M:].all(1) & (act[:M] == act[M:]).all(1)
            pats.append(act[:M])
        return ok, pats

    def _queue_linear(self, u: Units, tb, own) -> None:
        """Move open (unit, value)s of units of at most ``count_points`` free points whose twin boxes
        are all linear with one activation pattern (:meth:`_linear_boxes`) from the search to the
        count queue (:meth:`_count_job`): with ``s(x) = a . x + c`` on the box, every copy x_w of
        an individual x differs only in the protected value, ``s(x_w) = s(x) + delta_w``, and x
        flips iff ``s(x)`` lies in the union of the intervals between ``-delta_w`` and 0
        (:class:`~certprune.verifiers.linear_jobs.LinearJob`). One job per open value, or one for both of a binary attribute.
        Skipped: jobs whose error band would hold more than ``count_band`` points (spread evenly),
        whose interval ends lie more than ``count_z`` standard deviations from the mean of ``s``
        over the box (few points near the decision boundary: such units are cheap to bisect). The
        affine map is collapsed once per activation pattern (the boxes of a round share few)."""
        from certprune.verifiers.linear_count import collapse
        M, N, V = len(own), len(u), len(self.values)
        if M == 0 or tb.pre is None or len(tb.pre) != len(self.net.weights) - 1:
            return
        if any(lo.shape != (2 * M, w.shape[0]) for (lo, _), w in zip(tb.pre, self.net.weights)):
            return
        ok, pats = self._linear_boxes(tb, M)
        self.linear_seen = (self.linear_seen[0] + M, self.linear_seen[1] + int(ok.sum()))
        # a unit counts when each of its twin boxes is linear with the pattern of its first box
        pat = np.concatenate(pats, axis=1)
        first = np.full(N, M, dtype=np.int64)
        np.minimum.at(first, own, np.arange(M))
        unit_ok = (first < M) & (u.size <= self.cfg.count_points) & u.open.any(1)
        np.logical_and.at(unit_ok, own, ok & (pat == pat[np.minimum(first, M - 1)[own]]).all(1))
        cand = np.flatnonzero(unit_ok)
        if len(cand) == 0:
            return
        W = [w.double().numpy() for w in self.net.weights]
        B = [b.double().numpy() for b in self.net.biases]
        tau = np.zeros(N)
        if self.semantics is Semantics.FLOAT32:
            np.maximum.at(tau, own, np.maximum(tb.tau[0].numpy(), tb.tau[1].numpy()))
        keys, inv = np.unique(pat[first[cand]], axis=0, return_inverse=True)
        sizes = np.cumsum([0] + [p.shape[1] for p in pats])
        maps = [collapse(W, B, [key[sizes[i]:sizes[i + 1]] for i in range(len(pats))]) for key in keys]
        inv = inv.reshape(-1)
        a, c, aa, ca = (np.array([m[i] for m in maps])[inv] for i in range(4))
        eps = self._sum_error(aa, ca, u.lo[cand], u.hi[cand]) + tau[cand]
        widths = (u.hi[cand][:, self.free] - u.lo[cand][:, self.free] + 1).astype(np.int64)
        af = a[:, self.free]
        spread = (af * (widths - 1)).sum(1) / 2
        sd = np.sqrt((af ** 2 * ((widths.astype(np.float64) ** 2 - 1) / 12.0)).sum(1))
        near = self._near_boundary(u.lo[cand], a, c, spread, sd)
        # the units worth a look, found for all at once: a round holds thousands of candidates, and
        # a Python pass over each cost as much as the round's bounds (GC-4: 46 % of its first second)
        todo = np.flatnonzero(self._count_fits(af, widths, eps) & (near & u.open[cand]).any(1))
        new: list[LinearJob] = []
        for j in todo:
            k = cand[j]
            if self.no_count and self._unit_key(u, int(k)) in self.no_count:
                continue
            opened = np.flatnonzero(u.open[k])
            groups = [opened] if V == 2 else [[v] for v in opened]  # binary: one count serves both values
            for g in groups:
                v = int(g[0])
                if not near[j, v]:
                    continue
                x0 = u.lo[k].copy()
                x0[self.prot] = self.values[v]
                partners = np.delete(self.values, v, axis=0)
                deltas = ((partners - self.values[v]) * a[j, self.prot]).sum(1)
                t0, t1 = min(0.0, float(-deltas.max())), max(0.0, float(-deltas.min()))
                base = float((a[j] * x0).sum() + c[j])
                unit = u.take(np.array([k]))
                unit.open[:] = False
                unit.open[0, g] = True
                new.append(LinearJob(unit, af[j], base, widths[j], t0, t1, float(eps[j]), x0, partners, len(g),
                                     aa[j], float(ca[j]), float(tau[k])))
                self._run.st.units[unit.part[0]] += 1
                u.open[k, g] = False
        self.queue.add_many(new)

    def _near_boundary(self, lo: np.ndarray, a: np.ndarray, c: np.ndarray, spread: np.ndarray,
                       sd: np.ndarray) -> np.ndarray:
        """(J, V): whether the flip interval ``[t0, t1]`` of value v (between 0 and ``-(s(x_w) -
        s(x_v))`` over the partners w, :meth:`_queue_linear`) ends within ``count_z`` standard
        deviations ``sd`` of the mean ``base + spread`` of ``s`` over unit j's box with value v
        (``lo`` (J, n) the units' lower corners, ``s(x) = a . x + c``). A scheduling filter only:
        a count is exact wherever it runs."""
        sv = a[:, self.prot] @ self.values.T  # (J, V): the protected part of s per value
        mid = (a[:, self.free] * lo[:, self.free]).sum(1)[:, None] + sv + c[:, None] + spread[:, None]
        eye = np.eye(len(self.values), dtype=bool)[None]
        t0 = np.minimum(0.0, sv - np.where(eye, -np.inf, sv[:, None, :]).max(2))
        t1 = np.maximum(0.0, sv - np.where(eye, np.inf, sv[:, None, :]).min(2))
        return np.minimum(np.abs(mid - t0), np.abs(mid - t1)) <= self.cfg.count_z * sd[:, None]

    @staticmethod
    def _unit_key(u: Units, k: int) -> tuple:
        """Identity of unit ``k`` (partition and box): a unit whose count came back (more than
        ``count_band`` band points, though the even-spread estimate was small) is not queued
        again, or it would bounce between the pool and the queue without ever being split."""
        return int(u.part[k]), u.lo[k].tobytes(), u.hi[k].tobytes()

    def _sum_error(self, aa, ca, lo: np.ndarray, hi: np.ndarray):
        """The float64 error bound (``linear_count.error_bound``) of a count's sums over boxes
        lo/hi (row-wise), without the float32 margin: the terms are ``a_i lo_i`` in the base and
        ``a_i k_i``, 0 <= k_i <= hi_i - lo_i, in the partial sums, so ``|lo| + (hi - lo)`` bounds
        both (``max(|lo|, |hi|)`` does not)."""
        from certprune.verifiers.linear_count import error_bound
        xmax = np.abs(lo) + (hi - lo)
        xmax[..., self.prot] = np.abs(self.values).max(0)
        W = self.net.weights
        return error_bound(aa, ca, xmax, len(W), max(w.shape[1] for w in W))

    def _job_eps(self, job: LinearJob, lo: np.ndarray, hi: np.ndarray) -> float:
        """:meth:`_sum_error` of ``job``'s map on the box lo/hi (for boxes joined by :class:`JobQueue`)."""
        return float(self._sum_error(job.aa, job.ca, lo, hi))

    def _count_fits(self, a: np.ndarray, widths: np.ndarray, eps):
        """Whether a box (row-wise) is worth one count: at most ``count_points`` points and an
        even-spread band within ``count_band`` points; a unit is queued, and two are joined, only
        where it holds."""
        from certprune.verifiers.linear_count import band_size
        return (np.prod(np.asarray(widths, dtype=np.float64), axis=-1) <= self.cfg.count_points) & \
            (2 * band_size(a, widths, eps) <= self.cfg.count_band)

    def _count_job(self, job: LinearJob, st: _State) -> Units | None:
        """Count one queued linear job exactly (:func:`linear_count.count_between`, float64); the
        points computed within the error band of an interval end (float64 rounding, plus the
        float32 margin tau under ``float32``) are decided one by one (:meth:`decide_points`, with
        every partner value) and the count corrected. Returns the unit when its band holds more
        than ``count_band`` points (back to the search), else None."""
        from certprune.verifiers.linear_count import count_between
        u = job.unit
        cnt = count_between(job.a, job.base, job.widths, job.t0, job.t1, job.eps, self.cfg.count_band)
        if cnt is None:
            return u
        n_flip = cnt.inside
        if len(cnt.band):
            X = np.repeat(job.x0[None], len(cnt.band), axis=0)
            X[:, self.free] = u.lo[0, self.free] + cnt.band
            own = self.decide_points(X)
            flip = np.zeros(len(X), dtype=bool)
            for w in job.partners:
                Xp = X.copy()
                Xp[:, self.prot] = w
                flip |= self.decide_points(Xp) != own
            n_flip += int(flip.sum()) - int(cnt.band_inside.sum())
        p = int(u.part[0])
        size = box_points(u.lo, u.hi, self.free)[0]
        st.unfair[p] += job.mult * n_flip
        st.fair[p] += job.mult * (size - n_flip)
        self.cells.add(int(u.cell[0]), job.mult * (size - n_flip), job.mult * n_flip)
        return None

    @staticmethod
    def _decide_values(N, V, own, vi, vj, closed, sy, sp, unordered: bool = True):
        """Per unit and value: all its boxes closed (fair); some box with the own decision fixed
        one way and the partner's the other (unfair; ``proof`` = that box). The reverse view of a
        box (value vj) proves unfair in both modes (every (u, vj), u in the unit, is a partner of
        the box) but counts for fairness only for ``unordered`` boxes (an ordered box (vi, vj) says
        nothing about the partners of (u, vj), which its own boxes (vj, .) cover)."""
        fair = np.ones((N, V), dtype=bool)
        unfair = np.zeros((N, V), dtype=bool)
        proof = np.full((N, V), -1, dtype=np.int64)
        views = [(vi, sy, sp, True), (vj, sp, sy, unordered)]  # vj is vi's partner view, same length
        has = np.zeros((N, V), dtype=bool)
        for val, mine, other, for_fair in views:
            if for_fair:
                np.logical_and.at(fair, (own, val), closed)
                np.logical_or.at(has, (own, val), True)
            flip = (mine != 0) & (other == -mine)
            unfair[own[flip], val[flip]] = True
            proof[own[flip], val[flip]] = np.flatnonzero(flip)
        return fair & has, unfair, proof

    def _record_proven(self, u: Units, unfair, proof, zlo, zhi, st: _State) -> None:
        """A validated pair for partitions with proven-unfair values: centre and corners of the
        proving box (both of its points lie in the unit's partition, so either order is valid)."""
        for k, v in np.argwhere(unfair):
            p = int(u.part[k])
            if st.pairs[p]:
                continue
            b = proof[k, v]
            z = np.stack([np.floor((zlo[b] + zhi[b]) / 2), zlo[b], zhi[b]])
            self._fix_coupling(z)
            self._check_points(z, np.full(3, p), st)

    def _z3_stalled(self, zlo, zhi, own, vi, vj, closed, unstable, u: Units, st: _State) -> bool:
        """Open boxes of units that reached z3_depth (every z3_every splits) go to z3; unsat closes
        them. A unit stops at its first box z3 does not close (that value cannot be fair, and a
        z3 timeout on one box predicts more). Returns whether any box was closed."""
        if self.cfg.z3_depth <= 0:
            return False
        d = u.depth[own]
        eligible = ((unstable <= self.cfg.z3_unstable) | (d >= self.cfg.z3_depth)) & (d % self.cfg.z3_every == 0)
        failed: set = set()
        changed = False
        for b in np.flatnonzero(eligible & ~closed):
            k = int(own[b])
            vals = [int(vi[b])] + ([int(vj[b])] if self.unordered and u.open[k, vj[b]] else [])
            if k in failed or not any(u.open[k, v] for v in vals):
                continue
            if self.z3_calls >= self.cfg.z3_max_calls or time.monotonic() > self.deadline:
                break
            closed[b] = self._z3(zlo[b], zhi[b], int(u.part[k]), st)
            changed |= bool(closed[b])
            if not closed[b]:
                failed.add(k)
        return changed

    def _account(self, u: Units, fair: np.ndarray, unfair: np.ndarray, st: _State) -> None:
        """Add newly decided (unit, value) individuals to their partition's counts; close them."""
        fair = fair & u.open
        unfair = unfair & u.open & ~fair
        rows = np.flatnonzero(fair.any(1) | unfair.any(1))
        if len(rows):
            n = box_points(u.lo[rows], u.hi[rows], self.free)
            nf, nu, part = fair[rows].sum(1), unfair[rows].sum(1), u.part[rows]
            if float(np.sum(np.asarray(n, dtype=np.float64) * (nf + nu))) < 2.0 ** 62:
                # one int64 sum per partition (exact: the total fits) instead of a Python loop
                # over the thousands of rows a round decides
                parts, inv = np.unique(part, return_inverse=True)
                n64 = np.asarray(n, dtype=np.int64)
                for counts, dv in ((st.fair, nf), (st.unfair, nu)):
                    acc = np.zeros(len(parts), dtype=np.int64)
                    np.add.at(acc, inv.reshape(-1), n64 * dv)
                    for p, c in zip(parts.tolist(), acc.tolist()):
                        counts[p] += c
            else:
                for k, nk in zip(rows, n):
                    p = int(u.part[k])
                    st.fair[p] += nk * int(fair[k].sum())
                    st.unfair[p] += nk * int(unfair[k].sum())
        if len(rows):
            self._tally(u, rows, fair[rows].sum(1), unfair[rows].sum(1))
        u.open = u.open & ~fair & ~unfair

    def _weight(self, N: int, own, closed, tb) -> np.ndarray:
        """Scheduling weight of each unit's children: 1 - 0.9 h, h in [0, 1] the straddle of zero of
        its hardest open box (the larger of the two copies' ``2 min(hi, -lo) / (hi - lo)``, clipped:
        1 when a decision's bounds are centred on 0, a box on the decision boundary that needs many
        splits; 0 when neither straddles). The pool pops by open volume x weight, so boxes that can
        close soon go first; only the order changes, never a count."""
        h = np.maximum(_straddle(*(t.numpy() for t in tb.y)), _straddle(*(t.numpy() for t in tb.yp)))
        h[closed] = 0.0
        hard = np.zeros(N)
        np.maximum.at(hard, own, h)
        return 1.0 - STRADDLE_DISCOUNT * hard

    def _split(self, u: Units, score: np.ndarray, times: int = 1) -> Units:
        """Halve each unit along its highest-scoring splittable free feature (widest as tie-break),
        ``times`` times: a child is halved again on the parent's scores, the split feature's score
        halved with its width (FairQuant's score is proportional to the width); a child with no
        splittable free feature left is kept whole."""
        score = score.copy()
        for t in range(times):
            width = u.hi - u.lo
            s = np.where(width > 0, score + 1e-12 * width, -1.0)
            s[:, self.prot] = -1.0
            dim = np.argmax(s, axis=1)
            r = np.arange(len(u))
            ok = s[r, dim] >= 0  # some free feature is still wider than one value
            if t > 0 and not ok.all():
                keep = u.take(~ok)
                u, score, dim, r = u.take(ok), score[ok], dim[ok], np.arange(int(ok.sum()))
            else:
                keep = None
            mid = np.floor((u.lo[r, dim] + u.hi[r, dim]) / 2)
            hi1 = u.hi.copy()
            hi1[r, dim] = mid
            lo2 = u.lo.copy()
            lo2[r, dim] = mid + 1
            w = u.hi[r, dim] - u.lo[r, dim] + 1
            s1 = u.size * (mid - u.lo[r, dim] + 1) / w
            u = Units(np.concatenate([u.lo, lo2]), np.concatenate([hi1, u.hi]), np.concatenate([u.part, u.part]),
                      np.concatenate([u.open, u.open]), np.concatenate([u.depth + 1, u.depth + 1]),
                      np.concatenate([s1, u.size - s1]), np.concatenate([u.weight, u.weight]),
                      np.concatenate([u.cell, u.cell]))
            if t + 1 < times:
                score[r, dim] /= 2
                score = np.concatenate([score, score])
            if keep is not None:
                u = Units(*(np.concatenate([a, b]) for a, b in zip(u.astuple(), keep.astuple())))
                if t + 1 < times:
                    score = np.concatenate([score, np.zeros((len(keep), score.shape[1]))])
        return u

    # ----- driver ----------------------------------------------------------------------------
    def _emit(self, st: _State, p: int, verdict: Verdict) -> None:
        und = st.points[p] - st.fair[p] - st.unfair[p]
        now = time.perf_counter()
        st.done[p] = True
        st.outcomes.append(PartitionOutcome(int(st.pids[p]), verdict, st.fair[p], st.unfair[p], und, list(st.pairs[p]),
                                            int(st.nodes[p]), int(st.z3[p]),
                                            now - st.started[p] if np.isfinite(st.started[p]) else 0.0))

    def _emit_done(self, st: _State, parts: np.ndarray) -> None:
        """Emit the partitions among ``parts`` with no unit left (in the pool or the count queue)."""
        for p in parts:
            if st.units[p] == 0 and not st.done[p]:
                self._emit(st, p, Verdict.FALSIFIED if st.unfair[p] else Verdict.CERTIFIED)

    def _crown_on(self) -> bool:
        """Whether this round's twin boxes get the backward CROWN pass: while ``crown_value`` x its
        yield (the share of the boxes it bounded that it closed, of those the forward and
        pair-difference bounds left open; an average over recent rounds, 1 before any) is at
        least its share of the twin bounds' time, and on every ``crown_probe``-th round to measure
        again. A box the pass closes saves the bounds of its subtree, several boxes
        (``crown_value``). Measured (yield / share): GC-4 0 % / 24 %, BM-1 0.8 / 15, BM-8 0.3 / 14
        (off: GC-4 reaches FairQuant's 99.65 % in 0.14-0.15 s instead of 0.17-0.18, BM-1's
        86.41 % in 1.9-2.1 s instead of 2.1-2.2, BM-8's 76.28 % in 16.6-17.3 s instead of 18.4);
        GC-5 15 / 10, BM-4 4.1 / 10, BM-5 5 / 18 (on; GC-5 without it: 0.43-0.47 s instead of
        0.27-0.29). Bounds only get looser without it, never unsound."""
        if self.cfg.crown_value <= 0 or self.crown_yield * self.cfg.crown_value >= self.crown_share:
            return True
        return self.rounds % max(1, self.cfg.crown_probe) == 0

    def _round_size(self, base: int) -> int:
        """Units in the next round: ``base`` (a full batch), capped at ``max(round_share x
        elapsed, round_seconds) / unit_time`` (``unit_time``: seconds per unit of recent rounds)
        and at least ``first_round``. The pool pops the largest open volume first, and a round
        that takes the whole pool bounds its many small units before the pool is reordered: GC-5
        reached FairQuant's 99.80 % at the end of a 1,080-unit round (0.37-0.42 s with full
        rounds, 0.24-0.26 s with these; GC-4's 99.65 %: 0.20-0.22 s -> 0.16-0.18 s; 3 runs each).
        Only the order of work changes, never a count."""
        if self.unit_time <= 0.0 or self.cfg.round_share <= 0:
            return base
        cap = max(self.cfg.round_share * (time.perf_counter() - self.started), self.cfg.round_seconds) / self.unit_time
        return int(min(base, max(self.cfg.first_round, cap)))

    def _note_gain(self, gained: int, open_before: float) -> None:
        """Count the rounds in a row whose decided individuals were fewer than ``count_stall`` of
        the open volume of the round's units (``open_before``: a round of part of the pool,
        :meth:`_round_size`, is measured on what it bounded): exact counts start once
        ``count_stall_rounds`` such rounds have passed (and stay on). While bisection still
        decides a large share of what is open per round, it is cheaper than counting (GC-4: its
        first rounds decide 7-98 % of what is
        open each and take 99.65 % of the domain in ~0.15 s; counting from the start held its large
        linear units in the count queue and reached that share after ~2.6 s); on models where the
        search gains little per round from the start (GC-1, GC-3: 2-4 %) counting starts after
        ``count_stall_rounds`` rounds."""
        if self.stalled < self.cfg.count_stall_rounds:
            self.stalled = self.stalled + 1 if gained < self.cfg.count_stall * open_before else 0

    def _note_search(self, gained: int, seconds: float) -> None:
        """The search's recent rate (individuals decided per second of a round, an exponential
        average over rounds), against which :meth:`_count_queue` weighs the next count."""
        rate = gained / max(seconds, 1e-9)
        self.search_rate = rate if not np.isfinite(self.search_rate) else 0.7 * self.search_rate + 0.3 * rate

    def _count_queue(self, st: _State, pool: UnitPool, always: bool = False) -> np.ndarray:
        """Count the queued linear units, largest first, while counting's share of this run's time
        stays within ``count_share`` with the next count's estimated time (``count_rate`` x
        sqrt(points), learnt from the counts made), or within ``count_max_share`` where the next
        count decides more individuals per second than the search's recent rounds did
        (``search_rate``: on GC-1 the search gains little per round after the first seconds while
        a third of the domain waited in the queue); ``always``: no limit, the search has nothing
        left; never past the deadline; units whose band is too wide go back to the pool.
        Returns the partitions touched."""
        parts = []
        shown = time.perf_counter()
        order = sorted(self.queue.values(), key=lambda j: j.size)
        stop = self.deadline - self._sweep_need()  # the final sweep's time is not the queue's
        while order and time.monotonic() <= stop:
            job = order[-1]
            est = self.count_rate * np.sqrt(job.size)
            spent, elapsed = self.count_time + est, time.perf_counter() - self.started
            worth = spent <= self.cfg.count_max_share * elapsed and job.unit.volume()[0] >= self.search_rate * est
            if not always and spent > self.cfg.count_share * elapsed and not worth:
                break
            if stop < self.deadline and time.monotonic() + est > stop:  # would eat the sweep's time
                break
            order.pop()
            self.queue.discard(job)
            p = int(job.unit.part[0])
            st.units[p] -= job.n_units
            t0 = time.perf_counter()
            back = self._count_job(job, st)
            if back is not None and job.leaves is not None:  # the union's band is too wide: its leaves one by one
                backs = [b for b in (self._count_job(leaf, st) for leaf in job.leaves) if b is not None]
            else:
                backs = [] if back is None else [back]
            dt = time.perf_counter() - t0
            self.count_time += dt
            self.count_rate = 0.5 * self.count_rate + 0.5 * dt / max(1.0, np.sqrt(job.size))
            for back in backs:
                self.no_count.add(self._unit_key(back, 0))
                pool.add(back)
                st.units[p] += 1
            parts.append(p)
            if self.on_progress is not None and time.perf_counter() - shown >= 0.1:
                # a drain of the queue can run for many seconds (GC-1: 15 s of counts after one
                # round): without this the coverage curve stayed flat meanwhile and jumped after it
                self.on_progress(sum(st.fair), sum(st.unfair))
                shown = time.perf_counter()
        return np.array(parts, dtype=np.int64)

    def run(self, pids: np.ndarray, plo: np.ndarray, phi: np.ndarray, deadline: float,
            on_done: Callable[[list[PartitionOutcome]], None], chunk: int = 2000,
            tolerance_points: float = 0.0) -> None:
        """Decide the individuals of partitions ``pids`` (bounds plo/phi) until ``deadline``
        (time.monotonic) or until at most ``tolerance_points`` individuals are open, on the one
        search loop (:func:`search.run_search`: :meth:`start`, then :meth:`step` while
        :meth:`pending` and not :meth:`stopped`, then :meth:`finish`); ``on_done`` receives
        outcomes as partitions complete, and the unfinished ones at the end."""
        P = len(pids)
        self.deadline = deadline
        plo, phi = plo.astype(np.float64), phi.astype(np.float64)
        st = _State(plo, phi, np.asarray(pids), box_points(plo, phi), [0] * P, [0] * P,
                    np.zeros(P, np.int64), np.zeros(P, bool), np.full(P, np.inf),
                    np.zeros(P, np.int64), np.zeros(P, np.int64), [[] for _ in range(P)])
        # cfg.batch counts twin boxes: a unit has one per open (value, partner) pair, so a round of
        # cfg.batch units of a 5-valued attribute (Adult race: 10 pairs) bounded 10x as many boxes
        # and ran ~30 s, far past a 60 s deadline that is checked only between rounds
        V = len(self.values)
        per_round = max(1, self.cfg.batch // max(1, V * (V - 1) // (2 if self.unordered else 1)))
        per_copy_round = max(1, 2 * self.cfg.batch // V)  # copy mode: V evaluations per unit, 2 per pair box
        self._run = _Run(st, UnitPool(), on_done, chunk, tolerance_points, per_round, per_copy_round,
                         np.asarray([float(n) for n in st.points]))
        self.budget = max(0.0, deadline - time.monotonic())
        run_search(self, deadline)

    def start(self) -> None:
        """Reset the run's counters and load the first partitions' units."""
        self.queue.clear()
        self.cells = Cells()
        self.round_time = 0.0  # seconds of the last round (_sweep_due)
        self.sweep_off, self.probed = False, False  # (_probe_sweep)
        self.count_time, self.started = 0.0, time.perf_counter()
        self.no_count = set()
        self.linear_seen = (0, 0)  # twin boxes checked for linearity, and how many were
        self.stalled, self.search_rate, self.unit_time = 0, float("inf"), 0.0
        self.crown_yield, self.crown_share, self.rounds = 1.0, 0.0, 0
        self._load()

    def pending(self) -> bool:
        return len(self._run.pool) > 0 or bool(self.queue)

    def stopped(self) -> bool:
        """Whether at most ``tolerance_points`` individuals are open (pool, count queue, unloaded),
        or the time left is what the final sweep needs (:meth:`_sweep_due`)."""
        r = self._run
        return (r.tolerance > 0 and self._open_volume() <= r.tolerance) or self._sweep_due()

    def _sweep_due(self) -> bool:
        """Whether the search stops for the final sweep (:meth:`_sweep_cells`): the time left is
        at most its estimate (``SWEEP_SECONDS`` per cell and unfinished partition, at most
        ``sweep_share`` of the budget) plus the last round's time (a round runs to its end)."""
        if not self._sweepable() or not np.isfinite(self.deadline):
            return False
        return time.monotonic() + self._sweep_need() + self.round_time > self.deadline

    def _sweep_need(self) -> float:
        """The final sweep's estimated time: ``SWEEP_SECONDS`` per cell and unfinished partition, at
        most ``sweep_share`` of the budget (0 where it does not apply)."""
        if not self._sweepable() or self._run is None:
            return 0.0
        need = SWEEP_SECONDS * (len(self.cells) + int((~self._run.st.done).sum()))
        return min(need, self.cfg.sweep_share * self.budget)

    def _open_volume(self) -> float:
        r = self._run
        return r.pool.volume_sum() + self.queue.volume + float(r.unloaded.sum())

    def _load(self) -> None:
        """Keep at least 4 rounds' worth of units in the pool, loading partitions ``chunk`` at a time."""
        r, st = self._run, self._run.st
        P = len(st.pids)
        while len(r.pool) < 4 * self.cfg.batch and r.next_p < P:
            sel = np.arange(r.next_p, min(P, r.next_p + r.chunk))
            r.next_p = sel[-1] + 1
            r.pool.add(self.initial_units(st.plo[sel], st.phi[sel], sel))
            st.started[sel] = time.perf_counter()
            np.add.at(st.units, sel, 1)
            r.unloaded[sel] = 0.0

    def step(self) -> None:
        """One round: a batch of units through :meth:`_round` (or, with the pool empty, the count
        queue drained), the partitions it completed emitted, then the pool refilled."""
        r, st = self._run, self._run.st
        pool = r.pool
        if len(pool) == 0:  # only counts left
            self._count_queue(st, pool, always=True)
            self._emit_done(st, np.arange(len(st.pids)))
        else:
            decided_before = sum(st.fair) + sum(st.unfair)
            base = r.per_copy_round if self._copy_mode(self._count_now()) else r.per_round
            batch = pool.pop(self._round_size(base), drain=len(pool) > self.cfg.pool_cap)
            open_before = float(batch.volume().sum())
            np.subtract.at(st.units, batch.part, 1)
            t0 = time.perf_counter()
            kids = self._round(batch, st)
            dt = time.perf_counter() - t0
            self._note_search(sum(st.fair) + sum(st.unfair) - decided_before, dt)
            per = dt / max(1, len(batch))
            self.unit_time = per if self.unit_time == 0.0 else 0.5 * self.unit_time + 0.5 * per
            self.round_time = dt
            if self.trace:
                print(f"round n={len(batch)} depth={batch.depth.max()} kids={len(kids)} pool={len(pool)} "
                      f"t={time.perf_counter() - t0:.3f}")
            np.add.at(st.units, kids.part, 1)
            pool.add(kids)
            touched = [batch.part]
            if self.queue:
                touched.append(self._count_queue(st, pool))
            self._emit_done(st, np.unique(np.concatenate(touched)))
            self._note_gain(sum(st.fair) + sum(st.unfair) - decided_before, open_before)
            if self.on_progress is not None:
                self.on_progress(sum(st.fair), sum(st.unfair))
        if (not self.probed and self._sweepable() and self.cfg.sweep_probe > 0
                and time.perf_counter() - self.started >= self.cfg.sweep_probe * self.budget):
            self._probe_sweep(st)
        self._hand_on()
        self._load()

    def _hand_on(self) -> None:
        """Give ``on_done`` the outcomes emitted since the last call."""
        r = self._run
        if len(r.st.outcomes) > r.emitted:
            r.on_done(r.st.outcomes[r.emitted:])
            r.emitted = len(r.st.outcomes)

    def finish(self, timed_out: bool) -> None:
        """What is still open (queued for a count, in the pool, not loaded) stays undecided: the
        unfinished partitions are emitted as 'unknown' with their partial counts."""
        st = self._run.st
        if self._sweepable() and self.pending():  # what is open gets the final sweep's counts
            self._sweep_cells(st)
            self._sweep_partitions(st)
            if self.on_progress is not None:
                self.on_progress(sum(st.fair), sum(st.unfair))
        self.queue.clear()
        for p in np.flatnonzero(~st.done):
            self._emit(st, p, Verdict.UNKNOWN)
        self._hand_on()
