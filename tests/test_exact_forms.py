"""Bound forms that round outside the rigorous float64 margin are not used for proofs.

* ``verifiers.affine``: a chain whose affine runs are anything but one ``nn.Linear`` (composed
  Linear layers, convolutions, BatchNorm, input scaling) is bounded on its graph IR, one operator
  per layer with its own margin, not on the densified product (which rounds).
* ``verifiers.twin.exact_difference``: the two-class logit difference is exact or refused.
* ``Problem.confirm``: a candidate counts only when it violates the property run alone.
"""
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

import certprune
from certprune.errors import UnsupportedModelError
from certprune.graph import Graph
from certprune.results import Verdict
from certprune.specs import InputRegion, LinearConstraints, Property
from certprune.verifiers.affine import AffineReluNet, is_exact_chain
from certprune.verifiers.problem import model_forms, prepare
from certprune.verifiers.twin import exact_difference
from certprune.verifiers.verify import VerifyConfig

OFF = dict(attack_restarts=0, attack_samples=0, attack_corners=0, attack_odi_restarts=0)


def cancelling_pair() -> nn.Sequential:
    """Linear(1, 3) -> Linear(3, 1) with exact output y = 2^-30 x, whose float64 product has a
    rounding residue of about 1e-6 in its bias (the reviewer's densification counterexample):
    ``y > 0`` on [-1, 1] is FALSE (at every x <= 0) but held on the collapsed (W, b)."""
    rng = np.random.default_rng(0)
    for _ in range(2000):
        B1 = float(rng.uniform(1e9, 1e11))
        B2 = B1 - 2.0 ** int(rng.integers(10, 24))
        c1, delta = float(rng.uniform(0.5, 2.0)), 2.0 ** -30
        b2 = -(Fraction(c1) * (Fraction(B1) - Fraction(B2)))
        if float(b2) != b2:
            continue
        l1, l2 = nn.Linear(1, 3).double(), nn.Linear(3, 1).double()
        with torch.no_grad():
            l1.weight.copy_(torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64))
            l1.bias.copy_(torch.tensor([0.0, B1, B2], dtype=torch.float64))
            l2.weight.copy_(torch.tensor([[delta, c1, -c1]], dtype=torch.float64))
            l2.bias.copy_(torch.tensor([float(b2)], dtype=torch.float64))
        m = nn.Sequential(l1, l2)
        dense = AffineReluNet.from_module(m, (1,))
        if float(dense.biases[0][0]) - abs(float(dense.weights[0][0, 0])) > 1e-7:
            return m
    raise AssertionError("no cancelling parameters found")


def test_cancelling_linear_pair_is_not_certified():
    m = cancelling_pair()
    dense = AffineReluNet.from_module(m, (1,))
    assert not dense.exact
    # the collapsed form claims y > 0 on the whole box; the exact model is 2^-30 x
    assert float(dense.biases[0][0]) - abs(float(dense.weights[0][0, 0])) > 0
    form = model_forms(m, (1,))[0]
    assert isinstance(form, Graph)
    prop = Property(InputRegion(-np.ones(1), np.ones(1)), (LinearConstraints([[1.0]], [0.0]),))  # bad: y <= 0
    r = certprune.verify(m, prop, timeout=10, config=OFF)
    assert r.verdict is not Verdict.CERTIFIED, r.message


@pytest.mark.parametrize("model, shape, exact", [
    (nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Dropout(), nn.Linear(4, 2)), (3, 4), True),
    (nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2), nn.Identity()), (5,), True),
    (nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), (5,), False),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)), (1, 4, 4), False),
    (nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4).eval(), nn.ReLU(), nn.Linear(4, 2)), (5,), False),
])
def test_exact_chain_detection(model, shape, exact):
    assert is_exact_chain(model, shape) is exact
    form = model_forms(model.double().eval(), shape)[0]
    assert isinstance(form, AffineReluNet) is exact
    if exact:  # copied parameters, bit for bit
        lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert all(torch.equal(w, l.weight.double()) for w, l in zip(form.weights, lins))
        assert form.exact


def test_linear_on_last_axis_is_not_one_matrix():
    assert not is_exact_chain(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), (2, 4))


