"""Batched integer branch and bound over the twin boxes of many partitions at once.

Each box lives in twin coordinates z (see :mod:`certprune.verifiers.twin`) and belongs to one
partition. Per round, on a batch of boxes from many partitions:
1. boxes with at most ``enum_points`` integer points are enumerated exactly in float32 on the
   original model (the ground truth, so these boxes are closed or yield a counterexample);
2. the others get forward symbolic bounds (:mod:`twin_bounds`); a box is closed only when the
   bounds rule out a float32 flip including the rounding margin;
3. cheap falsification: the attack vertices and the center of every open box are run in float32;
4. open boxes that reached ``z3_depth`` splits go once to z3 on the reduced network (sound
   pre-activation bounds), else they are split in two along one integer dimension.
A partition is CERTIFIED when its last box closes, FALSIFIED as soon as a pair is found that is
valid (integral, inside domain and partition, protected differs, relaxed within delta) and
flips the float32 decision; what is open at the deadline is UNKNOWN. Split choice and candidate
points are heuristics; only bounds, exhaustive enumeration and z3 close boxes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from certprune.fairness_spec import FairnessSpec
from certprune.verifiers.affine import AffineReluNet
from certprune.verifiers.twin import TwinLayout, decision_logit_net, protected_pairs, twin_layout, valid_pairs
from certprune.verifiers.twin_bounds import twin_bounds


NEAR_ZERO = 1e-2  # batched logits this close to 0 are re-decided one input at a time
MAX_RECHECK = 10000


@dataclass(frozen=True)
class BabConfig:
    """Knobs of the engine (none affects soundness): batch size, exhaustive-enumeration size,
    a box goes to z3 (0 = never) once it has at most ``z3_unstable`` unstable ReLUs or reached
    ``z3_depth`` splits, and again every ``z3_every`` further splits; z3 timeout per box and z3
    calls per run."""

    batch: int = 4096
    enum_points: int = 64
    z3_depth: int = 20
    z3_unstable: int = -1
    z3_every: int = 4
    z3_timeout: float = 1.0
    z3_max_calls: int = 5000
    sweep_samples: int = 8
    max_sweeps: int = 6


@dataclass
class PartitionOutcome:
    """Verdict of one partition ('certified' | 'falsified' | 'unknown') with its counterexample
    pair (encoded integers) and float32 logits when falsified."""

    pid: int
    verdict: str
    x: np.ndarray | None = None
    x_prime: np.ndarray | None = None
    logit_x: float | None = None
    logit_x_prime: float | None = None
    nodes: int = 0
    z3_calls: int = 0
    seconds: float = 0.0


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


@dataclass
class _State:
    plo: np.ndarray
    phi: np.ndarray
    pids: np.ndarray
    open_count: np.ndarray
    done: np.ndarray
    started: np.ndarray
    nodes: np.ndarray
    z3: np.ndarray
    outcomes: list = field(default_factory=list)


class TwinBab:
    """The engine for one (model, spec); :meth:`run` decides a list of partitions."""

    def __init__(self, exact: AffineReluNet, decider: Float32Decider, spec: FairnessSpec, config: BabConfig):
        self.spec, self.cfg, self.decide = spec, config, decider
        self.layout: TwinLayout = twin_layout(spec)
        self.net = decision_logit_net(exact)
        self.last_abs = None
        if exact.output_dim == 2:
            w, b = exact.weights[-1], exact.biases[-1]
            self.last_abs = ((w[0].abs() + w[1].abs())[None], (b[0].abs() + b[1].abs())[None])
        self.z3_calls = 0
        self.deadline = float("inf")
        self._solver = None
        self.trace = False

    # ----- initial boxes -------------------------------------------------------------------
    def initial_boxes(self, plo: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All twin boxes (one per unordered protected pair) of partitions with bounds plo/phi."""
        L, prot = self.layout, list(self.layout.protected)
        keys = [tuple(r) for r in np.concatenate([plo[:, prot], phi[:, prot]], axis=1).astype(np.int64)]
        groups: dict[tuple, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(k, []).append(i)
        los, his, parts = [], [], []
        off = L.n + len(prot)
        for _, idx in groups.items():
            idx = np.asarray(idx)
            for a, b in protected_pairs(self.spec, plo[idx[0]], phi[idx[0]]):
                zlo = np.zeros((len(idx), L.dz))
                zhi = np.zeros((len(idx), L.dz))
                zlo[:, :L.n], zhi[:, :L.n] = plo[idx], phi[idx]
                for j, i in enumerate(prot):
                    zlo[:, i] = zhi[:, i] = a[j]
                    zlo[:, L.n + j] = zhi[:, L.n + j] = b[j]
                for j, (i, d) in enumerate(zip(L.relaxed, L.deltas)):
                    w = np.minimum(d, phi[idx, i] - plo[idx, i])
                    zlo[:, off + j], zhi[:, off + j] = -w, w
                los.append(zlo)
                his.append(zhi)
                parts.append(idx)
        if not los:  # no partition has two protected values: no twin box at all
            return np.zeros((0, L.dz)), np.zeros((0, L.dz)), np.zeros(0, dtype=np.int64)
        return np.concatenate(los), np.concatenate(his), np.concatenate(parts)

    # ----- helpers -------------------------------------------------------------------------
    def _tighten(self, zlo, zhi, part, st: _State) -> np.ndarray:
        """Intersect each relaxed offset with {d : x_r + d in the partition}; False = empty box."""
        L = self.layout
        off = L.n + len(L.protected)
        ok = np.ones(len(zlo), dtype=bool)
        for j, i in enumerate(L.relaxed):
            c = off + j
            zlo[:, c] = np.maximum(zlo[:, c], st.plo[part, i] - zhi[:, i])
            zhi[:, c] = np.minimum(zhi[:, c], st.phi[part, i] - zlo[:, i])
            ok &= zlo[:, c] <= zhi[:, c]
        return ok

    def _check_points(self, z: np.ndarray, part: np.ndarray, st: _State) -> None:
        """Run candidate twin points in float32; record the first valid flip per partition."""
        if len(z) == 0:
            return
        x, xp = self.layout.split(z)
        ok = valid_pairs(self.spec, x, xp, st.plo[part], st.phi[part])
        if not ok.any():
            return
        x, xp, part = x[ok], xp[ok], part[ok]
        d, lg = self.decide(x)
        dp, lgp = self.decide(xp)
        # the reference decision is the model run on one input alone; batched kernels may round
        # differently, so pairs with a near-zero batched logit are re-decided one input at a time
        near = np.flatnonzero((d == dp) & ((np.abs(lg) < NEAR_ZERO) | (np.abs(lgp) < NEAR_ZERO)))
        for k in near[:MAX_RECHECK]:
            d[k], dp[k] = self.decide(x[k:k + 1])[0][0], self.decide(xp[k:k + 1])[0][0]
        for k in np.flatnonzero(d != dp):
            p = int(part[k])
            if st.done[p]:
                continue
            # float32 results depend on the batch (kernel choice); the reported pair must also
            # flip when each input is run on its own, and those are the logits we report
            (d1,), (l1,) = self.decide(x[k:k + 1])
            (d2,), (l2,) = self.decide(xp[k:k + 1])
            if d1 == d2:
                continue
            lg[k], lgp[k] = l1, l2
            st.done[p] = True
            st.outcomes.append(PartitionOutcome(int(st.pids[p]), "falsified", x[k], xp[k], float(lg[k]), float(lgp[k]),
                                                int(st.nodes[p]), int(st.z3[p]), time.perf_counter() - st.started[p]))

    def _enumerate(self, zlo, zhi, part, st: _State) -> None:
        """Exhaustively check every integer point of small boxes (float32 ground truth)."""
        n = (zhi - zlo + 1).astype(np.int64)
        K = int(n.prod(axis=1).max())
        t = np.arange(K)[None, :].repeat(len(zlo), 0)
        count = n.prod(axis=1)
        pts = np.empty((len(zlo), K, zlo.shape[1]))
        rem = t.copy()
        for d in range(zlo.shape[1]):
            pts[:, :, d] = zlo[:, d:d + 1] + rem % n[:, d:d + 1]
            rem //= n[:, d:d + 1]
        mask = t < count[:, None]
        self._check_points(pts[mask], np.repeat(part, count), st)

    def _widened_pre(self, zlo, zhi, pre_t) -> list[tuple[np.ndarray, np.ndarray]]:
        """twin_bounds' float64 pre-activations widened outward per copy by smt.widen_bounds (so
        the phases z3 is told hold in exact arithmetic); each entry (2, h_k) for copies (x, x')."""
        from certprune.verifiers.smt import widen_bounds
        zmag = np.maximum(np.abs(zlo), np.abs(zhi))
        per_copy = []
        for c, Pm in enumerate((self.layout.P, self.layout.Pp)):
            mag = np.abs(Pm) @ zmag
            pc = [(l.numpy()[c], u.numpy()[c]) for l, u in pre_t]
            per_copy.append(widen_bounds(self.net, -mag, mag, pc))
        return [(np.stack([per_copy[0][k][0], per_copy[1][k][0]]), np.stack([per_copy[0][k][1], per_copy[1][k][1]]))
                for k in range(len(pre_t))]

    def _z3(self, zlo, zhi, p, st: _State) -> str:
        """One stalled box to z3 on the reduced network; returns 'closed', 'falsified' or 'open'."""
        if self._solver is None:
            from certprune.verifiers.fairness_smt import TwinSolver
            self._solver = TwinSolver(self.net, self.layout)
        lo_t, hi_t = torch.from_numpy(zlo[None]), torch.from_numpy(zhi[None])
        tb = twin_bounds(self.net, self.layout, lo_t, hi_t, self.last_abs, keep_pre=True)
        pre = self._widened_pre(zlo, zhi, tb.pre)
        self.z3_calls += 1
        st.z3[p] += 1
        status, z = self._solver.solve(zlo, zhi, st.plo[p], st.phi[p], pre,
                                       (float(tb.tau[0][0]), float(tb.tau[1][0])), self.cfg.z3_timeout)
        if status == "unsat":
            return "closed"
        if status == "sat":
            self._check_points(z[None], np.array([p]), st)
            if st.done[p]:
                return "falsified"
        return "open"

    # ----- one round -----------------------------------------------------------------------
    def _round(self, zlo, zhi, part, depth, st: _State):
        """Process one batch; returns the children (zlo, zhi, part, depth) still open."""
        np.add.at(st.nodes, part, 1)
        st.started[part] = np.minimum(st.started[part], time.perf_counter())
        keep = self._tighten(zlo, zhi, part, st) & ~st.done[part]
        npts = np.prod(zhi - zlo + 1, axis=1)
        small = keep & (npts <= self.cfg.enum_points)
        if small.any():
            self._enumerate(zlo[small], zhi[small], part[small], st)
        big = keep & ~small
        zlo, zhi, part, depth = zlo[big], zhi[big], part[big], depth[big]
        fresh = depth == 0  # falsify-first on new boxes: one cheap point may spare a bound pass
        if fresh.any():
            c = np.floor((zlo[fresh] + zhi[fresh]) / 2)
            self._fix_coupling(c, part[fresh], st)
            self._check_points(c, part[fresh], st)
            alive = ~st.done[part]
            zlo, zhi, part, depth = zlo[alive], zhi[alive], part[alive], depth[alive]
        if len(zlo) == 0:
            return None
        tb = twin_bounds(self.net, self.layout, torch.from_numpy(zlo), torch.from_numpy(zhi), self.last_abs)
        opn = ~tb.closed().numpy()
        zlo, zhi, part, depth = zlo[opn], zhi[opn], part[opn], depth[opn]
        score = tb.score.numpy()[opn]
        unst = tb.unstable.numpy()[opn]
        cands = [tb.vertices[0].numpy()[opn], tb.vertices[1].numpy()[opn], np.floor((zlo + zhi) / 2)]
        for c in cands:
            self._fix_coupling(c, part, st)
            self._check_points(c, part, st)
        alive = ~st.done[part]
        zlo, zhi, part, depth, score = zlo[alive], zhi[alive], part[alive], depth[alive], score[alive]
        unst = unst[alive]
        if len(zlo) == 0:
            return None
        if self.cfg.z3_depth > 0:
            eligible = (unst <= self.cfg.z3_unstable) | (depth >= self.cfg.z3_depth)
            stalled = np.flatnonzero(eligible & (depth % self.cfg.z3_every == 0))
            drop = np.zeros(len(zlo), dtype=bool)
            for k in stalled:
                if self.z3_calls >= self.cfg.z3_max_calls or time.monotonic() > self.deadline:
                    break
                drop[k] = self._z3(zlo[k], zhi[k], int(part[k]), st) != "open"
            keep = ~drop & ~st.done[part]
            zlo, zhi, part, depth, score = zlo[keep], zhi[keep], part[keep], depth[keep], score[keep]
        return self._split(zlo, zhi, part, depth, score)

    def _fix_coupling(self, z: np.ndarray, part: np.ndarray, st: _State) -> None:
        L = self.layout
        off = L.n + len(L.protected)
        for j, i in enumerate(L.relaxed):
            z[:, off + j] = np.clip(z[:, off + j], st.plo[part, i] - z[:, i], st.phi[part, i] - z[:, i])

    @staticmethod
    def _split(zlo, zhi, part, depth, score):
        """Halve each box along its highest-scoring splittable dimension (widest as tie-break)."""
        width = zhi - zlo
        s = np.where(width > 0, score + 1e-12 * width, -1.0)
        dim = np.argmax(s, axis=1)
        r = np.arange(len(zlo))
        mid = np.floor((zlo[r, dim] + zhi[r, dim]) / 2)
        hi1 = zhi.copy()
        hi1[r, dim] = mid
        lo2 = zlo.copy()
        lo2[r, dim] = mid + 1
        return (np.concatenate([zlo, lo2]), np.concatenate([hi1, zhi]), np.concatenate([part, part]),
                np.concatenate([depth + 1, depth + 1]))

    def _sweep(self, st: _State, chunk: int, deadline: float, rng: np.random.Generator) -> None:
        """Falsification sweep over every partition before any bound: box centres and
        ``sweep_samples`` random integer points per twin box (a heuristic; it only finds pairs)."""
        for s0 in range(0, len(st.pids), chunk):
            if time.monotonic() > deadline:
                return
            sel = np.arange(s0, min(len(st.pids), s0 + chunk))
            sel = sel[~st.done[sel]]
            if len(sel) == 0:
                continue
            zlo, zhi, part = self.initial_boxes(st.plo[sel], st.phi[sel])
            part = sel[part]
            ok = self._tighten(zlo, zhi, part, st)
            zlo, zhi, part = zlo[ok], zhi[ok], part[ok]
            if len(zlo) == 0:
                continue
            zs, ys = [], []
            for k in range(self.cfg.sweep_samples + 1):
                live = ~st.done[part]
                z = np.floor((zlo + zhi) / 2) if k == 0 else np.floor(rng.uniform(zlo, zhi + 1))
                z = np.minimum(z, zhi)
                self._fix_coupling(z, part, st)
                self._check_points(z[live], part[live], st)
                zs.append(z)
                ys.append(self.decide(self.layout.split(z)[0])[1])
            # pair the i-th highest logit with the i-th lowest and bisect every pair whose
            # decisions differ: flips sit next to the decision boundary
            Z, Y = np.stack(zs, 1), np.stack(ys, 1)
            order = np.argsort(-Y, axis=1)
            h = Z.shape[1] // 2
            r = np.arange(len(Z))[:, None]
            a, b = Z[r, order[:, :h]], Z[r, order[:, ::-1][:, :h]]
            ya, yb = Y[r, order[:, :h]], Y[r, order[:, ::-1][:, :h]]
            use = ((ya > 0) & (yb <= 0) & ~st.done[part][:, None]).ravel()
            self._bisect(a.reshape(-1, Z.shape[2]), b.reshape(-1, Z.shape[2]), use, np.repeat(part, h), st)

    def _bisect(self, a: np.ndarray, b: np.ndarray, use: np.ndarray, part: np.ndarray, st: _State) -> None:
        """Walk the segment between a point decided 'yes' (a) and one decided 'no' (b) towards the
        decision boundary, checking every midpoint as a candidate pair (flips live there)."""
        a, b, part = a[use], b[use], part[use]
        for _ in range(40):
            if len(a) == 0 or np.all(np.abs(a - b).max(axis=1) <= 1):
                break
            m = np.floor((a + b) / 2)
            self._fix_coupling(m, part, st)
            self._check_points(m, part, st)
            yes = self.decide(self.layout.split(m)[0])[0]
            a = np.where(yes[:, None], m, a)
            b = np.where(yes[:, None], b, m)
            live = ~st.done[part]
            a, b, part = a[live], b[live], part[live]
        self._check_points(b, part, st)

    @staticmethod
    def _finish_empty(sel: np.ndarray, st: _State) -> None:
        """Partitions without any twin box (a single protected value) are vacuously certified."""
        for p in sel[st.open_count[sel] == 0]:
            st.done[p] = True
            st.outcomes.append(PartitionOutcome(int(st.pids[p]), "certified"))

    # ----- driver --------------------------------------------------------------------------
    def run(self, pids: np.ndarray, plo: np.ndarray, phi: np.ndarray, deadline: float,
            on_done: Callable[[list[PartitionOutcome]], None], chunk: int = 2000) -> None:
        """Decide partitions ``pids`` (bounds plo/phi) until ``deadline`` (time.monotonic);
        ``on_done`` receives outcomes as they finish, and the undecided ones at the end."""
        P = len(pids)
        self.deadline = deadline
        st = _State(plo.astype(np.float64), phi.astype(np.float64), np.asarray(pids), np.zeros(P, np.int64),
                    np.zeros(P, bool), np.full(P, np.inf), np.zeros(P, np.int64), np.zeros(P, np.int64))
        stack: list[tuple] = []
        next_p = emitted = 0
        # repeat the sweep (fresh random points) while it keeps paying off, within half the budget
        half = time.monotonic() + 0.5 * max(0.0, deadline - time.monotonic())
        rng = np.random.default_rng(0)
        for _ in range(self.cfg.max_sweeps):
            before = int(st.done.sum())
            self._sweep(st, chunk, half, rng)
            open_left = P - int(st.done.sum())
            if open_left == 0 or int(st.done.sum()) - before < 0.05 * (P - before):
                break
        while True:
            if len(st.outcomes) > emitted:
                on_done(st.outcomes[emitted:])
                emitted = len(st.outcomes)
            size = sum(len(b[0]) for b in stack)
            while size < self.cfg.batch and next_p < P:
                sel = np.arange(next_p, min(P, next_p + chunk))
                next_p = sel[-1] + 1
                sel = sel[~st.done[sel]]
                if len(sel) == 0:
                    continue
                zlo, zhi, part = self.initial_boxes(st.plo[sel], st.phi[sel])
                part = sel[part]
                np.add.at(st.open_count, part, 1)
                self._finish_empty(sel, st)
                stack.append((zlo, zhi, part, np.zeros(len(part), np.int64)))
                size += len(part)
            if not stack:
                break
            if time.monotonic() > deadline:
                break
            zlo, zhi, part, depth = stack.pop()
            if len(zlo) > self.cfg.batch:
                b = self.cfg.batch
                stack.append((zlo[b:], zhi[b:], part[b:], depth[b:]))
                zlo, zhi, part, depth = zlo[:b], zhi[:b], part[:b], depth[:b]
            np.subtract.at(st.open_count, part, 1)
            t0, z0 = time.perf_counter(), self.z3_calls
            kids = self._round(zlo.copy(), zhi.copy(), part, depth, st)
            if self.trace:
                print(f"round n={len(zlo)} depth={depth.max()} kids={0 if kids is None else len(kids[0])} "
                      f"z3={self.z3_calls - z0} t={time.perf_counter() - t0:.3f} done={st.done.sum()}")
            if kids is not None and len(kids[0]):
                np.add.at(st.open_count, kids[2], 1)
                stack.append(kids)
            fin = np.unique(part)
            fin = fin[(st.open_count[fin] == 0) & ~st.done[fin]]
            now = time.perf_counter()
            for p in fin:
                st.done[p] = True
                st.outcomes.append(PartitionOutcome(int(st.pids[p]), "certified", nodes=int(st.nodes[p]),
                                                    z3_calls=int(st.z3[p]), seconds=now - st.started[p]))
            if len(st.outcomes) > emitted:
                on_done(st.outcomes[emitted:])
                emitted = len(st.outcomes)
        if len(st.outcomes) > emitted:
            on_done(st.outcomes[emitted:])
        rest = [PartitionOutcome(int(st.pids[p]), "unknown", nodes=int(st.nodes[p]), z3_calls=int(st.z3[p]))
                for p in np.flatnonzero(~st.done)]
        if rest:
            on_done(rest)
