"""One rule merges the verdicts of a property's parts (multi-box VNN-LIB instances, fairness
partitions): results.merge."""
import pytest

from certprune.results import Verdict, merge

C, F, U, E = Verdict.CERTIFIED, Verdict.FALSIFIED, Verdict.UNKNOWN, Verdict.ERROR


@pytest.mark.parametrize("parts,want", [
    ([C, C, C], C), ([C], C), ([], U),               # certified only if every part is (and there is one)
    ([C, U, C], U), ([U], U),
    ([C, F, U], F), ([U, E, F], F), ([F], F),        # falsified as soon as one part is
    ([C, E], E), ([U, E], E),                        # an error where nothing was falsified
    (["certified", "falsified"], F),                 # the stored words are the same Verdict values
])
def test_merge(parts, want):
    assert merge(parts) is want


def test_multibox_instance_is_unsat_only_if_every_box_is(tmp_path):
    """decide_instance over a two-box VNN-LIB file: one box the net cannot violate and one it can."""
    import numpy as np
    import torch

    from certprune.network import as_network
    from certprune.verifiers.instance import decide_instance

    model = torch.nn.Sequential(torch.nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    net = as_network(model, (1,))
    safe = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n"
    two = safe.replace("(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n",
                       "(assert (or (and (>= X_0 0.0) (<= X_0 1.0)) (and (>= X_0 2.0) (<= X_0 3.0))))\n")
    for text, want in ((safe, "unsat"), (two, "sat")):
        p = tmp_path / "p.vnnlib"
        p.write_text(text + "(assert (>= Y_0 1.5))\n")
        out = decide_instance("unused.onnx", str(p), timeout=30, model=net)
        assert out.word == want, (text, out.word)
        if want == "sat":
            assert out.x is not None and float(np.ravel(out.y)[0]) >= 1.5
