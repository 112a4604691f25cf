"""The training loop on the toy point-set modality: gradient accumulation at epoch ends, a signal during
the end-of-run evaluation, the metrics plot."""
import json
import os
import signal
import time

import pytest
import torch

import core.train
from core.checkpoint import load_checkpoint
from core.train import steps_per_epoch, train
from toy_modality.point_sets import register_point_sets

TOY = ["modality=point_sets", "modality.train_size=12", "model.depth=1", "model.width=32", "trainer.batch_size=8",
       "trainer.log_every=1", "trainer.checkpoint_every=100", "trainer.device=cpu", "trainer.lr=1e-3",
       "trainer.lr_schedule.warmup=1"]


@pytest.fixture
def toy_config(compose_config, tmp_path):
    register_point_sets()
    return lambda name, *overrides: compose_config(TOY + [f"trainer.out_dir={tmp_path / name}", *overrides])


def test_accumulation_leftovers_do_not_spill_into_the_next_epoch(toy_config, tmp_path):
    """12 items, batch 8 in micro-batches of 4: an epoch holds 3 micro-batches, one step and a leftover.
    The leftover must be skipped, so 2 steps with grad_accum=2 equal 2 steps of the whole batch."""
    assert steps_per_epoch(12, 1, 4, 2) == 1
    common = ["trainer.max_steps=2", "trainer.evaluate_at_end=false", "trainer.precision=fp32"]  # equal to 1e-6
    train(toy_config("accumulated", *common, "trainer.grad_accum=2"))
    train(toy_config("whole", *common, "trainer.grad_accum=1"))
    a = load_checkpoint(tmp_path / "accumulated" / "checkpoints" / "step_000000002.pt")
    b = load_checkpoint(tmp_path / "whole" / "checkpoints" / "step_000000002.pt")
    assert a["epoch"] == b["epoch"] == 1  # the second step is the second epoch's
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], atol=1e-6), key
    losses = [[row["loss"] for row in map(json.loads, (tmp_path / run / "metrics.jsonl").open())]
              for run in ("accumulated", "whole")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # no leftover loss in the second step's log
    assert (tmp_path / "whole" / "metrics.png").stat().st_size > 1000  # the plot of every run


def test_too_small_a_training_split_names_the_sizes(toy_config):
    with pytest.raises(ValueError, match="12 items, fewer than one step of trainer.batch_size=16"):
        train(toy_config("small", "trainer.batch_size=16"))


def test_sigterm_during_evaluation_stops_at_once(toy_config, tmp_path, monkeypatch):
    """A `timeout` ran the default command 160 s past its limit: the evaluation ignored SIGTERM."""
    def slow_evaluation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # interrupted by the handler's exception
        raise AssertionError("the evaluation was not interrupted")
    monkeypatch.setattr(core.train, "evaluate_run", slow_evaluation)
    before = signal.getsignal(signal.SIGTERM)
    start = time.monotonic()
    summary = train(toy_config("stopped", "trainer.max_steps=2"))
    assert time.monotonic() - start < 30
    assert summary["stop_reason"] == "signal SIGTERM during evaluation" and summary["steps"] == 2
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text())["stop_reason"].endswith("evaluation")
    assert (tmp_path / "stopped" / "checkpoints" / "step_000000002.pt").is_file()
    assert (tmp_path / "stopped" / "metrics.png").is_file()
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