def test_graph_form_bounds_match_model_on_composed_layers():
    """The graph form of a non-exact chain computes the model (sampled points inside CROWN bounds)."""
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5), nn.Linear(5, 2)).double()
    m[1].running_mean.uniform_(-1, 1)
    m[1].running_var.uniform_(0.5, 2)
    m.eval()
    prop = Property(InputRegion(-np.ones(4), np.ones(4)), (LinearConstraints([[1.0, -1.0]], [0.0]),))
    pb = prepare(m, prop, VerifyConfig())
    from certprune.bounds.engine import root_lower
    lo, hi = torch.as_tensor(pb.lo)[None], torch.as_tensor(pb.hi)[None]
    low = root_lower(pb.graph, lo, hi, pb.spec.C, pb.spec.c, 0, pb.spec.tol)[0]
    x = torch.rand(4000, 4, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        y = m(x)
    val = (y @ pb.spec.C.T + pb.spec.c)
    assert bool((val >= low - 1e-12).all())


def test_exact_difference():
    a = torch.tensor([0.3, -1.5, 2.0], dtype=torch.float32).double()
    b = torch.tensor([0.1, 7.25, -3.0], dtype=torch.float32).double()
    d = exact_difference(a, b)
    assert all(Fraction(float(x)) == Fraction(float(p)) - Fraction(float(q)) for x, p, q in zip(d, a, b))
    with pytest.raises(UnsupportedModelError, match="exactly"):
        exact_difference(torch.tensor([2.0 ** 100], dtype=torch.float64), torch.tensor([2.0 ** -100], dtype=torch.float64))


def test_fairness_refuses_composed_chain(tmp_path):
    from certprune.network import as_network
    from certprune.verifiers.fairness import _prepare_model
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(UnsupportedModelError, match="single Linear"):
        _prepare_model(as_network(m))


def test_confirm_requires_the_single_point_run_to_violate():
    """A candidate that violates only in the batched float32 run (rounding differs there) is not
    a counterexample; one that violates alone is returned."""
    m = nn.Sequential(nn.Linear(2, 1))
    with torch.no_grad():
        m[0].weight.fill_(1.0)
        m[0].bias.zero_()
    prop = Property(InputRegion(-np.ones(2), np.ones(2)), (LinearConstraints([[1.0]], [0.0]),))  # bad: y <= 0
    pb = prepare(m, prop, VerifyConfig())
    real = pb.run32

    def batch_differs(x):  # in batches, outputs 1.0 lower: every point "violates" there
        y = real(x)
        return y - 1.0 if len(x) > 1 else y

    pb.run32 = batch_differs
    pts = np.array([[0.4, 0.3], [0.2, 0.2], [0.1, 0.2]])  # y = 0.7, 0.4, 0.3 > 0: safe
    assert pb.confirm(pts) is None
    pts = np.vstack([pts, [[-0.5, 0.1]]])  # y = -0.4: violates alone
    x = pb.confirm(pts)
    assert x is not None and np.allclose(x, [-0.5, 0.1])
    assert pb.falsified(x, {}, "test").verdict is Verdict.FALSIFIED


def composed_refine_model(seed: int = 2) -> nn.Sequential:
    """The review's refinement counterexample: y == -0.01 exactly on [0, 1]^64 through a ReLU of
    zb = 1e4 (w.(V a1 + beta) - w_P.(V_P a1 + beta_P)) == 0 (Linear after Linear, weights ~1e5,
    ~1e9 after composition): the float64 product of the two layers' rows is not the model."""
    g = torch.Generator().manual_seed(seed)
    d, h1, h = 64, 8, 16
    l1, la, lb = nn.Linear(d, h1).double(), nn.Linear(h1, 2 * h).double(), nn.Linear(2 * h, 1).double()
    l4, l5 = nn.Linear(1, 1).double(), nn.Linear(1, 1).double()
    V = torch.randn(h, h1, generator=g, dtype=torch.float64) * 1e5
    beta = torch.randn(h, generator=g, dtype=torch.float64) * 1e6
    w = torch.randn(h, generator=g, dtype=torch.float64) * 1e5
    P = torch.randperm(h, generator=g)
    with torch.no_grad():
        l1.weight.copy_(torch.randn(h1, d, generator=g, dtype=torch.float64) * 0.1)
        l1.bias.fill_(10.0)
        la.weight.copy_(torch.cat([V, V[P]]))
        la.bias.copy_(torch.cat([beta, beta[P]]))
        lb.weight.copy_(torch.cat([w, -w[P]]).unsqueeze(0) * 1e4)
        lb.bias.zero_()
        l4.weight.fill_(-1.0)
        l4.bias.fill_(0.01)
        l5.weight.fill_(-1.0)
        l5.bias.zero_()
    return nn.Sequential(l1, nn.ReLU(), la, lb, nn.ReLU(), l4, nn.ReLU(), l5)


def test_refinement_skips_composed_layers_and_does_not_certify(monkeypatch):
    from certprune.verifiers import problem, refine
    from certprune.verifiers.bounds import graph_of
    m = composed_refine_model()
    assert not refine.applies(graph_of(m, (64,)), 2)
    chain = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    assert refine.applies(problem.chain_graph(model_forms(chain, (64,))[0]), 2)
    # bad: y <= -0.005, TRUE everywhere (y == -0.01); with confirmation off the search must not certify
    monkeypatch.setattr(problem.Problem, "confirm", lambda self, pts: None)
    prop = Property(InputRegion(np.zeros(64), np.ones(64)), (LinearConstraints([[1.0]], [-0.005]),))
    r = certprune.verify(m, prop, timeout=30, config=OFF)
    assert r.verdict is not Verdict.CERTIFIED, r.message


def test_exact_leaves_use_the_largest_row_margin_of_a_disjunct():
    """An LP/MILP leaf decides a whole disjunct with one margin; it must be the largest of its
    rows' (float32 semantics adds a per-row tau: the smallest would refute a row early)."""
    from types import SimpleNamespace

    from certprune.verifiers.bab import BranchAndBound, Spec
    C = torch.eye(3, dtype=torch.float64)
    spec = Spec(C, torch.zeros(3, dtype=torch.float64), torch.tensor([0, 0, 1]),
                torch.tensor([1e-7, 3e-4, 2e-6], dtype=torch.float64), [], [])
    fake = SimpleNamespace(spec=spec)
    assert BranchAndBound._disjunct_tol(fake, 0) == pytest.approx(3e-4)
    assert BranchAndBound._disjunct_tol(fake, 1) == pytest.approx(2e-6)


# --- session-13 review (graph builder and chain detection) -----------------------------------

def _never_certified(m, prop):
    r = certprune.verify(m, prop, timeout=10, config=OFF)
    assert r.verdict is not Verdict.CERTIFIED, r.message


def test_batchnorm_is_not_folded_into_a_rounded_shift():
    """BatchNorm with mean ~1e33: folding b - mean * scale into one shift rounds by ~1e17, and a
    false property (y <= 1000 holds everywhere: y = 1790 x / 13) was certified."""
    r, k, w, e = 13, 2009, 1790, 100
    bn = nn.BatchNorm1d(1, eps=0.0)
    l1, l2 = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        bn.running_mean[:] = float(r * k) * 2.0 ** e
        bn.running_var[:] = r * r
        bn.weight[:] = w
        bn.bias[:] = float(w * k) * 2.0 ** e
        for lin in (l1, l2):
            lin.weight[:] = 1
            lin.bias[:] = 0
    m = nn.Sequential(l1, nn.ReLU(), bn, l2).eval()
    prop = Property(InputRegion(np.zeros(1), np.ones(1)), (LinearConstraints([[1.0]], [1000.0]),))
    _never_certified(m, prop)


def _assert_crown_contains(m, shape, n):
    """Native CROWN bounds of ``m`` on [-1, 1]^shape contain ``n`` sampled outputs."""
    from certprune.verifiers.bounds import compute_bounds
    lo, hi = -torch.ones(1, *shape, dtype=torch.float64), torch.ones(1, *shape, dtype=torch.float64)
    bd = compute_bounds(m, lo, hi, method="crown", engine="native", input_shape=shape)
    x = torch.rand(n, *shape, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        y = m(x)
    assert bool((y >= bd.lower - 1e-12).all() and (y <= bd.upper + 1e-12).all())


def test_batchnorm_graph_bounds_contain_the_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)).double()
    m[1].running_mean.uniform_(-2, 2)
    m[1].running_var.uniform_(0.1, 3)
    m.eval()
    _assert_crown_contains(m, (2, 4, 4), 3000)


