"""verify under the one soundness policy (certprune.semantics): exact is today's behaviour,
float32 adds the rigorous float32 rounding-error bound and refuses models with operators it does not
model (average pooling here)."""
import numpy as np
import pytest
import torch
from torch import nn

import certprune
from certprune.errors import ConfigError, UnsupportedModelError
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.verifiers.affine import AffineReluNet


def _cancelling_model():
    """Exact y = 2^-10 x1 + 8 |x2 - 0.5| > 0 on the box, but float32 execution reaches y <= 0."""
    m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        m[0].bias.copy_(torch.tensor([0.0, 0.0, -0.5, 0.5]))
        m[2].weight.copy_(torch.tensor([[10000.0, -(10000.0 - 2.0 ** -10), 8.0, 8.0]]))
        m[2].bias.zero_()
    prop = Property(InputRegion(np.array([1.7, 0.3]), np.array([1.9, 0.61])), (LinearConstraints([[1.0]], [0.0]),))
    return m, prop


def test_float32_semantics_does_not_certify_the_cancelling_net():
    # the case of test_redteam_soundness's xfail: exact semantics certifies it (true in real
    # arithmetic), while some float32 summation orders reach y <= 0 (the rounding error of
    # 10000 x1 - 9999.999 x1 is ~1e-3 against a true minimum of 2^-10 * 1.7 = 1.7e-3)
    m, prop = _cancelling_model()
    assert certprune.verify(m, prop, timeout=10).verdict.name == "CERTIFIED"
    r = certprune.verify(m, prop, timeout=10, config={"semantics": "float32"})
    assert r.verdict.name != "CERTIFIED"
    assert r.stats["semantics"] == "float32"


def test_float32_semantics_certifies_a_well_conditioned_net_and_exact_is_default():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        m[2].bias.fill_(50.0)  # the output stays far above 0 on the small box
    prop = Property(InputRegion(np.array([-0.1, -0.1]), np.array([0.1, 0.1])), (LinearConstraints([[1.0]], [0.0]),))
    r32 = certprune.verify(m, prop, timeout=10, config={"semantics": "float32"})
    r = certprune.verify(m, prop, timeout=10)
    assert r32.verdict.name == "CERTIFIED" and r.verdict.name == "CERTIFIED"
    assert r.stats["semantics"] == "exact"


def test_graph_float32_error_bounds_the_observed_float32_error():
    """bounds.float32 on a chain's graph (IBP node bounds over [-1, 1]^6) encloses float32 runs."""
    from certprune.bounds.float32 import output_error
    from certprune.bounds.ibp import ibp
    from certprune.graph import build_graph
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(30.0)
    net = AffineReluNet.from_module(m, (6,))
    x = torch.rand(4000, 6, dtype=torch.float64) * 2 - 1
    x32 = x.float()
    exact = net.forward(x32.double())
    with torch.no_grad():
        y32 = m(x32).double()
    g = build_graph(net)
    one = torch.ones(1, 6, dtype=torch.float64)
    err = output_error(g, ibp(g, -one, one))[0]
    observed = (y32 - exact).abs().max(0).values
    assert (observed <= err).all() and (observed > 0).any()
    assert (err < 1e-3 * exact.abs().max()).all()  # not vacuous: far below the outputs


