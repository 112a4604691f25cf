"""Every modality and recipe trains, evaluates, samples and resumes under bf16 autocast *forced* and under
float32, on whatever CPU runs the suite: bf16 is emulated where the CPU lacks it, so a dtype break (an op
autocast does not cover, a float32 weight meeting a bf16 activation) fails here on every machine, CI
included, before it can reach a bf16 CPU or a GPU (issue 19)."""
import json
import math

import pytest
import torch

from core.checkpoint import list_checkpoints
from core.metrics_log import MetricsLog
from core.sample import sample
from core.train import train
from small_models import image_folder

MOLECULE = ["experiment=molecule_smoke", "modality.train_subset=32", "trainer.max_steps=4", "trainer.log_every=1",
            "trainer.checkpoint_every=2", "trainer.batch_size=8", "sampler.num_samples=4", "sampler.num_steps=3"]
IMAGE = ["modality=image", "modality.dataset=image_folder", "modality.image_size=8", "modality.patch_size=4",
         "modality.random_flip=false", "modality.evaluation.fid=false", "modality.evaluation.grid_images=4",
         "modality.decoder.depth=1", "modality.decoder.width=32", "modality.decoder.heads=2", "model.depth=1",
         "model.width=32", "model.heads=2", "model.latent_channels=4", "trainer.batch_size=8", "trainer.max_steps=4",
         "trainer.log_every=1", "trainer.checkpoint_every=2", "trainer.eval_batches=1", "trainer.eval_batch_size=8",
         "sampler.num_samples=4", "sampler.batch_size=4", "sampler.num_steps=3"]
STAGED = ["recipe.standardization_samples=8"]
TINY_VIT = ["recipe=aligntok", "recipe.foundation.weights=random", "recipe.foundation.model_name=vit_tiny_patch16_224",
            "recipe.foundation.model_options.img_size=8", "+recipe.foundation.model_options.patch_size=4",
            "+recipe.foundation.model_options.depth=1", "recipe.standardization_samples=8", "trainer.max_steps=8"]
CASES = {
    "molecule-unite": MOLECULE,
    "molecule-coordinates": MOLECULE + ["modality/embedder=coordinates", "~modality.embedder.hidden_irreps",
                                        "~modality.embedder.num_layers"],
    "molecule-two_stage": MOLECULE + ["recipe=two_stage", *STAGED],
    "molecule-ldetok": MOLECULE + ["recipe=ldetok", *STAGED],
    "image-unite": IMAGE,
    "image-two_stage": IMAGE + ["recipe=two_stage", *STAGED],
    "image-ldetok": IMAGE + ["recipe=ldetok", *STAGED],
    "image-aligntok": IMAGE + TINY_VIT,
}
PRECISIONS = ("bf16", "fp32")


def overrides(case: str, precision: str, out, data) -> list[str]:
    data_root = [f"modality.data_root={data}"] if case.startswith("image") else []
    return CASES[case] + data_root + [f"trainer.precision={precision}", f"sampler.precision={precision}",
                                      "trainer.device=cpu", f"trainer.out_dir={out}"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", CASES)
def test_trains_and_generates(case, precision, compose_config, tmp_path, images):
    summary = train(compose_config(overrides(case, precision, tmp_path, images)))
    steps = compose_config(overrides(case, precision, tmp_path, images)).trainer.max_steps
    assert summary["steps"] == steps and summary["stop_reason"] == "max_steps"
    rows = [row for row in MetricsLog(tmp_path, True).rows() if "loss" in row]
    assert len(rows) == steps and all(math.isfinite(row["loss"]) for row in rows)
    assert summary[f"generation/{'images_written' if case.startswith('image') else 'samples'}"] == 4
    assert "dtype" not in json.dumps(summary)  # no evaluation error string recorded instead of figures


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", ["molecule-unite", "image-unite"])
def test_resumes_and_samples_from_its_checkpoint(case, precision, compose_config, tmp_path, images):
    first = overrides(case, precision, tmp_path, images) + ["trainer.evaluate_at_end=false"]
    train(compose_config(first + ["trainer.max_steps=2"]))
    resumed = train(compose_config(first + ["trainer.resume=auto"]))
    assert resumed["steps"] == 4
    checkpoint = list_checkpoints(tmp_path / "checkpoints")[-1]
    summary = sample(compose_config([f"checkpoint={checkpoint}", "num_samples=3", f"out_dir={tmp_path / 'samples'}",
                                     f"sampler.precision={precision}", "sampler.num_steps=2", "sampler.batch_size=3",
                                     "device=cpu"], config_name="sample"))
    assert summary["samples"] == 3


@pytest.mark.parametrize("case", ["molecule-unite", "image-unite"])
def test_bf16_keeps_latents_losses_and_geometry_in_float32(case, compose_config, tmp_path, images):
    """The explicit float32 rule (core/precision.py): z, the step's noise, every loss, and the molecule
    decoder's coordinates come out float32 from a bf16-autocast forward."""
    from core.build import build_modality, build_recipe
    cfg = compose_config(overrides(case, "bf16", tmp_path, images))
    modality = build_modality(cfg)
    recipe = build_recipe(cfg, modality).train()
    batch = modality.collate([modality.dataset("train")[i] for i in range(4)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        observation = recipe.embedder(batch)
        draws = recipe.draw(observation.layout.mask, observation.tokens.dtype)
        z = recipe.encoder.tokenize(observation, draws.tokenize_noise, draws.tokenize_t)
        prediction = recipe.decoder(z, observation.layout)
        loss, parts = recipe(batch)
    assert z.dtype == draws.flow_x0.dtype == loss.dtype == torch.float32
    assert all(value.dtype == torch.float32 for value in parts.values())
    if case.startswith("molecule"):
        assert prediction.positions.dtype == prediction.element_logits.dtype == torch.float32