def test_transposed_conv_is_read_off_exactly():
    """A bias of 2^93 swallowed the scaled unit columns of the old densifier (W read as 0); the
    bias-free unit basis gives W exactly, and the false property is not certified."""
    ct, lin, out = nn.ConvTranspose2d(1, 1, 1), nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        ct.weight[:] = 1
        ct.bias[:] = 2.0 ** 93
        lin.weight[:] = 1
        lin.bias[:] = -2.0 ** 93
        out.weight[:] = 1
        out.bias[:] = 0
    m = nn.Sequential(ct, nn.Flatten(), lin, nn.ReLU(), out).eval()
    from certprune.graph import build_graph
    g = build_graph(m, (1, 1, 1))
    dense = [n.op for n in g.nodes if type(n.op).__name__ == "Dense"]
    assert len(dense) == 1 and float(dense[0].linear.weight[0, 0]) == 1.0
    prop = Property(InputRegion(np.full((1, 1, 1), 2.0 ** 60), np.full((1, 1, 1), 2.0 ** 61)),
                    (LinearConstraints([[-1.0]], [-2.0 ** 59]),))  # bad: y >= 2^59, true everywhere
    _never_certified(m, prop)


def test_transposed_conv_dense_matches_the_module():
    from certprune.verifiers.affine import exact_dense
    torch.manual_seed(1)
    for ct in (nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, dilation=1),
               nn.ConvTranspose2d(2, 4, 2, stride=1, groups=2, dilation=2), nn.ConvTranspose1d(2, 2, 3, stride=3)):
        shape = (2, 4, 4) if isinstance(ct, nn.ConvTranspose2d) else (2, 5)
        w, b, out = exact_dense(ct, shape)
        x = torch.randn(5, *shape, dtype=torch.float64)
        with torch.no_grad():
            y = ct.double()(x).reshape(5, -1)
        assert torch.allclose(x.reshape(5, -1) @ w.T + b, y, atol=1e-12)


