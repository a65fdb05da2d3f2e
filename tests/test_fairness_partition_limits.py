"""Partition grid: protected attributes stay whole, Python-int counts, a cap on grid size."""
import numpy as np
import pytest
import torch.nn as nn

from certprune.errors import ConfigError
from certprune.verifiers.partition import MAX_PARTITIONS, Partitioning, box_partition, grid_partition
from tests.conftest import race_is_two_model


def test_protected_attribute_is_never_chunked():
    part = grid_partition(np.array([0, 0]), np.array([2, 3]), 2, whole=(0,))
    lo, hi = part.bounds(np.arange(part.count))
    assert part.count == 2 and np.all(lo[:, 0] == 0) and np.all(hi[:, 0] == 2)


def test_count_does_not_overflow_int64():
    part = Partitioning(tuple(np.arange(16) for _ in range(16)), tuple(np.arange(16) for _ in range(16)))
    assert part.count == 2 ** 64


def test_huge_grid_is_refused_with_count_and_suggestion():
    with pytest.raises(ConfigError, match=r"18446744073709551616 partitions.*--partition-size \d+"):
        grid_partition(np.zeros(16, dtype=int), np.full(16, 15), 1)


def test_suggested_size_is_accepted():
    lo, hi = np.zeros(16, dtype=int), np.full(16, 15)
    try:
        grid_partition(lo, hi, 1)
    except ConfigError as e:
        t = int(str(e).split("--partition-size ")[1].split()[0])
    assert grid_partition(lo, hi, t).count <= MAX_PARTITIONS


def test_user_box_with_single_protected_value_does_not_crash():
    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness
    m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    spec = FairnessSpec(("sex", "age"), np.array([0, 0]), np.array([1, 3]), ("sex",))
    boxes = np.array([[[0, 0], [0, 3]]])
    box_partition(boxes, spec.lower, spec.upper)
    res = audit_fairness(m, spec, partitions=boxes, timeout=10, progress=False)
    ind = res.summary["individuals"]  # the box's 4 individuals are decided, the other 4 are outside it
    assert ind["total"] == 8 and ind["fair"] + ind["unfair"] == 4 and ind["undecided"] == 4


def test_user_partitions_splitting_the_protected_attribute_are_not_fair_on_domain():
    """Boxes that each hold one race value: an individual's partners range over the whole domain,
    so pairs across the boxes are checked and every individual flips (race 2 vs the others)."""
    import torch
    from torch import nn

    from certprune.fairness_spec import FairnessSpec
    from certprune.verifiers.fairness import audit_fairness

    m = race_is_two_model()  # decision = (race == 2)
    spec = FairnessSpec(("race", "age"), np.array([0, 0]), np.array([2, 3]), ("race",))
    boxes = np.array([[[r, 0], [r, 3]] for r in range(3)])
    res = audit_fairness(m, spec, partitions=boxes, timeout=10, progress=False)
    assert res.summary["counts"] == {"certified": 0, "falsified": 3, "undecided": 0}
    assert res.summary["individuals"] == {"total": 12, "fair": 0, "unfair": 12, "undecided": 0}
    assert res.summary["fair_on_domain"] is False
