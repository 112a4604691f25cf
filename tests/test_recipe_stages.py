"""Training in stages through core.train: frozen parts, stage checkpoints, resuming inside and across
stages, a generator started from a tokenizer that another process wrote, and every staged recipe end to
end on a real QM9 subset."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.checkpoint import list_checkpoints, load_checkpoint
from core.metrics_log import MetricsLog
from core.train import train
from toy_modality.point_sets import register_point_sets

ROOT = Path(__file__).resolve().parents[1]
TOY = ["modality=point_sets", "modality.train_size=64", "model.depth=1", "model.width=32", "trainer.batch_size=8",
       "trainer.log_every=1", "trainer.device=cpu", "trainer.lr=1e-3", "trainer.lr_schedule.warmup=1",
       "trainer.evaluate_at_end=false", "recipe.standardization_samples=16"]
TOKENIZER = ("embedder.", "encoder.", "decoder.")


@pytest.fixture
def toy_config(compose_config, tmp_path):
    register_point_sets()
    return lambda name, *overrides: compose_config(TOY + [f"trainer.out_dir={tmp_path / name}", *overrides])


@pytest.fixture
def one_thread():
    """Bit-exact comparisons are promised for a fixed thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tokenizer_part(weights: dict) -> dict:
    return {k: v for k, v in weights.items() if k.startswith(TOKENIZER)}


def test_stage_checkpoints_and_frozen_parts(toy_config, tmp_path):
    """The generator does not move in the tokenizer stage; the tokenizer of the generator stage is the EMA
    tokenizer of stage 1 and stays bit-identical (live and EMA) through stage 2."""
    summary = train(toy_config("run", "recipe=two_stage", "trainer.max_steps=8", "trainer.checkpoint_every=1",
                               "trainer.keep_checkpoints=100"))
    names = [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert names == [f"step_{s:09d}-tokenizer.pt" for s in range(1, 5)] + \
        [f"step_{s:09d}-generator.pt" for s in range(5, 9)]
    assert [s["stage"] for s in summary["stages"]] == ["tokenizer", "generator"] and summary["steps"] == 8
    states = [load_checkpoint(tmp_path / "run" / "checkpoints" / name) for name in names]
    assert [(s["stage"], s["stage_step"]) for s in states] == [("tokenizer", i) for i in range(1, 5)] + \
        [("generator", i) for i in range(1, 5)]
    first, end_of_tokenizer = states[0], states[3]
    for key, value in end_of_tokenizer["model"].items():
        if key.startswith("generator."):
            assert torch.equal(value, first["model"][key]), key  # untouched while the tokenizer trains
    frozen = tokenizer_part(end_of_tokenizer["ema"])
    assert any(not torch.equal(v, end_of_tokenizer["model"][k]) for k, v in frozen.items())  # EMA differs from live
    for state in states[4:]:
        for weights in (state["model"], state["ema"]):
            assert all(torch.equal(weights[k], v) for k, v in frozen.items())
        assert not torch.equal(state["model"]["latent_std"], torch.ones_like(state["model"]["latent_std"]))
    rows = [r for r in MetricsLog(tmp_path / "run", True).rows() if "loss" in r]
    assert [r["stage"] for r in rows] == ["tokenizer"] * 4 + ["generator"] * 4
    assert all(math.isnan(r["gen_loss"]) for r in rows[:4]) and all(math.isnan(r["rec_loss"]) for r in rows[4:])


def test_logged_rows_average_the_steps_since_the_last_row(toy_config, tmp_path):
    """A stage end writes a row, so the next window is shorter than trainer.log_every."""
    common = ["recipe=two_stage", "trainer.max_steps=8", "trainer.checkpoint_every=100"]
    train(toy_config("every", *common))
    train(toy_config("windows", *common, "trainer.log_every=3"))
    every = {r["step"]: r["loss"] for r in MetricsLog(tmp_path / "every", True).rows() if "loss" in r}
    windows = {r["step"]: r["loss"] for r in MetricsLog(tmp_path / "windows", True).rows() if "loss" in r}
    assert sorted(windows) == [3, 4, 6, 8]
    for end, first in ((3, 1), (4, 4), (6, 5), (8, 7)):
        expected = sum(every[s] for s in range(first, end + 1)) / (end + 1 - first)
        assert windows[end] == pytest.approx(expected, rel=1e-5), end


def test_resume_inside_and_across_stages_is_exact(toy_config, tmp_path, one_thread):
    common = ["recipe=ldetok", "trainer.max_steps=8", "trainer.checkpoint_every=3"]
    train(toy_config("straight", *common))
    # a run that stops after the tokenizer, then resumes into the generator stage
    stopped = train(toy_config("two_processes", *common, "trainer.stop_after_stage=tokenizer"))
    assert stopped["stop_reason"] == "stop_after_stage tokenizer" and stopped["steps"] == 4
    train(toy_config("two_processes", *common, "trainer.resume=auto"))
    # a run interrupted inside the generator stage (its newest checkpoint: step 6), resumed there
    train(toy_config("interrupted", "recipe=ldetok", "trainer.max_steps=8", "trainer.checkpoint_every=3",
                     "trainer.stop_after_stage=tokenizer"))
    (tmp_path / "interrupted" / "checkpoints").rename(tmp_path / "kept")
    train(toy_config("interrupted", *common, f"trainer.resume={tmp_path / 'kept' / 'step_000000004-tokenizer.pt'}"))
    for name in list_checkpoints(tmp_path / "interrupted" / "checkpoints"):
        if "step_000000008" in name.name:
            name.unlink()  # as if killed between steps 6 and 8
    resumed = train(toy_config("interrupted", *common, "trainer.resume=auto"))
    assert resumed["stages"] == [{**resumed["stages"][0], "stage": "generator", "steps": 4}]
    final = "step_000000008-generator.pt"
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / final)
    for run in ("two_processes", "interrupted"):
        b = load_checkpoint(tmp_path / run / "checkpoints" / final)
        for part in ("model", "ema"):
            for key in a[part]:
                assert torch.equal(a[part][key], b[part][key]), (run, part, key)