def test_partial_flatten_then_linear_is_not_a_dense_chain():
    """Flatten(start_dim=2) on (1, 6) keeps two axes: the chain check follows the real shape (it
    had assumed a flat one and bounded a densified, rounded W = 0)."""
    l1, l2 = nn.Linear(6, 1), nn.Linear(1, 1)
    with torch.no_grad():
        l1.weight[:] = 1
        l1.bias[:] = 2.0 ** 93
        l2.weight[:] = 1
        l2.bias[:] = -2.0 ** 93
    m = nn.Sequential(nn.Flatten(start_dim=2), nn.ReLU(), l1, nn.ReLU(), l2).eval()
    assert not is_exact_chain(m, (1, 6))
    assert isinstance(model_forms(m, (1, 6))[0], Graph)
    prop = Property(InputRegion(np.full((1, 6), 2.0 ** 60), np.full((1, 6), 2.0 ** 61)),
                    (LinearConstraints([[-1.0]], [-2.0 ** 59]),))
    _never_certified(m, prop)


class _Doubled(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


class _PlusOne(nn.Identity):
    def forward(self, x):
        return x + 1


class _Tagged(nn.Linear):  # a subclass that keeps Linear's forward: still a Linear
    tag = "ok"


@pytest.mark.parametrize("kind", ["Linear subclass", "Identity subclass", "forward hook", "pre hook"])
def test_modules_that_change_forward_are_refused(kind):
    first = _Doubled(3, 1) if kind == "Linear subclass" else nn.Linear(3, 1)
    mid = _PlusOne() if kind == "Identity subclass" else nn.Identity()
    if kind == "forward hook":
        first.register_forward_hook(lambda mod, inp, out: 3 * out)
    if kind == "pre hook":
        first.register_forward_pre_hook(lambda mod, inp: (inp[0] * 3,))
    m = nn.Sequential(first, mid, nn.ReLU(), nn.Linear(1, 1))
    assert not is_exact_chain(m, (3,))
    with pytest.raises(UnsupportedModelError):
        model_forms(m, (3,))


def test_any_subclass_or_instance_override_is_refused():
    """Exact types only: a subclass may override any helper (``__call__``, ``_conv_forward``), an
    instance attribute may shadow ``forward`` (session-13 review: each was bounded as the plain
    layer and certified y < 1.5 where y = 2x)."""
    import types as pytypes

    class CallTwice(nn.Linear):
        def __call__(self, x):
            return 2 * super().__call__(x)

    class ConvTwice(nn.Conv1d):
        def _conv_forward(self, x, w, b):
            return 2 * super()._conv_forward(x, w, b)

    lin = nn.Linear(3, 1)
    lin.forward = pytypes.MethodType(lambda self, x: 2 * nn.Linear.forward(self, x), lin)
    relu = nn.ReLU()
    relu.forward = pytypes.MethodType(lambda self, x: 2 * torch.relu(x), relu)
    cases = [(nn.Sequential(_Tagged(3, 2), nn.ReLU(), nn.Linear(2, 1)), (3,)),
             (nn.Sequential(CallTwice(3, 2), nn.ReLU(), nn.Linear(2, 1)), (3,)),
             (nn.Sequential(lin, nn.ReLU(), nn.Linear(1, 1)), (3,)),
             (nn.Sequential(nn.Linear(3, 2), relu, nn.Linear(2, 1)), (3,)),
             (nn.Sequential(ConvTwice(1, 1, 2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 1)), (1, 3))]
    for m, shape in cases:
        assert not is_exact_chain(m, shape)
        with pytest.raises(UnsupportedModelError):
            model_forms(m, shape)


def test_verify_refuses_a_hooked_model_in_one_line():
    m = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    m[0].register_forward_hook(lambda mod, inp, out: 3 * out)
    prop = Property(InputRegion(np.zeros(3), np.ones(3)), (LinearConstraints([[1.0]], [-100.0]),))
    with pytest.raises(UnsupportedModelError, match="hooks"):
        certprune.verify(m, prop, timeout=5)


def test_conv_same_padding_runs_on_the_graph():
    torch.manual_seed(2)
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.ReLU(), nn.Flatten(), nn.Linear(32, 1)).double().eval()
    _assert_crown_contains(m, (1, 4, 4), 2000)
    even = nn.Sequential(nn.Conv2d(1, 2, 2, padding="same"), nn.ReLU(), nn.Flatten(), nn.Linear(32, 1))
    with pytest.raises(UnsupportedModelError, match="padding"):
        model_forms(even, (1, 4, 4))


