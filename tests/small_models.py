"""Small Generative Encoders for unit tests: every constructor argument spelled once, override any."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.generative_encoder import GenerativeEncoder

GE_OPTIONS = dict(depth=3, width=32, heads=4, mlp_ratio=2.0, qk_norm=True, latent_channels=6, num_classes=5,
                  class_dropout=0.1, in_context_tokens=0, in_context_start=0, rope_axes=0,
                  tokenize_t_max=0.01, latent_norm_affine=True, final_layer_init_std=0.0,
                  gradient_checkpointing=False, block_norm=False, norm_scale=False,
                  time_embedding="sinusoidal", rope_positions="grid")


def small_ge(**overrides) -> GenerativeEncoder:
    unknown = set(overrides) - set(GE_OPTIONS)
    if unknown:
        raise TypeError(f"small_ge: unknown GenerativeEncoder options {sorted(unknown)}")
    return GenerativeEncoder(**{**GE_OPTIONS, **overrides})


# The official-options image model (benchmarks/official_parity_speed.our_overrides) at test size.
TINY_IMAGE = {"depth": 2, "width": 32, "heads": 2, "latent_channels": 8, "in_context_tokens": 2, "in_context_start": 1,
              "decoder_depth": 1, "decoder_width": 32, "decoder_heads": 2, "decoder_mlp": 64, "num_classes": 10,
              "image_size": 16, "patch_size": 4, "flow_draws": 2, "batch": 4}


def tiny_image_recipe(compose_config, tmp_path, *extra):
    """(recipe in train mode, a batch of 4 images): `experiment=imagenet256_unite_b` at TINY_IMAGE sizes
    (the official options), every zero-initialised output layer made random, seeded."""
    from benchmarks.official_parity import class_folders
    from benchmarks.official_parity_speed import our_overrides
    from core.build import build_modality, build_recipe
    from modalities.image.datasets import ImageBatch
    root = class_folders(tmp_path, TINY_IMAGE["num_classes"])
    cfg = compose_config(our_overrides(TINY_IMAGE) + [f"modality.data_root={root}", *extra])
    torch.manual_seed(0)
    recipe = build_recipe(cfg, build_modality(cfg)).train()
    with torch.no_grad():  # leave the zero inits, so every layer shapes the loss
        for name, parameter in recipe.named_parameters():
            if "final_layer" in name or "adaLN" in name:
                parameter.normal_(std=0.05)
    g = torch.Generator().manual_seed(1)
    size = TINY_IMAGE["image_size"]
    batch = ImageBatch(torch.rand(TINY_IMAGE["batch"], 3, size, size, generator=g) * 2 - 1, torch.tensor([0, 3, 5, 9]))
    return recipe, batch


def image_folder(root: Path) -> Path:
    """A two-class ImageFolder of random 8 px PNGs (12 train, 4 test images per class) under root."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root
