"""A residual ONNX and a twin-network ONNX (one input, Slice/Concat around two copies of a
small MLP, outputs [s(x), s(x')]) verify from ``certprune verify``: unsat and sat instances
decided as the exact MILP says, the sat witness re-checked with onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

from certprune.cli import main
from certprune.graph import build_graph
from certprune.io.onnx_export import save_onnx
from certprune.vnncomp import parse_result
from tests.graph_milp import milp_min
from tests.graph_nets import GRAPHS


def _vnnlib(lo, hi, a, b) -> str:
    """Violation a . y <= b over the box."""
    n, m = len(lo), len(a)
    s = "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + "".join(f"(declare-const Y_{j} Real)\n" for j in range(m))
    s += "".join(f"(assert (>= X_{i} {lo[i]:.9f}))\n(assert (<= X_{i} {hi[i]:.9f}))\n" for i in range(n))
    terms = " ".join(f"(* {a[j]:.9f} Y_{j})" for j in range(m))
    return s + f"(assert (<= (+ {terms}) {b:.9f}))\n"


@pytest.mark.parametrize("name", ["residual_relu_add", "twin_mlp"])
def test_graph_onnx_verifies_from_the_cli(name, tmp_path, capsys):
    import onnxruntime as ort
    make, shape = GRAPHS[name]
    m = make(11)
    onnx_path = save_onnx(m, tmp_path / f"{name}.onnx", shape)
    g = build_graph(m, shape)
    from certprune.io.onnx_ops import OnnxGraph
    from certprune.network import load_model
    assert isinstance(load_model(onnx_path).module, OnnxGraph)  # the loader keeps the DAG
    rng = np.random.default_rng(3)
    lo = np.round(rng.uniform(-1, 0.5, g.input_dim), 3)
    hi = np.round(lo + rng.uniform(0.2, 0.6, g.input_dim), 3)
    # twin: a = (1, -1) bounds s(x) - s(x'), the decision difference of the two copies
    a = np.array([1.0, -1.0]) if name == "twin_mlp" else rng.normal(size=g.output_dim)
    best = milp_min(g, lo, hi, a)
    cases = [((lo, hi), best - 0.05, "unsat"), ((lo, hi), best + 0.05, "sat")]
    for k, ((l, h), b, want) in enumerate(cases):
        prop = tmp_path / f"p{k}.vnnlib"
        prop.write_text(_vnnlib(l, h, a, b))
        res = tmp_path / f"r{k}.txt"
        rc = main(["verify", str(onnx_path), str(prop), "--timeout", "60", "--results-file", str(res)])
        assert (rc, capsys.readouterr().out.strip()) == (0, want)
        word, vals = parse_result(res.read_text())
        assert word == want
        if want == "sat":
            x = np.array([vals[f"X_{i}"] for i in range(g.input_dim)], dtype=np.float32)
            assert np.all(x >= l - 1e-6) and np.all(x <= h + 1e-6)
            sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            y = sess.run(None, {sess.get_inputs()[0].name: x.reshape(1, *shape)})[0].ravel().astype(np.float64)
            assert float(a @ y) <= b + 1e-6
