"""Resumable prune() runs (certprune.pruning.checkpoint): a learner run stopped after an epoch and
started again with the same checkpoint folder ends with the weights, masks and manifest of an
uninterrupted run; a folder of another run is refused."""
from __future__ import annotations

import pytest
import torch

import certprune
from certprune.errors import ConfigError
from certprune.pruning import finetune as ft
from conftest import random_mlp

LEARNERS = {  # small runs of every mask learner: 2 epochs while learning, 2 fine-tuning epochs
    "scl": dict(method="scl", scl_weight=1.0, scl_epochs=2, scl_mask_lr=0.02),
    "scl-neuron": dict(method="scl", granularity="neuron", scl_weight=1.0, scl_epochs=2, scl_mask_lr=0.02),
    "dynamic-surgery": dict(method="dynamic-surgery", amount=0.6, surgery_epochs=2, surgery_gamma=0.05),
    "gibbs": dict(method="gibbs", amount=0.5, gibbs_epochs=2),
    "gibbs-neuron": dict(method="gibbs", granularity="neuron", amount=0.25, gibbs_epochs=2),
    "brain": dict(method="brain", brain_rate=0.3, brain_epochs=1, brain_tolerance=1.0, brain_max_rounds=4),
    "agn": dict(method="agn", agn_epochs=2, agn_lambda=0.05),
    "gating": dict(method="gating", granularity="neuron", amount=0.5, gating_epochs=2),
}


def _data(n=128, d=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g)
    return X, X[:, :k].argmax(1)


def _run(spec: dict, checkpoint=None, model=None):
    return certprune.prune(model if model is not None else random_mlp([8, 16, 12, 3], seed=2), data=_data(), seed=3,
                           lr=0.01, batch_size=32, finetune_epochs=2,
                           checkpoint=checkpoint, **spec)


def _interrupt_at(monkeypatch, call: int) -> None:
    """KeyboardInterrupt right after the ``call``-th epoch checkpoint of any training phase."""
    real, calls = ft._save_checkpoint, []

    def save(*args):
        real(*args)
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt

    monkeypatch.setattr(ft, "_save_checkpoint", save)


def _same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _interrupted_then_resumed(spec: dict, call: int, folder, monkeypatch):
    """(uninterrupted result, resumed result, files left after the interruption): the run is
    stopped after the ``call``-th epoch checkpoint, then run again with the same folder."""
    ref = _run(spec)
    with monkeypatch.context() as m:
        _interrupt_at(m, call)
        with pytest.raises(KeyboardInterrupt):
            _run(spec, folder)
    left = {p.name for p in folder.iterdir()}
    return ref, _run(spec, folder), left


@pytest.mark.parametrize("name", sorted(LEARNERS))
@pytest.mark.parametrize("call", [1, 3])  # 1: inside the learner's training; 3: inside fine-tuning (brain: round 3)
def test_an_interrupted_learner_run_resumes_to_the_uninterrupted_result(name, call, tmp_path, monkeypatch):
    folder = tmp_path / "ck"
    (ref, ref_manifest), (pruned, manifest), left = _interrupted_then_resumed(LEARNERS[name], call, folder, monkeypatch)
    assert "run.json" in left and any(n.endswith(".pt") for n in left)
    assert _same_state(pruned, ref)
    assert manifest.to_json() == ref_manifest.to_json()  # the same masks / removed units and learned statistics
    assert not folder.exists()  # removed once the run completed


def test_a_resumed_run_does_not_repeat_finished_epochs(tmp_path, monkeypatch):
    spec, folder = LEARNERS["scl"], tmp_path / "ck"
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)  # both scl epochs and one fine-tuning epoch done
        with pytest.raises(KeyboardInterrupt):
            _run(spec, folder)
    assert (folder / "learned.pt").is_file()
    epochs = []
    real = ft._save_checkpoint
    monkeypatch.setattr(ft, "_save_checkpoint", lambda path, cfg, e, *rest: (epochs.append((path.name, e)),
                                                                             real(path, cfg, e, *rest)))
    _run(spec, folder)
    assert epochs == [("finetune.pt", 2)]  # only the missing fine-tuning epoch ran


@pytest.mark.parametrize("change", ["option", "amount", "seed", "model", "data"])
def test_a_checkpoint_of_another_run_is_refused(change, tmp_path, monkeypatch):
    spec, folder = LEARNERS["dynamic-surgery"], tmp_path / "ck"
    with monkeypatch.context() as m:
        _interrupt_at(m, 1)
        with pytest.raises(KeyboardInterrupt):
            _run(spec, folder)
    other = dict(model=random_mlp([8, 16, 12, 3], seed=2), data=_data(), seed=3, lr=0.01, batch_size=32,
                 finetune_epochs=2, checkpoint=folder, **spec)
    if change == "option":
        other["surgery_gamma"] = 0.1
    elif change == "amount":
        other["amount"] = 0.5
    elif change == "seed":
        other["seed"] = 4
    elif change == "model":
        other["model"] = random_mlp([8, 16, 12, 3], seed=5)
    else:
        other["data"] = _data(seed=1)
    with pytest.raises(ConfigError, match="belongs to another prune run"):
        certprune.prune(**other)
    assert (folder / "learn.pt").is_file()  # the refused run left the checkpoint alone


def test_a_checkpoint_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "ck"
    path.write_text("not a folder")
    with pytest.raises(ConfigError, match="not a folder"):
        _run(LEARNERS["scl"], path)


def test_a_non_empty_folder_without_run_json_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "mymodel.pt").write_bytes(b"user weights")
    with pytest.raises(ConfigError, match="non-empty folder without run.json"):
        _run(LEARNERS["scl"], folder)
    assert [p.name for p in folder.iterdir()] == ["mymodel.pt"]
    assert (folder / "mymodel.pt").read_bytes() == b"user weights"


def test_a_completed_run_deletes_only_the_files_it_wrote(tmp_path, monkeypatch):
    spec, folder = LEARNERS["dynamic-surgery"], tmp_path / "ck"
    with monkeypatch.context() as m:
        _interrupt_at(m, 1)
        with pytest.raises(KeyboardInterrupt):
            _run(spec, folder)
    (folder / "mymodel.pt").write_bytes(b"user weights")  # a file put there meanwhile
    _run(spec, folder)
    assert [p.name for p in folder.iterdir()] == ["mymodel.pt"]


SCHEDULES = {  # iterative schedules of scoring criteria: the state after every step is saved too
    "magnitude-neuron": dict(method="magnitude", granularity="neuron", amount=0.5, steps=3),
    "taylor-unstructured-ap": dict(method="taylor", amount=0.7, steps=3, activate_while_pruning=True),
    "random-rewind": dict(method="random", amount=0.6, steps=2, rewind=True),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("call", [2, 3])  # 2: at the end of step 0's fine-tuning; 3: inside step 1's
def test_an_interrupted_iterative_schedule_resumes_to_the_uninterrupted_result(name, call, tmp_path, monkeypatch):
    spec, folder = SCHEDULES[name], tmp_path / "ck"
    (ref, ref_manifest), (pruned, manifest), left = _interrupted_then_resumed(spec, call, folder, monkeypatch)
    assert ("steps.pt" in left) == (call == 3)  # saved once step 0 with its fine-tuning is complete
    assert _same_state(pruned, ref)
    assert manifest.to_json() == ref_manifest.to_json()
    assert len(manifest.steps) == spec["steps"] and not folder.exists()
