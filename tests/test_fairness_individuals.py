"""Exact individual counts: the audit's proven fair / unfair / undecided equal a brute-force
count over every integer point of small domains (each input decided alone in float32), on fair,
unfair and mixed models, with relaxed and multi-valued protected attributes; proven-unfair boxes
are checked by sampling; a resumed audit keeps its counts."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from certprune.fairness_spec import FairnessSpec
from certprune.verifiers import fairness_bab
from certprune.verifiers.fairness import audit_fairness
from certprune.verifiers.fairness_bab import BabConfig
from test_fairness_exact import biased_mlp, small_spec

BOUNDS_ONLY = BabConfig(enum_points=0, z3_depth=0)  # every decision from bounds (or single points)


def _decide_alone(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """Float32 decision of each input run on its own (the reference decision of an individual)."""
    with torch.no_grad():
        out = np.concatenate([model(torch.tensor(x[None], dtype=torch.float32)).numpy() for x in X])
    return out[:, 0] > 0 if out.shape[1] == 1 else np.argmax(out, axis=1) == 1


def brute_counts(model: nn.Module, spec: FairnessSpec) -> tuple[int, int, set]:
    """(fair, unfair, set of unfair points) over every integer point of the domain: x is unfair
    iff some x' of the domain, differing on a protected feature, relaxed ones within delta and
    the rest equal, gets the other decision."""
    pts = list(itertools.product(*[range(int(l), int(h) + 1) for l, h in zip(spec.lower, spec.upper)]))
    dec = dict(zip(pts, _decide_alone(model, np.array(pts, dtype=np.float64))))
    prot, rel = set(spec.protected_indices), dict(zip(spec.relaxed_indices, spec.relaxed_deltas))
    offs = [range(-rel.get(i, 0), rel.get(i, 0) + 1) if i not in prot else
            range(int(spec.lower[i]), int(spec.upper[i]) + 1) for i in range(spec.num_features)]
    unfair = set()
    for x in pts:
        for c in itertools.product(*offs):
            xp = tuple(c[i] if i in prot else x[i] + c[i] for i in range(len(x)))
            if xp in dec and any(xp[i] != x[i] for i in prot) and dec[xp] != dec[x]:
                unfair.add(x)
                break
    return len(pts) - len(unfair), len(unfair), unfair


def _check(res, model, spec):
    fair, unfair, _ = brute_counts(model, spec)
    ind = res.summary["individuals"]
    assert ind == {"total": fair + unfair, "fair": fair, "unfair": unfair, "undecided": 0}
    assert all(type(v) is int for v in ind.values())
    return fair, unfair


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("relaxed", [{}, {"a": 1}])
def test_counts_equal_brute_force(seed, relaxed):
    model, spec = biased_mlp(seed), small_spec(relaxed=relaxed)
    for size, cfg, sem in ((4, None, "exact"), (None, None, "float32"), (None, BOUNDS_ONLY, "exact"),
                           (None, BOUNDS_ONLY, "float32")):
        res = audit_fairness(model, spec, size, timeout=60, progress=False, config=cfg, semantics=sem, samples=0)
        _check(res, model, spec)
        assert res.summary["semantics"] == sem


def test_fixture_family_has_fair_unfair_and_mixed_models():
    """A model ignoring p (all fair), one deciding by p alone (all unfair) and a mixed one."""
    spec = small_spec()
    fair_m, unfair_m = biased_mlp(0), biased_mlp(0)
    with torch.no_grad():
        fair_m[0].weight[:, 2] = 0.0
        unfair_m[0].weight.zero_()
        unfair_m[0].weight[:, 2] = 1.0
        unfair_m[0].bias.zero_()
        for m in unfair_m[2:]:
            if isinstance(m, nn.Linear):
                m.weight.fill_(1.0)
                m.bias.zero_()
        unfair_m[-1].bias.fill_(-0.5)
    for model, want in ((fair_m, "fair"), (unfair_m, "unfair"), (biased_mlp(2), "mixed")):
        res = audit_fairness(model, spec, None, timeout=60, progress=False, config=BOUNDS_ONLY)
        fair, unfair = _check(res, model, spec)
        assert {"fair": unfair == 0, "unfair": fair == 0, "mixed": fair > 0 and unfair > 0}[want]
        assert res.summary["fair_on_domain"] == (want == "fair")
        assert res.summary["verdict"] == {"fair": "certified", "unfair": "falsified", "mixed": "falsified"}[want]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_valued_and_several_protected_attributes(seed):
    """p in {0, 1, 2} and {0..3} (every pair of values; one copy per value, both semantics), p
    with a second protected attribute b (a 6-valued product), and with a relaxed attribute
    (twin pair boxes)."""
    model = biased_mlp(seed)
    for spec in (FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [5, 3, 2, 6], ("p",)),
                 FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [9, 3, 3, 8], ("p",)),
                 FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [5, 2, 1, 6], ("p", "b")),
                 FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [5, 2, 2, 6], ("p", "b"), {"c": 1})):
        for cfg, sem in ((None, "exact"), (BOUNDS_ONLY, "exact"), (BOUNDS_ONLY, "float32")):
            _check(audit_fairness(model, spec, None, timeout=60, progress=False, config=cfg, semantics=sem),
                   model, spec)


@pytest.mark.parametrize("top", [1, 2, 3])
def test_proven_unfair_boxes_hold_on_samples(monkeypatch, top):
    """Every box the bounds prove unfair (twin pair boxes for 2 values; one copy per value,
    ``TwinBab._round_copies``, for 3 and 4): sampled individuals in it all flip (brute force),
    and so does every individual of a box proven fair (none flips)."""
    model, spec = biased_mlp(1), FairnessSpec(("a", "b", "p", "c"), [0, 0, 0, 0], [15, 9, top, 12], ("p",))
    unfair_boxes, fair_boxes, copy_rounds = [], [], []
    orig, orig_copies = fairness_bab.TwinBab._account, fairness_bab.TwinBab._round_copies

    def spy(self, u, fair, unfair, st):
        for k, v in np.argwhere(unfair & u.open & ~fair):
            unfair_boxes.append((u.lo[k].copy(), u.hi[k].copy(), self.values[v].copy()))
        for k, v in np.argwhere(fair & u.open):
            fair_boxes.append((u.lo[k].copy(), u.hi[k].copy(), self.values[v].copy()))
        return orig(self, u, fair, unfair, st)

    def spy_copies(self, *a):
        copy_rounds.append(1)
        return orig_copies(self, *a)
    monkeypatch.setattr(fairness_bab.TwinBab, "_account", spy)
    monkeypatch.setattr(fairness_bab.TwinBab, "_round_copies", spy_copies)
    for sem in ("exact", "float32"):
        unfair_boxes.clear(), fair_boxes.clear(), copy_rounds.clear()
        res = audit_fairness(model, spec, None, timeout=60, progress=False, config=BOUNDS_ONLY, semantics=sem)
        _, _, truth = brute_counts(model, spec)
        assert len(unfair_boxes) > 0 and len(fair_boxes) > 0
        assert bool(copy_rounds) == (top > 1)
        rng = np.random.default_rng(0)
        for boxes, want in ((unfair_boxes, True), (fair_boxes, False)):
            for lo, hi, val in boxes[:300]:
                for _ in range(20):
                    x = rng.integers(lo, hi + 1)
                    x[2] = val[0]
                    assert (tuple(int(v) for v in x) in truth) == want
        assert res.summary["individuals"]["unfair"] == len(truth)


def test_resume_keeps_counts_and_time(tmp_path):
    model, spec = biased_mlp(3), small_spec(relaxed={"c": 1})
    first = audit_fairness(model, spec, 2, timeout=60, out_dir=tmp_path, progress=False, report=False)
    again = audit_fairness(model, spec, 2, timeout=60, out_dir=tmp_path, progress=False, report=False)
    assert again.summary["individuals"] == first.summary["individuals"]
    assert again.summary["seconds"] >= first.summary["seconds"]
    _check(again, model, spec)
    parts = pd.read_csv(tmp_path / "partitions.csv")
    assert np.isfinite(parts["seconds"]).all() and (parts["seconds"] >= 0).all()
    assert parts["points"].dtype.kind == "i" and parts["points"].sum() == first.summary["individuals"]["total"]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["semantics"] == "exact" and s["individuals"] == first.summary["individuals"]


def test_counterexample_pairs_are_valid_and_counted():
    model, spec = biased_mlp(1), small_spec(relaxed={"c": 2})
    res = audit_fairness(model, spec, 4, timeout=60, progress=False)
    cex = res.counterexamples
    assert res.summary["counterexample_pairs"] == len(cex) > 0
    names = list(spec.feature_names)
    X, Xp = cex[[f"x.{n}" for n in names]].to_numpy(float), cex[[f"x_prime.{n}" for n in names]].to_numpy(float)
    assert (_decide_alone(model, X) != _decide_alone(model, Xp)).all()
    assert (X[:, 2] != Xp[:, 2]).all() and (np.abs(X[:, 3] - Xp[:, 3]) <= 2).all() and (X[:, :2] == Xp[:, :2]).all()
    assert len({tuple(r) for r in np.hstack([X, Xp])}) == len(cex)


def test_undecided_tolerance_stops_early_and_stays_sound():
    """With tolerance 1 nothing needs refining: counts are partial but never wrong."""
    model, spec = biased_mlp(2), small_spec()
    res = audit_fairness(model, spec, None, timeout=60, progress=False, undecided_tolerance=1.0)
    fair, unfair, _ = brute_counts(model, spec)
    ind = res.summary["individuals"]
    assert ind["fair"] <= fair and ind["unfair"] <= unfair and sum(ind[k] for k in ("fair", "unfair", "undecided")) == ind["total"]
    assert res.summary["complete"]


def test_semantics_policy():
    from certprune.errors import ConfigError
    from certprune.semantics import DEFAULT, Semantics, parse_semantics
    assert parse_semantics(None) is DEFAULT is Semantics.EXACT and parse_semantics("Float32") is Semantics.FLOAT32
    with pytest.raises(ConfigError, match="exact, float32"):
        parse_semantics("float16")
    assert Semantics.EXACT.slack(-3.0, 0.5) == pytest.approx(4e-7)   # 1e-7 (1 + |b|), tau ignored
    assert Semantics.FLOAT32.slack(-3.0, 0.5) == 0.5
    t = Semantics.EXACT.slack(torch.tensor([0.0, 10.0]), torch.tensor([1.0, 1.0]))
    assert torch.allclose(t, torch.tensor([1e-7, 1.1e-6]))


def test_cli_semantics_and_whole_domain(tmp_path, shared_data, capsys):
    """The CLI writes the semantics and exact counts; an unknown semantics is exit 2."""
    from certprune.cli import main
    model = shared_data / "fairness" / "fairify_models" / "GC-4.h5"
    out = tmp_path / "gc4"
    rc = main(["fairness", str(model), "--dataset", "german", "--protected", "age", "--semantics", "float32",
               "--timeout", "5", "--samples", "500", "--no-progress", "--out", str(out)])
    s = json.loads((out / "summary.json").read_text())
    assert rc in (0, 3) and s["semantics"] == "float32" and s["partitions"] == 1
    ind = s["individuals"]
    assert ind["fair"] + ind["unfair"] + ind["undecided"] == ind["total"] and ind["fair"] > 0
    assert "proven fair" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["fairness", str(model), "--dataset", "german", "--protected", "age", "--semantics", "nope",
              "--out", str(out)])
    assert e.value.code == 2


def test_point_error_bound_holds_for_batched_and_single_float32():
    """point_logits' bound encloses every float32 execution: batched and one input at a time."""
    from certprune.verifiers.bounds import affine_net
    from certprune.network import as_network
    from certprune.verifiers.twin import decision_logit_net
    from certprune.verifiers.twin_bounds import point_logits
    for seed, sizes in ((0, (4, 8, 8, 1)), (1, (4, 16, 2))):
        model = biased_mlp(seed, sizes=sizes)
        net = affine_net(as_network(model))
        last = None
        if net.output_dim == 2:
            w, b = net.weights[-1], net.biases[-1]
            last = ((w[0].abs() + w[1].abs())[None], (b[0].abs() + b[1].abs())[None])
        X = np.random.default_rng(seed).integers(-3000, 3000, size=(2000, 4)).astype(np.float64)
        y, err = point_logits(decision_logit_net(net), X, last)
        with torch.no_grad():
            batched = model(torch.tensor(X, dtype=torch.float32)).double().numpy()
            alone = np.concatenate([model(torch.tensor(x[None], dtype=torch.float32)).double().numpy() for x in X[:200]])
        for out in (batched, alone):
            lg = out[:, 0] if out.shape[1] == 1 else out[:, 1] - out[:, 0]
            assert np.all(np.abs(lg - y[:len(lg)]) <= err[:len(lg)])
        assert np.all(err > 0) and np.median(err / (np.abs(y) + 1)) < 1e-3


