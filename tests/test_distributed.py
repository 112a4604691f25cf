"""A real 2-process torchrun (gloo, CPU) run of `python -m core.train` equals a 1-process run of the same
global batch: per-sample noise streams make the step independent of how the batch is split. Also for a
staged recipe (l-DeTok: DDP rebuilt per stage over the parameters it trains, latent statistics measured
alike in every process)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import list_checkpoints
from small_models import image_folder

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["modality=image", "modality.dataset=image_folder", "modality.image_size=8", "modality.patch_size=4",
            "modality.random_flip=false", "modality.evaluation.fid=false", "modality.decoder.depth=1",
            "modality.decoder.width=32", "modality.decoder.heads=2", "model.depth=1", "model.width=32",
            "model.heads=2", "model.latent_channels=4", "trainer.batch_size=8", "trainer.max_steps=3",
            "trainer.log_every=1", "trainer.evaluate_at_end=false", "trainer.device=cpu", "trainer.threads=1",
            "trainer.lr=1e-3", "trainer.precision=fp32"]  # equal to 1e-6: a float32 property, whatever auto picks


def run(launcher: list[str], data: Path, out: Path, recipe: list[str]) -> str:
    command = launcher + ["-m", "core.train", *SETTINGS, *recipe, f"modality.data_root={data}",
                          f"trainer.out_dir={out}", f"hydra.run.dir={out}/hydra"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def final_state(out: Path) -> dict:
    return torch.load(list_checkpoints(out / "checkpoints")[-1], weights_only=True)


@pytest.mark.parametrize("recipe", [[], ["recipe=ldetok", "trainer.max_steps=4", "recipe.standardization_samples=8"]],
                         ids=["unite", "ldetok"])
def test_two_processes_equal_one_process_of_the_same_global_batch(tmp_path, recipe):
    data = image_folder(tmp_path / "data")
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], data,
              tmp_path / "two", recipe)
    one = run([sys.executable], data, tmp_path / "one", recipe)
    print(two, one)
    steps = 4 if recipe else 3
    assert f"2 processes, parameters and EMA after step {steps}: identical on every rank" in two
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["steps"] == steps and summary["processes"] == 2 and summary["ranks_identical"] is True
    a, b = final_state(tmp_path / "two"), final_state(tmp_path / "one")
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.allclose(a[part][key], b[part][key], atol=1e-6, rtol=1e-5), (part, key)
    losses = [[row["loss"] for row in map(json.loads, (tmp_path / run_dir / "metrics.jsonl").open())]
              for run_dir in ("two", "one")]
    assert np.allclose(losses[0], losses[1], rtol=1e-5)
