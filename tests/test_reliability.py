"""Pre-emption, SIGKILL fault injection with bit-exact resume, and the non-finite guard."""
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from benchmarks.fault_injection import (ROOT, compare, environment, final_parameters, run_with_kills,
                                        train_command)
from core.checkpoint import list_checkpoints, load_checkpoint
from core.train import NonFiniteLossError, train


def test_sigkill_fault_injection_is_bit_exact(tmp_path):
    rng = random.Random(1)
    run_with_kills(tmp_path / "reference", 24, 0, rng)
    outcome = run_with_kills(tmp_path / "faulty", 24, 2, rng)
    assert outcome["kills"] >= 1 and outcome["corrupt_checkpoints"] == 0
    assert compare(final_parameters(tmp_path / "reference", 24), final_parameters(tmp_path / "faulty", 24)) == 0.0


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    command = train_command(tmp_path, 100000, resume=False)
    command = [c for c in command if not c.startswith("trainer.checkpoint_every")] + ["trainer.checkpoint_every=100000"]
    process = subprocess.Popen(command, cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert b"stopped by signal SIGTERM" in stdout
    [checkpoint] = list_checkpoints(tmp_path / "checkpoints")
    assert load_checkpoint(checkpoint)["step"] >= 3


def _nan_at_step(monkeypatch, bad_call: int):
    from modalities.molecule.modality import MoleculeModality
    original = MoleculeModality.reconstruction_loss
    calls = {"n": 0}

    def loss(self, prediction, batch):
        value, parts = original(self, prediction, batch)
        calls["n"] += 1
        return (value * float("nan"), parts) if calls["n"] == bad_call else (value, parts)
    monkeypatch.setattr(MoleculeModality, "reconstruction_loss", loss)


def test_nonfinite_loss_stops_naming_the_step(compose_config, tmp_path, monkeypatch):
    _nan_at_step(monkeypatch, bad_call=5)
    cfg = compose_config(["experiment=molecule_smoke", f"trainer.out_dir={tmp_path}", "trainer.checkpoint_every=2",
                          "trainer.evaluate_at_end=false"])
    with pytest.raises(NonFiniteLossError, match="at step 5.*untouched"):
        train(cfg)
    assert [load_checkpoint(p)["step"] for p in list_checkpoints(tmp_path / "checkpoints")] == [2, 4]


def test_nonfinite_loss_can_be_skipped(compose_config, tmp_path, monkeypatch):
    _nan_at_step(monkeypatch, bad_call=3)
    cfg = compose_config(["experiment=molecule_smoke", f"trainer.out_dir={tmp_path}", "trainer.max_steps=6",
                          "trainer.nonfinite=skip", "trainer.evaluate_at_end=false"])
    summary = train(cfg)
    assert summary["steps"] == 6 and summary["skipped_steps"] == 1
    state = load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1])
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
