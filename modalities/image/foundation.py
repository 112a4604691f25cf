"""A pretrained vision foundation encoder (DINOv2 by default) read through timm, for recipe=aligntok.

Weights come from a local file (timm's state dict of the named model, e.g. the `model.safetensors` or
`pytorch_model.bin` of `timm/vit_small_patch14_dinov2.lvd142m`); nothing is downloaded. `weights: random`
builds the network with random weights, for tests only. Images ([-1, 1], the modality's size) are
resized to the encoder's input size and normalised as the weights expect; its patch features are pooled
onto the modality's latent grid (one feature vector per latent token).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

RANDOM = "random"


class FoundationWeightsMissing(ValueError):
    pass


class TimmFoundationEncoder(nn.Module):
    """ImageBatch -> features [B, N_lat, F] on the image modality's latent grid (row-major, as its patches)."""

    def __init__(self, model_name: str, weights: str | None, model_options: dict):
        super().__init__()
        import timm
        if weights is None:
            raise FoundationWeightsMissing(
                f"recipe.foundation.weights is null: AlignTok needs a local weights file of the foundation encoder "
                f"{model_name!r} (timm's state dict, e.g. model.safetensors of timm/{model_name}.lvd142m, copied to "
                f"this machine); pass recipe.foundation.weights=/path/to/file. Nothing is downloaded here. "
                f"(weights=random builds it with random weights: for tests, not for results.)")
        options = dict(model_options)
        if weights == RANDOM:
            self.network = timm.create_model(model_name, pretrained=False, num_classes=0, **options)
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FoundationWeightsMissing(f"recipe.foundation.weights={weights!r}: no such file")
            # timm's own loader: its checkpoint filter adapts e.g. position embeddings to img_size
            self.network = timm.create_model(model_name, pretrained=True, num_classes=0,
                                             pretrained_cfg_overlay={"file": str(path)}, **options)
        self.weights = weights
        self.feature_dim = self.network.num_features
        config = self.network.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config.get("mean", (0.5, 0.5, 0.5))).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(config.get("std", (0.5, 0.5, 0.5))).view(1, -1, 1, 1),
                             persistent=False)
        self.input_size = tuple(self.network.patch_embed.img_size)
        self.grid: int | None = None

    def bind(self, modality) -> None:
        """Check the modality (images only) and take its latent grid (image_size / patch_size per side)."""
        from modalities.image.modality import ImageModality
        if not isinstance(modality, ImageModality):
            raise ValueError(f"recipe=aligntok aligns a pretrained image encoder; modality {modality.name!r} has none "
                             "(use recipe=two_stage or recipe=ldetok)")
        if modality.channels != 3:
            raise ValueError(f"recipe=aligntok: the foundation encoder reads RGB images, modality.channels="
                             f"{modality.channels}")
        self.grid = modality.image_size // modality.patch_size

    def forward(self, batch) -> torch.Tensor:
        if self.grid is None:
            raise RuntimeError("TimmFoundationEncoder.bind(modality) must be called before use")
        images = (batch.images.float() + 1) / 2  # [B, 3, H, W] on [0, 1]
        images = F.interpolate(images, size=self.input_size, mode="bicubic", align_corners=False)
        tokens = self.network.forward_features((images - self.mean) / self.std)  # [B, prefix + h w, F]
        patches = tokens[:, self.network.num_prefix_tokens:]
        h, w = self.network.patch_embed.grid_size
        grid = patches.transpose(1, 2).reshape(patches.shape[0], -1, h, w)  # [B, F, h, w]
        if (h, w) != (self.grid, self.grid):
            grid = F.adaptive_avg_pool2d(grid, self.grid)
        return grid.flatten(2).transpose(1, 2)  # [B, grid * grid, F]