def test_unit_pool_pops_largest_and_drains_both_ends():
    from certprune.verifiers.unit_pool import UnitPool, Units
    sizes = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0])
    u = Units(np.zeros((6, 2)), np.ones((6, 2)), np.arange(6), np.ones((6, 2), dtype=bool), np.zeros(6, np.int64), sizes)
    pool = UnitPool()
    pool.add(u)
    assert sorted(pool.pop(2).size.tolist()) == [7.0, 9.0] and len(pool) == 4
    assert sorted(pool.pop(2, drain=True).size.tolist()) == [1.0, 5.0] and len(pool) == 2
    pool.add(u.take(np.array([0])))
    assert sorted(pool.pop(10).part.tolist()) == [0, 3, 5] and len(pool) == 0


def test_overlapping_user_partitions_are_refused():
    # counts are per box: an overlap would count individuals twice and could claim a fair domain
    import numpy as np
    import pytest

    from certprune.errors import SpecError
    from certprune.verifiers.partition import box_partition
    lo, hi = np.array([0, 0]), np.array([3, 3])
    box_partition([[[0, 0], [1, 3]], [[2, 0], [3, 3]]], lo, hi)  # disjoint: accepted
    with pytest.raises(SpecError, match="overlap"):
        box_partition([[[0, 0], [2, 3]], [[2, 0], [3, 3]]], lo, hi)


