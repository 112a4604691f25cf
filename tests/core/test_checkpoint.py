import os
import pickle
import random

import numpy as np
import pytest
import torch

from core.checkpoint import (CheckpointError, capture_rng_state, compare_configs, list_checkpoints,
                             load_checkpoint, newest_loadable_checkpoint, restore_rng_state, save_checkpoint)


def payload(step):
    return {"model": {"w": torch.full((3,), float(step))}, "step": step, "rng": capture_rng_state()}


def test_round_trip_and_pruning(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(payload(step), tmp_path, step, keep_last=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step_000000002.pt", "step_000000003.pt"]
    state = load_checkpoint(tmp_path / names[-1])
    assert state["step"] == 3 and torch.equal(state["model"]["w"], torch.full((3,), 3.0))
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_rng_state_round_trip():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_truncated_checkpoint_is_skipped_by_auto_resume(tmp_path):
    save_checkpoint(payload(1), tmp_path, 1, keep_last=5)
    save_checkpoint(payload(2), tmp_path, 2, keep_last=5)
    newest = tmp_path / "step_000000002.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="step_000000002.pt"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="skipping unusable checkpoint"):
        path, state = newest_loadable_checkpoint(tmp_path)
    assert path.name == "step_000000001.pt" and state["step"] == 1


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def test_code_executing_file_is_refused(tmp_path):
    evil, marker = tmp_path / "step_000000001.pt", tmp_path / "exploit_marker"
    torch.save({"format_version": 1, "model": Exploit(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_full_disk_keeps_previous(tmp_path, monkeypatch):
    save_checkpoint(payload(1), tmp_path, 1, keep_last=1)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(CheckpointError, match="No space left.*step_000000001.pt.*intact"):
        save_checkpoint(payload(2), tmp_path, 2, keep_last=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step_000000001.pt"]
    assert load_checkpoint(tmp_path / "step_000000001.pt")["step"] == 1


def test_foreign_file_and_format(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"format_version": 99}, path)
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(path)


def test_compare_configs_names_keys():
    diffs = compare_configs({"model": {"width": 128, "depth": 4}}, {"model": {"width": 256, "depth": 4}})
    assert diffs == ["model.width: checkpoint 128 vs now 256"]
