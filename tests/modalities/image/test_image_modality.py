"""The image modality through the protocol: embedder, decoder, GE with 2-D RoPE, metrics, files, training."""
import json
import math

import pytest
import torch
from PIL import Image

from core.build import ConfigError, build_modality, build_recipe
from core.modality import Modality
from modalities.image.datasets import ImageBatch
from modalities.image.decoder import ImageDecoder
from modalities.image.embedder import PatchEmbedder
from small_models import small_ge


def tiny_overrides(tmp_path, cifar_root, fid: bool) -> list[str]:
    return ["modality=image", f"modality.data_root={cifar_root}", f"modality.cache_dir={tmp_path / 'cache'}",
            "modality.train_subset=32", "modality.eval_subset=8", f"modality.evaluation.fid={str(fid).lower()}",
            "modality.evaluation.rfid_images=4", "modality.evaluation.fid_reference_images=8",
            "modality.decoder.depth=1", "modality.decoder.width=64", "modality.evaluation.grid_images=4",
            f"trainer.out_dir={tmp_path / 'run'}", "trainer.device=cpu", "trainer.max_steps=6",
            "trainer.batch_size=8", "trainer.log_every=3", "trainer.lr_schedule.warmup=2", "trainer.checkpoint_every=100",
            "trainer.eval_batches=1", "trainer.eval_batch_size=8", "sampler.num_samples=4", "sampler.batch_size=4",
            "sampler.num_steps=3", "model.depth=2", "model.width=64"]


def random_batch(b=2, size=16):
    return ImageBatch(torch.rand(b, 3, size, size) * 2 - 1, torch.arange(b))


def test_latent_and_patch_tokens_share_grid_coordinates():
    embedder = PatchEmbedder(width=32, image_size=16, patch_size=4, channels=3, learned_slots=True)
    observation = embedder(random_batch())
    layout = observation.layout
    assert observation.tokens.shape == (2, 16, 32) and layout.mask.all()
    assert torch.equal(observation.positions, layout.positions)
    assert layout.positions[0, 5].tolist() == [1.0, 1.0]  # token 5 of a 4 x 4 grid
    assert layout.slots.shape == (2, 16, 32) and layout.slots.requires_grad
    generated = embedder.generation_layout(3, torch.device("cpu"), None)
    assert generated.mask.shape == (3, 16) and torch.equal(generated.positions[0], layout.positions[0])
    with pytest.raises(ValueError, match=r"\(2, 1, 16, 16\).*modality.channels"):
        embedder(ImageBatch(torch.zeros(2, 1, 16, 16), torch.zeros(2, dtype=torch.long)))


def test_tokenize_decode_shapes_with_2d_rope():
    embedder = PatchEmbedder(width=32, image_size=16, patch_size=4, channels=3, learned_slots=True)
    ge = small_ge(depth=2, heads=2, num_classes=3, rope_axes=2)
    decoder = ImageDecoder(latent_channels=6, image_size=16, patch_size=4, channels=3, architecture="rope", depth=1,
                           width=32, heads=2, mlp_ratio=2.0, latent_width=None, head="linear", conv_head_features=8)
    observation = embedder(random_batch())
    z = ge.tokenize(observation)
    assert z.shape == (2, 16, 6)
    images = decoder(z, observation.layout)
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()
    # At initialisation the GE's zero final layer gives z = 0 everywhere, and an all-zero latent grid gives
    # the decoder all-zero hidden states (no gradient). Training decodes noised latents (recipe
    # decoder_noise), which is what lets the reconstruction gradient reach the GE from the first step:
    noised = z + 0.1 * torch.randn_like(z)
    decoder(noised, observation.layout).pow(2).sum().backward()
    assert ge.latent_norm.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("architecture,head", [("vit_mae", "linear"), ("rope", "conv"), ("vit_mae", "conv")])
