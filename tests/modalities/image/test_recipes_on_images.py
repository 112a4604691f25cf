"""The staged recipes on CIFAR-10 subsets: AlignTok through timm (a small randomly initialised ViT stands in
for DINOv2, whose weights cannot be downloaded here), l-DeTok's patch masking, the linear probe."""
import math

import pytest
import torch

from core.build import ConfigError, build_modality, build_recipe
from core.checkpoint import list_checkpoints, load_checkpoint
from core.linear_probe import linear_probe
from core.metrics_log import MetricsLog
from core.sample import load_for_sampling
from core.train import train
from test_image_modality import tiny_overrides

# a 2-block ViT-Tiny reading 32 px images in 8 px patches: the latent grid of the modality (4 x 4) directly
TINY_VIT = ["recipe.foundation.model_name=vit_tiny_patch16_224", "recipe.foundation.model_options.img_size=32",
            "+recipe.foundation.model_options.patch_size=8", "+recipe.foundation.model_options.depth=2"]
ALIGNTOK = ["recipe=aligntok", *TINY_VIT, "recipe.standardization_samples=16"]


def test_aligntok_needs_a_local_weights_file(tmp_path, cifar_root, compose_config):
    cfg = compose_config(tiny_overrides(tmp_path, cifar_root, fid=False) + ALIGNTOK)
    with pytest.raises(ConfigError, match="needs a local weights file of the foundation encoder"):
        build_recipe(cfg, build_modality(cfg))
    cfg = compose_config(tiny_overrides(tmp_path, cifar_root, fid=False) + ALIGNTOK
                         + [f"recipe.foundation.weights={tmp_path / 'absent.pt'}"])
    with pytest.raises(ConfigError, match="no such file"):
        build_recipe(cfg, build_modality(cfg))


def test_aligntok_loads_the_weights_file_through_timm(tmp_path, cifar_root, compose_config):
    random_cfg = compose_config(tiny_overrides(tmp_path, cifar_root, fid=False) + ALIGNTOK
                                + ["recipe.foundation.weights=random"])
    torch.manual_seed(0)
    source = build_recipe(random_cfg, build_modality(random_cfg)).foundation.network
    torch.save(source.state_dict(), tmp_path / "vit.pt")
    cfg = compose_config(tiny_overrides(tmp_path, cifar_root, fid=False) + ALIGNTOK
                         + [f"recipe.foundation.weights={tmp_path / 'vit.pt'}"])
    torch.manual_seed(1)
    recipe = build_recipe(cfg, build_modality(cfg))
    for (name, loaded), original in zip(recipe.foundation.network.state_dict().items(), source.state_dict().values()):
        assert torch.equal(loaded, original), name
    assert all(torch.equal(a, b) for a, b in zip(recipe.reference.parameters(), recipe.foundation.parameters()))


def test_aligntok_molecules_are_refused(compose_config):
    cfg = compose_config(["experiment=molecule_smoke", "recipe=aligntok", "recipe.foundation.weights=random",
                          "trainer.out_dir=unused"])
    with pytest.raises(ConfigError, match="aligns a pretrained image encoder"):
        build_recipe(cfg, build_modality(cfg))


def test_aligntok_stages_end_to_end(tmp_path, cifar_root, compose_config):
    """Four stages of 2 steps: the encoder is frozen (bit-identical) in latent alignment, the semantic
    preservation loss starts at zero in perceptual alignment, only the decoder moves in decoder refinement;
    the run generates, the checkpoint samples without the weights file, and the latent is probed."""
    cfg = compose_config(tiny_overrides(tmp_path, cifar_root, fid=False) + ALIGNTOK + [
        "recipe.foundation.weights=random", "trainer.max_steps=8", "trainer.log_every=1", "trainer.checkpoint_every=1",
        "trainer.keep_checkpoints=100", "recipe.stage_fractions.latent_alignment=0.25",
        "recipe.stage_fractions.perceptual_alignment=0.25", "recipe.stage_fractions.decoder_refinement=0.25",
        "recipe.stage_fractions.generator=0.25", "trainer.lr=1e-3"])
    summary = train(cfg)
    assert [s["stage"] for s in summary["stages"]] == ["latent_alignment", "perceptual_alignment",
                                                       "decoder_refinement", "generator"]
    assert summary["generation/images_written"] == 4 and summary["reconstruction/psnr"] > 0
    rows = [r for r in MetricsLog(tmp_path / "run", True).rows() if "loss" in r]
    semantic = [r["semantic_loss"] for r in rows if r["stage"] == "perceptual_alignment"]
    assert abs(semantic[0]) < 1e-6 and semantic[1] > 0  # zero at the start of stage 2, then it moves
    states = {p.name: load_checkpoint(p) for p in list_checkpoints(tmp_path / "run" / "checkpoints")}

    def part(name, prefix):
        return {k[len(prefix):]: v for k, v in states[name]["model"].items() if k.startswith(prefix)}

    def same(a, b):
        return all(torch.equal(v, b[k]) for k, v in a.items())
    names = sorted(states)
    stage1_end, stage3_start, stage3_end = names[1], names[4], names[5]
    assert stage1_end.endswith("latent_alignment.pt") and stage3_end.endswith("decoder_refinement.pt")
    original = part(stage1_end, "reference.")  # the frozen copy of the encoder as built
    assert same(part(stage1_end, "foundation."), original) and same(part(stage3_end, "reference."), original)
    assert not same(part(names[0], "adapter."), part(stage1_end, "adapter."))
    for prefix in ("foundation.", "adapter.", "generator."):
        assert same(part(stage3_end, prefix), part(stage3_start, prefix)), prefix
    assert not same(part(stage3_end, "decoder."), part(stage3_start, "decoder."))

    model, modality, _, _ = load_for_sampling(list_checkpoints(tmp_path / "run" / "checkpoints")[-1], {},
                                              torch.device("cpu"))
    probe = linear_probe(model, modality, train_items=32, eval_items=8, eval_split="test", batch_size=16,
                         device=torch.device("cpu"))
    assert 0.0 <= probe["linear_probe_accuracy"] <= 1.0 and probe["linear_probe_train_items"] == 32


def test_ldetok_trains_on_images(tmp_path, cifar_root, compose_config):
    summary = train(compose_config(tiny_overrides(tmp_path, cifar_root, fid=False) + [
        "recipe=ldetok", "recipe.standardization_samples=16", "trainer.log_every=1"]))
    rows = [r for r in MetricsLog(tmp_path / "run", True).rows() if "loss" in r]
    assert [r["stage"] for r in rows] == ["tokenizer"] * 3 + ["generator"] * 3
    assert all(math.isfinite(r["loss"]) for r in rows) and summary["generation/images_written"] == 4
    cfg = compose_config(tiny_overrides(tmp_path, cifar_root, fid=False) + [
        "recipe=ldetok", "modality.decoder.architecture=vit_mae", "modality.decoder.latent_width=64"])
    with pytest.raises(ConfigError, match="exactly one"):
        build_recipe(cfg, build_modality(cfg))