@pytest.mark.parametrize("model, shape", [
    (nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 1)), (1, 4, 4)),
    (nn.Sequential(nn.Linear(3, 4), nn.Flatten(), nn.ReLU(), nn.Linear(8, 1)), (2, 3)),
])
def test_input_shape_is_not_replaced_by_a_later_linear(model, shape):
    form, _, used = model_forms(model.double().eval(), shape)
    assert used == shape
    x = torch.randn(4, *shape, dtype=torch.float64)
    g = form if isinstance(form, Graph) else problem_graph(form)
    with torch.no_grad():
        assert torch.allclose(g.forward(x.reshape(4, *shape)), model(x).reshape(4, -1), atol=1e-12)


def problem_graph(form):
    from certprune.verifiers.problem import chain_graph
    return chain_graph(form)


def test_milp_leaf_only_on_the_models_own_rows():
    """The MILP leaf trusts HiGHS on the encoder's rows: never where they are float64 products of
    composed layers (the review refuted false disjuncts there); kept on chains of single Linears."""
    from certprune.graph.encode import encoding_exact
    from certprune.verifiers import problem
    from certprune.verifiers.bounds import graph_of
    chain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    assert encoding_exact(problem.chain_graph(model_forms(chain, (4,))[0]))
    assert not encoding_exact(graph_of(composed_refine_model(), (64,)))
    bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).double().eval()
    assert not encoding_exact(graph_of(bn, (4,)))
    m = composed_refine_model()
    prop = Property(InputRegion(np.zeros(64), np.ones(64)), (LinearConstraints([[1.0]], [-0.005]),))
    r = certprune.verify(m, prop, timeout=10, config={**OFF, "strategy": "relu", "milp_max_unstable": 48,
                                                        "milp_after": 0, "refine_layers": 0})
    assert r.verdict is not Verdict.CERTIFIED and not r.stats.get("milp_calls")


