"""z3 leaf for stalled twin boxes: integer inputs, exact rationals, neurons fixed from sound bounds.

The twin graph (:func:`certprune.verifiers.twin.twin_graph`) is encoded once per engine by the
graph IR's z3 back end (:func:`certprune.graph.encode_z3.encode_z3`: z3 Int inputs z, exact
rational weights, one Real per pre-activation with the exact ReLU ``If(p > 0, p, 0)``) in a
persistent solver; each box is a push/pop scope that adds the box bounds, the coupled bounds of
relaxed x' features, and the phase of every neuron whose sound pre-activation bounds on the box
(the caller passes them widened outward, fairness_bab.TwinBab._widened_pre) make it stable
(dead: ``p <= 0``, active: ``p >= 0``), which lets z3 drop or linearise it. The violation
carries the float32 margin (``y > -tau`` and ``y' <= tau'``, or the reverse), so ``unsat``
certifies the box for the float32 model; a ``sat`` model is only a candidate that the caller
re-runs in float32.
"""
from __future__ import annotations

import numpy as np

from certprune.graph.encode_z3 import encode_z3, rational


class TwinSolver:
    """Persistent z3 encoding of a twin graph of a one-logit model (see module doc)."""

    def __init__(self, tg, layout):
        import z3
        self.layout = layout
        self.s = z3.SolverFor("QF_LIRA")
        self.z = [z3.Int(f"z{i}") for i in range(layout.dz)]
        enc = encode_z3(tg.graph, [z3.ToReal(v) for v in self.z], None, prefix="t", triangle=False)
        self.s.add(enc.constraints)
        self.xp = enc.values[tg.xp].t   # x' as terms of z (the relaxed features' coupled bounds)
        self.pre = enc.pre_vars         # ReLU node -> its pre-activation variables
        self.y, self.yp = enc.outputs

    def solve(self, zlo: np.ndarray, zhi: np.ndarray, plo: np.ndarray, phi: np.ndarray,
              pre: dict[int, tuple[np.ndarray, np.ndarray]], tau: tuple[float, float],
              timeout_s: float) -> tuple[str, np.ndarray | None]:
        """Decide one box; ``pre[node]`` = flat (lower, upper) pre-activations of a ReLU node of
        the twin graph, sound in exact arithmetic. Returns ('unsat'|'sat'|'unknown', z or None)."""
        import z3
        s = self.s
        s.push()
        try:
            s.set("timeout", max(1, int(timeout_s * 1000)))
            for i, v in enumerate(self.z):
                s.add(v >= int(np.ceil(zlo[i])), v <= int(np.floor(zhi[i])))
            for i in self.layout.relaxed:
                s.add(self.xp[i] >= int(plo[i]), self.xp[i] <= int(phi[i]))
            for node, (l, u) in pre.items():
                for i, v in enumerate(self.pre[node]):
                    if u[i] <= 0:
                        s.add(v <= 0)
                    elif l[i] >= 0:
                        s.add(v >= 0)
            t, tp = rational(tau[0]), rational(tau[1])
            s.add(z3.Or(z3.And(self.y > -t, self.yp <= tp), z3.And(self.yp > -tp, self.y <= t)))
            res = s.check()
            if res == z3.unsat:
                return "unsat", None
            if res == z3.sat:
                m = s.model()
                return "sat", np.array([m.eval(v, model_completion=True).as_long() for v in self.z], dtype=np.float64)
            return "unknown", None
        finally:
            s.pop()