def test_float32_semantics_refuses_a_conv_net_in_one_line():
    m = nn.Sequential(nn.Conv2d(1, 2, 2), nn.AvgPool2d(1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    prop = Property(InputRegion(np.zeros((1, 3, 3)), np.ones((1, 3, 3))), (LinearConstraints([[1.0]], [-1e6]),))
    with pytest.raises(UnsupportedModelError, match="chain MLPs"):
        certprune.verify(m, prop, timeout=5, config={"semantics": "float32"})


def test_unknown_semantics_is_a_config_error():
    m, prop = _cancelling_model()
    with pytest.raises(ConfigError, match="unknown semantics"):
        certprune.verify(m, prop, timeout=5, config={"semantics": "float16"})


def _write_instance(tmp_path):
    from certprune.io.onnx_export import save_onnx
    m, _ = _cancelling_model()
    model = tmp_path / "m.onnx"
    save_onnx(m, model, (2,))
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                    "(assert (>= X_0 1.7))\n(assert (<= X_0 1.9))\n(assert (>= X_1 0.3))\n(assert (<= X_1 0.61))\n"
                    "(assert (<= Y_0 0.0))\n")
    return model, prop


@pytest.mark.parametrize("semantics,word", [(None, "unsat"), ("float32", None)])
def test_cli_verify_semantics_flag_is_written_into_every_output(tmp_path, capsys, semantics, word):
    import json
    import tomllib

    from certprune.cli import main
    model, prop = _write_instance(tmp_path)
    res, stats = tmp_path / "r.txt", tmp_path / "s.json"
    argv = ["verify", str(model), str(prop), "--timeout", "20", "--results-file", str(res), "--stats-file", str(stats)]
    code = main(argv + (["--semantics", semantics] if semantics else []))
    out = capsys.readouterr().out.split()[0]
    name = semantics or "exact"
    assert (out == word) if word else (out != "unsat" and code in (0, 3))
    assert json.loads(stats.read_text())["semantics"] == name
    with open(str(res) + ".config.toml", "rb") as f:
        assert tomllib.load(f)["semantics"] == name


def test_cli_float32_semantics_on_a_conv_model_is_one_line_exit_2(tmp_path, capsys):
    from certprune.cli import main
    from certprune.io.onnx_export import save_onnx
    m = nn.Sequential(nn.Conv2d(1, 2, 2), nn.AvgPool2d(1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    save_onnx(m, tmp_path / "c.onnx", (1, 3, 3))
    decl = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))\n" for i in range(9))
    (tmp_path / "p.vnnlib").write_text(decl + "(declare-const Y_0 Real)\n(assert (<= Y_0 -1000000.0))\n")
    code = main(["verify", str(tmp_path / "c.onnx"), str(tmp_path / "p.vnnlib"), "--semantics", "float32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "chain MLPs" in err[0]


def test_certify_records_semantics_and_refuses_float32_on_conv(tmp_path):
    import json

    from certprune.verifiers.robustness import certify_robustness
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    X = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    with torch.no_grad():
        y = m(torch.from_numpy(X)).argmax(1).numpy()
    rep = certify_robustness(m, X, y, 1e-4, timeout=5, out_dir=tmp_path / "s", semantics="float32")
    assert rep.semantics == "float32" and rep.counts["certified"] == 3
    assert json.loads((tmp_path / "s" / "config.json").read_text())["semantics"] == "float32"
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["semantics"] == "float32"
    assert certify_robustness(m, X, y, 1e-4, timeout=5).semantics == "exact"
    from certprune.network import as_network
    conv = as_network(nn.Sequential(nn.Conv2d(1, 2, 2), nn.AvgPool2d(1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)), (1, 3, 3))
    with pytest.raises(UnsupportedModelError, match="chain MLPs"):
        certify_robustness(conv, np.zeros((1, 1, 3, 3), np.float32), np.zeros(1, np.int64), 1e-3, timeout=5,
                           semantics="float32")


def test_float32_semantics_refuses_a_float64_net_whose_weights_float32_rounds():
    # the bounds would use the float64 weights while the float32 run rounds them: no certificate
    m = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    with torch.no_grad():
        m[2].bias.fill_(50.0 + 1e-12)  # not a float32 number
    prop = Property(InputRegion(np.array([-0.1, -0.1]), np.array([0.1, 0.1])), (LinearConstraints([[1.0]], [0.0]),))
    with pytest.raises(UnsupportedModelError, match="weights exact in float32"):
        certprune.verify(m, prop, timeout=5, config={"semantics": "float32"})
    assert certprune.verify(m.float(), prop, timeout=10, config={"semantics": "float32"}).verdict.name == "CERTIFIED"
