"""z3 leaf for stalled twin boxes: integer inputs, exact rationals, neurons fixed from sound bounds.

The twin network is encoded once per engine (z3 Int inputs, exact rational weights, one Real per
neuron with ``h = If(p >= 0, p, 0)``) in a persistent solver; each box is a push/pop scope that
adds the box bounds, the coupled bounds of relaxed x' features, and the phase of every neuron
whose sound pre-activation bounds on the box (the caller passes them widened outward,
fairness_bab.TwinBab._widened_pre) make it stable (dead: ``p <= 0``, active: ``p >= 0``),
which lets z3 drop or linearise it. The violation carries the float32 margin (``y > -tau`` and
``y' <= tau'``, or the reverse), so ``unsat`` certifies the box for the float32 model; a ``sat``
model is only a candidate that the caller re-runs in float32.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np


def _q(v: float):
    import z3
    f = Fraction(float(v))
    return z3.RealVal(f"{f.numerator}/{f.denominator}")


class TwinSolver:
    """Persistent z3 encoding of the twin of a one-logit AffineReluNet (see module doc)."""

    def __init__(self, net, layout):
        import z3
        self.layout = layout
        self.s = z3.SolverFor("QF_LIRA")
        self.z = [z3.Int(f"z{i}") for i in range(layout.dz)]
        self.x: list[list] = []
        self.pre: list[list[list]] = []  # [copy][layer] -> list of pre-activation vars
        outs = []
        for c, Pm in enumerate((layout.P, layout.Pp)):
            x = [z3.Sum([z3.ToReal(self.z[j]) for j in np.flatnonzero(Pm[i])]) for i in range(layout.n)]
            self.x.append(x)
            h, pres = x, []
            for k, (w, b) in enumerate(zip(net.weights, net.biases)):
                w, b = w.numpy(), b.numpy()
                p = [z3.Real(f"p{c}_{k}_{i}") for i in range(w.shape[0])]
                for i in range(w.shape[0]):
                    terms = [_q(w[i, j]) * h[j] for j in np.flatnonzero(w[i])]
                    self.s.add(p[i] == z3.Sum(terms) + _q(b[i]) if terms else p[i] == _q(b[i]))
                if k == net.num_layers - 1:
                    outs.append(p[0])
                    break
                pres.append(p)
                h = [z3.If(v >= 0, v, z3.RealVal(0)) for v in p]
            self.pre.append(pres)
        self.y, self.yp = outs

    def solve(self, zlo: np.ndarray, zhi: np.ndarray, plo: np.ndarray, phi: np.ndarray,
              pre: list[tuple[np.ndarray, np.ndarray]], tau: tuple[float, float],
              timeout_s: float) -> tuple[str, np.ndarray | None]:
        """Decide one box; ``pre[k]`` = (lower, upper) pre-activations of layer k, each (2, h_k)
        for the copies (x, x'). Returns ('unsat'|'sat'|'unknown', z or None)."""
        import z3
        s = self.s
        s.push()
        try:
            s.set("timeout", max(1, int(timeout_s * 1000)))
            for i, v in enumerate(self.z):
                s.add(v >= int(np.ceil(zlo[i])), v <= int(np.floor(zhi[i])))
            for i in self.layout.relaxed:
                s.add(self.x[1][i] >= int(plo[i]), self.x[1][i] <= int(phi[i]))
            for c in range(2):
                for k, ps in enumerate(self.pre[c]):
                    l, u = pre[k][0][c], pre[k][1][c]
                    for i, v in enumerate(ps):
                        if u[i] <= 0:
                            s.add(v <= 0)
                        elif l[i] >= 0:
                            s.add(v >= 0)
            t, tp = _q(tau[0]), _q(tau[1])
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