def test_generator_starts_from_a_tokenizer_written_by_an_earlier_process(compose_config, tmp_path):
    """Process 1 (a subprocess) trains the tokenizer only; this process starts the generator from its last
    checkpoint in a new run folder."""
    common = ["experiment=molecule_smoke", "recipe=two_stage", "trainer.max_steps=6", "trainer.threads=1",
              "recipe.standardization_samples=32"]
    first = tmp_path / "tokenizer_run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "core.train", *common, "trainer.stop_after_stage=tokenizer",
                    f"trainer.out_dir={first}"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert json.loads((first / "summary.json").read_text())["generation"].startswith("skipped")
    tokenizer = list_checkpoints(first / "checkpoints")[-1]
    assert tokenizer.name == "step_000000003-tokenizer.pt"
    summary = train(compose_config(common + [f"trainer.resume={tokenizer}",
                                             f"trainer.out_dir={tmp_path / 'generator'}"]))
    assert summary["steps"] == 6 and [s["stage"] for s in summary["stages"]] == ["generator"]
    assert summary["generation/samples"] == 4
    written = tokenizer_part(load_checkpoint(tokenizer)["ema"])
    generator_run = load_checkpoint(list_checkpoints(tmp_path / "generator" / "checkpoints")[-1])
    assert all(torch.equal(generator_run["model"][k], v) for k, v in written.items())


def test_stage_optimisers_take_the_trainers_speed_options(compose_config, tmp_path):
    """Each stage builds its own optimiser with trainer.optimizer and fused_adamw (a non-default value), and
    l-DeTok's hidden atoms run under trainer.packing (hidden tokens are padding to the encoder)."""
    train(compose_config(["experiment=molecule_smoke", "recipe=ldetok", "trainer.max_steps=4",
                          "trainer.optimizer=muon", "trainer.muon_ns_dtype=fp32", "trainer.fused_adamw=false",
                          "trainer.packing=tokens", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=10",
                          "trainer.evaluate_at_end=false", "recipe.standardization_samples=16",
                          f"trainer.out_dir={tmp_path}"]))
    for name, stage in (("step_000000002-tokenizer.pt", "tokenizer"), ("step_000000004-generator.pt", "generator")):
        state = load_checkpoint(tmp_path / "checkpoints" / name)
        muon, adamw = state["optimizer"]  # Muon for the stage's matrices, AdamW for the rest
        assert state["stage"] == stage and muon["state"] and adamw["state"]
        assert not any(group["fused"] for group in adamw["param_groups"]), stage  # not the default


@pytest.mark.parametrize("recipe", ["two_stage", "ldetok"])
def test_staged_recipes_train_end_to_end_on_qm9(compose_config, tmp_path, recipe):
    summary = train(compose_config(["experiment=molecule_smoke", f"recipe={recipe}", "trainer.max_steps=40",
                                    "trainer.lr=1e-3", "recipe.standardization_samples=64",
                                    f"trainer.out_dir={tmp_path}"]))
    rows = [r for r in MetricsLog(tmp_path, True).rows() if "loss" in r]
    tokenizer = [r["rec_loss"] for r in rows if r["stage"] == "tokenizer"]
    generator = [r["gen_loss"] for r in rows if r["stage"] == "generator"]
    assert len(tokenizer) == len(generator) == 20
    assert sum(tokenizer[-5:]) < 0.8 * sum(tokenizer[:5]), tokenizer
    assert all(math.isfinite(g) for g in generator)
    assert summary["generation/samples"] == 4 and (tmp_path / "samples" / "samples.xyz").is_file()
    assert 0.0 <= summary["reconstruction/element_accuracy"] <= 1.0
    if recipe == "ldetok":
        assert 0.2 < sum(r["hidden_share"] for r in rows[:20]) / 20 < 0.45  # E[m] = 0.33 of the atoms