@pytest.mark.parametrize("times", [1, 3, 9])
def test_split_several_times_partitions_each_unit_exactly(times):
    """The multi-halving of the first rounds: the children tile each parent (every integer point of
    the free features in exactly one child, none empty), sizes add up, and the protected features
    and open masks are the parent's; units too small to halve ``times`` times stay whole."""
    from certprune.network import as_network
    from certprune.verifiers.bounds import affine_net
    from certprune.verifiers.fairness import EngineFactory
    from certprune.verifiers.partition import box_points
    spec = small_spec()
    eng = EngineFactory(affine_net(as_network(biased_mlp(0))), biased_mlp(0), spec, BabConfig())()
    plo = np.array([[0, 0, 0, 0], [3, 2, 0, 5], [0, 0, 0, 0]], dtype=np.float64)
    phi = np.array([[7, 5, 1, 9], [4, 2, 1, 5], [0, 1, 1, 0]], dtype=np.float64)
    u = eng.initial_units(plo, phi, np.arange(3))
    score = np.random.default_rng(times).random((3, spec.num_features))
    kids = eng._split(u, score, times)
    assert (kids.lo <= kids.hi).all()
    np.testing.assert_array_equal(kids.size, box_points(kids.lo, kids.hi, eng.free))
    for p in range(3):
        mine = kids.part == p
        pts = [tuple(x) for k in np.flatnonzero(mine)
               for x in itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(kids.lo[k], kids.hi[k])])]
        whole = list(itertools.product(*[range(int(a), int(b) + 1) for a, b in zip(plo[p], phi[p])]))
        assert len(pts) == len(set(pts)) == len(whole) and set(pts) == set(whole)
        assert (kids.lo[mine][:, eng.prot] == plo[p, eng.prot]).all() and (kids.open[mine] == u.open[p]).all()
        npts = int(box_points(plo[p:p + 1], phi[p:p + 1], eng.free)[0])
        assert mine.sum() <= min(2 ** times, npts)
    assert (kids.part == 0).sum() == (2 ** times if times <= 3 else 416)  # 480 points: some halvings end at points
    assert (kids.part == 2).sum() == min(2 ** times, 2)  # 2 points: halved once, then kept whole


@pytest.mark.parametrize("relaxed", [{}, {"a": 1}])
@pytest.mark.parametrize("chunk", [7, 200000])
def test_enumeration_of_units_of_many_shapes_equals_brute_force(relaxed, chunk, monkeypatch):
    """Enumeration grids units of one shape together (chunked): on Fairify's grid every partition
    is enumerated in the first round, in boxes of several shapes; the counts equal brute force."""
    orig = fairness_bab.TwinBab._enumerate
    shapes = []

    def spy(self, u, st, chunk_points=200000):
        elo, ehi = self._extended(u.lo, u.hi)
        shapes.extend(map(tuple, (ehi - elo)[:, self.free].tolist()))
        return orig(self, u, st, chunk_points=chunk)
    monkeypatch.setattr(fairness_bab.TwinBab, "_enumerate", spy)
    model, spec = biased_mlp(2), small_spec(relaxed=relaxed)
    res = audit_fairness(model, spec, 3, timeout=60, progress=False, config=BabConfig(enum_points=10 ** 6),
                         samples=0)
    _check(res, model, spec)
    assert len(set(shapes)) > 1
