"""The one training loop of the pruning package (certprune.pruning.finetune.train_loop): hooks,
and per-epoch checkpoints from which an interrupted run continues to the same weights."""
from __future__ import annotations

import copy

import pytest
import torch

from certprune.errors import ConfigError
from certprune.pruning import finetune as ft
from conftest import random_mlp


def _data(n=96, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g)
    return X, X[:, :k].argmax(1)


def _interrupt_after(monkeypatch, epoch: int) -> None:
    """Make the loop raise KeyboardInterrupt right after it saved the checkpoint of ``epoch``."""
    real = ft._save_checkpoint

    def save(path, cfg, e, *rest):
        real(path, cfg, e, *rest)
        if e == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(ft, "_save_checkpoint", save)


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resumed_finetuning_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    X, y = _data()
    base = random_mlp([6, 8, 3], seed=3)
    mask = {"0": torch.rand(8, 6, generator=torch.Generator().manual_seed(1)) > 0.5}
    cfg = ft.FinetuneConfig(epochs=5, lr=1e-2, batch_size=16, lr_schedule="cosine", seed=4)
    ref = ft.finetune(copy.deepcopy(base), X, y, cfg, mask)
    ck = tmp_path / "ft.pt"
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            ft.finetune(copy.deepcopy(base), X, y, cfg, mask, checkpoint=ck)
    assert torch.load(ck, weights_only=False)["epoch"] == 2
    resumed = ft.finetune(copy.deepcopy(base), X, y, cfg, mask, checkpoint=ck)  # a fresh process: the input model
    assert _same(resumed, ref)
    assert not ck.exists()  # removed once training completed
    assert not (resumed[0].weight[~mask["0"]]).any()  # masked weights stayed 0
    assert not _same(resumed, base)  # it trained


def test_resume_continues_from_the_saved_epoch_with_hooks_and_an_extra_optimiser(tmp_path, monkeypatch):
    """A learner-style run (extra parameter with its own optimiser, per-step hook with state):
    only the missing epochs run after the restart and the result equals the uninterrupted one."""
    X, y = _data(seed=1)
    cfg = ft.FinetuneConfig(epochs=4, lr=1e-2, batch_size=32, lr_schedule="constant", seed=0)

    def run(checkpoint=None):
        model = random_mlp([6, 5, 3], seed=2)
        scale = torch.nn.Parameter(torch.ones(1))
        log = {"steps": 0, "epochs": []}
        hooks = ft.Hooks(extra_loss=lambda: (scale - 2).pow(2).sum(), after_step=lambda it: log.__setitem__("steps", it + 1),
                         on_epoch=log["epochs"].append, state=lambda: {"steps": log["steps"]},
                         load=lambda s: log.__setitem__("steps", s["steps"]))
        its = ft.train_loop(model, X, y, cfg, hooks, list(model.parameters()), torch.optim.SGD([scale], lr=0.1),
                            checkpoint=checkpoint)
        return model, scale, log, its

    ref_model, ref_scale, ref_log, ref_its = run()
    ck = tmp_path / "learn.pt"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            run(ck)
    model, scale, log, its = run(ck)
    assert log["epochs"] == [1, 2, 3]  # epoch 0 was not run again
    assert its == ref_its == log["steps"] == ref_log["steps"] == 4 * 3
    assert _same(model, ref_model) and torch.equal(scale, ref_scale)
    assert ref_scale.item() != 1.0  # the extra optimiser stepped


def test_a_checkpoint_of_another_model_is_refused(tmp_path, monkeypatch):
    X, y = _data()
    cfg = ft.FinetuneConfig(epochs=3, seed=0)
    ck = tmp_path / "x.pt"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            ft.finetune(random_mlp([6, 8, 3]), X, y, cfg, checkpoint=ck)
    with pytest.raises(ConfigError, match="does not match"):
        ft.finetune(random_mlp([6, 4, 3]), X, y, cfg, checkpoint=ck)


def test_a_checkpoint_of_other_training_settings_is_refused(tmp_path, monkeypatch):
    """Same model, another learning rate: resuming would not end with either run's weights."""
    X, y = _data()
    ck = tmp_path / "x.pt"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            ft.finetune(random_mlp([6, 8, 3]), X, y, ft.FinetuneConfig(epochs=3, seed=0), checkpoint=ck)
    with pytest.raises(ConfigError, match="does not match"):
        ft.finetune(random_mlp([6, 8, 3]), X, y, ft.FinetuneConfig(epochs=3, seed=0, lr=0.5), checkpoint=ck)
