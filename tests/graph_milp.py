"""Test-only exact reference: the minimum of ``a . y`` over a box for a small ReLU graph, by a
MILP (big-M from interval bounds, scipy HiGHS). Written independently of the bound engine's
backward passes; supports Linear, ReLU, Add/Sub, Concat (1-D), Select, Scale and Reshape nodes."""
from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from certprune.bounds.ibp import ibp
from certprune.graph.ir import Graph


def milp_min(graph: Graph, lo: np.ndarray, hi: np.ndarray, a: np.ndarray) -> float:
    """Exact min of ``a . y`` over the box (y the flattened output)."""
    import torch
    ib = ibp(graph, torch.as_tensor(lo)[None], torch.as_tensor(hi)[None])
    off, n = [], 0
    for node in graph.nodes:
        off.append(n)
        n += node.size
    relus = [i for i, nd in enumerate(graph.nodes) if nd.op is not None and nd.op.kind == "relu"]
    boff = {}
    for i in relus:
        boff[i] = n
        n += graph.nodes[i].size
    rows, lb_, ub_ = [], [], []

    def eq(coefs: dict[int, float], rhs: float, lo_=None, hi_=None):
        r = np.zeros(n)
        for k, v in coefs.items():
            r[k] += v
        rows.append(r)
        lb_.append(rhs if lo_ is None else lo_)
        ub_.append(rhs if hi_ is None else hi_)

    for i, node in enumerate(graph.nodes[1:], start=1):
        k, o = node.op.kind, off[i]
        ins = [off[j] for j in node.inputs]
        if k == "linear":
            W, b = node.op.weight.numpy(), node.op.bias.numpy()
            for r in range(node.size):
                c = {o + r: 1.0}
                for q in range(W.shape[1]):
                    c[ins[0] + q] = c.get(ins[0] + q, 0.0) - W[r, q]
                eq(c, float(b[r]))
        elif k in ("add", "sub"):
            s = 1.0 if k == "add" else -1.0
            for r in range(node.size):
                eq({o + r: 1.0, ins[0] + r: -1.0, ins[1] + r: -s} if ins[0] != ins[1] else {o + r: 1.0, ins[0] + r: -1 - s}, 0.0)
        elif k == "concat":
            pos = 0
            for j, st in zip(node.inputs, ins):
                for r in range(graph.nodes[j].size):
                    eq({o + pos + r: 1.0, st + r: -1.0}, 0.0)
                pos += graph.nodes[j].size
        elif k == "select":
            for r, q in enumerate(node.op.index.tolist()):
                eq({o + r: 1.0, ins[0] + q: -1.0}, 0.0)
        elif k == "scale":
            ones = torch.ones(1, *node.shape, dtype=torch.float64)
            sc = (ones if node.op.scale is None else ones * node.op.scale).reshape(-1).numpy()
            sh = (ones * 0 if node.op.shift is None else ones * 0 + node.op.shift).reshape(-1).numpy()
            for r in range(node.size):
                eq({o + r: 1.0, ins[0] + r: -sc[r]}, float(sh[r]))
        elif k == "reshape":
            for r in range(node.size):
                eq({o + r: 1.0, ins[0] + r: -1.0}, 0.0)
        elif k == "relu":
            l = ib[node.inputs[0]][0].reshape(-1).numpy()
            u = ib[node.inputs[0]][1].reshape(-1).numpy()
            for r in range(node.size):
                y, z, d = o + r, ins[0] + r, boff[i] + r
                eq({y: 1.0, z: -1.0}, 0.0, 0.0, np.inf)                     # y >= z
                eq({y: 1.0, z: -1.0, d: -l[r]}, 0.0, -np.inf, -l[r])         # y <= z - l (1 - d)
                eq({y: 1.0, d: -u[r]}, 0.0, -np.inf, 0.0)                   # y <= u d
        else:
            raise ValueError(f"test MILP: no encoding for {k}")
    vlo, vhi = np.full(n, -np.inf), np.full(n, np.inf)
    vlo[:graph.input_dim], vhi[:graph.input_dim] = lo, hi
    integ = np.zeros(n)
    for i in relus:
        vlo[off[i]:off[i] + graph.nodes[i].size] = 0.0
        sl = slice(boff[i], boff[i] + graph.nodes[i].size)
        vlo[sl], vhi[sl], integ[sl] = 0.0, 1.0, 1
    c = np.zeros(n)
    c[off[graph.output]:off[graph.output] + graph.output_dim] = a
    res = milp(c, constraints=LinearConstraint(np.array(rows), lb_, ub_), integrality=integ, bounds=Bounds(vlo, vhi),
               options={"mip_rel_gap": 0, "presolve": True})
    assert res.status == 0, res.message
    return float(res.fun)
