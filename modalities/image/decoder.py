"""Image decoder: latent grid -> DecoderTrunk (2-D RoPE) -> linear head to patch pixels -> unpatchify.

The prediction is an image tensor [B, C, H, W] on the data scale [-1, 1] (pixel = 127.5 * (x + 1)),
not clamped, so the L1 loss sees how far it overshoots; metrics and sample files clamp.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from core.generative_encoder import DecoderTrunk
from core.layers import xavier_init_linear
from core.modality import LatentLayout
from modalities.image.patches import patch_grid, unpatchify


class ImageDecoder(nn.Module):
    def __init__(self, latent_channels: int, image_size: int, patch_size: int, channels: int, depth: int,
                 width: int, heads: int, mlp_ratio: float):
        super().__init__()
        patch_grid(image_size, patch_size)
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        self.trunk = DecoderTrunk(latent_channels, depth, width, heads, mlp_ratio, qk_norm=True, rope_axes=2)
        self.pixel_head = nn.Linear(width, patch_size * patch_size * channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # No zero-init of the pixel head (MAE initialises its decoder head like any linear layer): a zero
        # head would pass no reconstruction gradient back to the latents in the first steps, while the
        # denoising loss already pulls the shared GE towards constant, easy-to-denoise latents.
        self.apply(xavier_init_linear)

    def forward(self, z: torch.Tensor, layout: LatentLayout,
                hidden_mask_positions: torch.Tensor | None = None) -> torch.Tensor:
        """z: [B, N, C_lat] on the full grid -> images [B, C, H, W], [-1, 1] scale."""
        if layout.positions is None:
            raise ValueError("the image decoder needs grid positions in the latent layout (layout.positions)")
        h = self.trunk(z, layout, hidden_mask_positions)  # [B, N, D]
        patches = self.pixel_head(h)  # [B, N, p*p*C]
        return unpatchify(patches.float(), self.patch_size, self.image_size, self.image_size, self.channels)