def test_conv_jacobian_rows_are_the_weights():
    """A convolution's encoder rows are its weights, copied: conv chains keep the MILP leaf."""
    from certprune.graph import ops_linear as L
    from certprune.graph.encode import encoding_exact, jacobian
    from certprune.verifiers.bounds import graph_of
    torch.manual_seed(4)
    m = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)).double()
    with torch.no_grad():
        m[0].weight.mul_(1e7).add_(torch.randn_like(m[0].weight) * 1e-9)
        m[0].bias.fill_(2.0 ** 60)
    g = graph_of(m, (2, 4, 4))
    assert encoding_exact(g)
    conv = next(n.op for n in g.nodes[1:] if isinstance(n.op, L.Conv))
    J, b = jacobian(lambda e: conv._conv(e, conv.weight, None), (2, 4, 4))
    assert not b.any()
    vals = set(np.abs(J.data).tolist())
    assert vals <= set(np.abs(conv.weight.numpy()).ravel().tolist())


def test_batchnorm_without_a_positive_variance_is_refused():
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():
        bn.running_var[:] = -1.0
    m = nn.Sequential(nn.Linear(2, 2), bn, nn.ReLU(), nn.Linear(2, 1)).eval()
    with pytest.raises(UnsupportedModelError, match="running_var"):
        model_forms(m, (2,))


def test_underflowing_batchnorm_scale_keeps_the_exact_value_inside():
    """BatchNorm weight 2^-1072, var 9: the real scale 2^-1072 / 3 rounds to a subnormal 25 % off;
    the scale's error bound carries an underflow term, so the bounds contain the exact output."""
    bn = nn.BatchNorm1d(1, eps=0.0).double()
    with torch.no_grad():
        bn.running_mean[:] = 0.0
        bn.running_var[:] = 9.0
        bn.weight[:] = 2.0 ** -1072
        bn.bias[:] = 0.0
    l1, l2 = nn.Linear(1, 1).double(), nn.Linear(1, 1).double()
    with torch.no_grad():
        l1.weight[:] = 2.0 ** 1000
        l1.bias[:] = 0.0
        l2.weight[:] = 2.0 ** 70
        l2.bias[:] = 0.0
    m = nn.Sequential(l1, bn, l2).eval()
    from certprune.verifiers.bounds import compute_bounds
    bd = compute_bounds(m, torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                        method="crown", engine="native")
    exact = Fraction(2) ** 1000 * Fraction(2) ** -1072 / 3 * Fraction(2) ** 70  # = 1/12
    assert Fraction(float(bd.lower[0, 0])) <= exact <= Fraction(float(bd.upper[0, 0]))


def test_onnx_folds_only_where_float32_holds_them(tmp_path):
    """The loader folds Gemm alpha/beta and a following Add into float32 parameters only where
    the fold is a float32 number (review: a 2^30 bias plus -1 folded to 2^30, certified)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from certprune.network import load_model

    def save(nodes, inits, name):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                              [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
        p = tmp_path / name
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(p))
        return p

    p = save([helper.make_node("Gemm", ["x", "B", "C"], ["h"]), helper.make_node("Add", ["h", "c"], ["y"])],
             {"B": [[1.0]], "C": [2.0 ** 30], "c": [[-1.0]]}, "fuse.onnx")
    net = load_model(p)
    x = torch.zeros(1, 1)
    assert float(net.module.double()(x.double())[0, 0]) == 2.0 ** 30 - 1
    p = save([helper.make_node("Gemm", ["x", "B", "C"], ["y"], alpha=float(np.float32(1 / 3)))],
             {"B": [[3.0 * 2 ** 30]], "C": [-2.0 ** 30]}, "alpha.onnx")
    with pytest.raises(UnsupportedModelError, match="alpha"):
        load_model(p)