def test_decoder_options_decode_the_grid(architecture, head):
    torch.manual_seed(0)
    decoder = ImageDecoder(latent_channels=6, image_size=16, patch_size=4, channels=3, architecture=architecture,
                           depth=1, width=32, heads=2, mlp_ratio=2.0, head=head, conv_head_features=8,
                           latent_width=24 if architecture == "vit_mae" else None)
    layout = PatchEmbedder(32, 16, 4, 3, True).layout(2, torch.device("cpu"))
    z = torch.randn(2, 16, 6, requires_grad=True)
    images = decoder(z, layout)
    assert images.shape == (2, 3, 16, 16)
    images[:, :, :4, :4].sum().backward()  # the top-left patch
    reached = z.grad.abs().sum(-1)[0]
    assert reached[0] > 0 and (reached[1:] > 0).any()  # attention mixes the other tokens in
    if architecture == "vit_mae":  # fixed MAE positions: a zero CLS row, then the sincos grid
        assert torch.equal(decoder.trunk.positions[0, 0], torch.zeros(32)) and decoder.trunk.embed is not None
    with pytest.raises(ValueError, match="latent_width applies to architecture=vit_mae"):
        ImageDecoder(6, 16, 4, 3, "rope", 1, 32, 2, 2.0, latent_width=24, head="linear", conv_head_features=8)
    with pytest.raises(ValueError, match="modality.decoder.head='pixelshuffle'"):
        ImageDecoder(6, 16, 4, 3, "rope", 1, 32, 2, 2.0, latent_width=None, head="pixelshuffle", conv_head_features=8)


def test_bad_config_values_name_the_key(compose_config):
    with pytest.raises(ConfigError, match=r"modality.image_size=30 is not divisible by modality.patch_size=8"):
        build_modality(compose_config(["modality=image", "modality.image_size=30", "trainer.out_dir=unused"]))
    with pytest.raises(ConfigError, match=r"modality.evaluation: .*unexpected keyword argument 'fdi'"):
        build_modality(compose_config(["modality=image", "+modality.evaluation.fdi=true", "trainer.out_dir=unused"]))


def test_metrics_and_sample_files(tmp_path, cifar_root, compose_config):
    cfg = compose_config(tiny_overrides(tmp_path, cifar_root, fid=False))
    modality = build_modality(cfg)
    assert isinstance(modality, Modality) and modality.num_classes == 10 and modality.rope_axes == 2
    batch = modality.collate([modality.dataset("test")[i] for i in range(4)])
    metrics = modality.reconstruction_metrics(batch.images, batch)
    assert metrics["psnr"].shape == (4,) and torch.isinf(metrics["psnr"]).all()  # perfect reconstruction
    assert torch.allclose(metrics["ssim"], torch.ones(4))
    summary = modality.write_samples([batch.images[:2], batch.images[2:]], [None, None],
                                     [batch.labels[:2], batch.labels[2:]], tmp_path / "samples")
    names = sorted(p.name for p in (tmp_path / "samples" / "images").iterdir())
    assert summary["images_written"] == 4 and len(names) == 4
    assert names[0].startswith("00000_") and names[0][6:-4] in modality.class_names
    assert Image.open(summary["grid"]).size[0] > 4 * 64  # upscaled tiles with captions
    assert summary["perceptual_loss"] == "off" and "gfid" not in summary


def test_training_smoke_through_core_train(tmp_path, cifar_root, compose_config, monkeypatch):
    """A few steps on a 32-image subset, then rFID/gFID on tiny counts (values meaningless, the path is not)."""
    from core.train import train
    cfg = compose_config(tiny_overrides(tmp_path, cifar_root, fid=True))
    summary = train(cfg)
    assert summary["steps"] == 6 and summary["reconstruction/psnr"] > 0
    assert summary["generation/images_written"] == 4 and summary["generation/gfid_samples"] == 4
    assert summary["reconstruction/rfid_images"] == 4 and summary["reconstruction/rfid"] > 0
    assert summary["generation/gfid"] > 0 and "generation/rfid" not in summary
    assert summary["generation/perceptual_loss"] == "off"
    assert summary["reconstruction/seam_ratio"] > 0 and summary["generation/seam_ratio"] > 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["perceptual_on"] == 0.0 and all(math.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert (tmp_path / "run" / "samples" / "grid.png").is_file()
    assert list((tmp_path / "cache" / "fid_stats").glob("*-train-32px-8.pt"))  # cached reference statistics
    modality = build_modality(cfg)
    recipe = build_recipe(cfg, modality)
    assert sum(p.numel() for p in recipe.parameters()) == summary["parameters"]
    from benchmarks import image_run_report
    monkeypatch.setattr("sys.argv", ["image_run_report", str(tmp_path / "run"), "--name", "report", "--pairs", "3",
                                     "--results-dir", str(tmp_path / "results")])
    image_run_report.main()
    report = tmp_path / "results" / "report"
    assert {"summary.json", "samples.png", "reconstructions.png"} <= {f.name for f in report.iterdir()}
    from benchmarks.image_probe_figures import probe_figures
    checkpoint = next((tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    by_run, by_file = probe_figures(tmp_path / "run", tmp_path), probe_figures(checkpoint, tmp_path)
    assert by_run == by_file and by_run["steps"] == 6 and by_run["process_seconds"] > 0
    assert (tmp_path / "run.png").is_file()
