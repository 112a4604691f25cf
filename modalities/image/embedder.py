"""ViT patch embedding -> observation tokens on a 2-D grid, plus the image latent layout.

One latent token per patch. Latent token n and patch token n share the grid coordinates (row, col), so
the GE's 2-D rotary embedding treats them as the same place. Each grid position owns a learned latent
slot embedding (sincos-initialised, like the official UNITE `latent_tokens`); it rides in
`LatentLayout.slots` and is added to the latent inputs in both passes (tokenize and denoise).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from core.modality import LatentLayout, Observation
from modalities.image.patches import grid_coordinates, patch_grid, patchify, sincos_2d


class PatchEmbedder(nn.Module):
    """ImageBatch (images [B, C, H, W] in [-1, 1]) -> Observation of (H/p)(W/p) tokens of width D.

    The patch projection is a Linear on flattened p x p x C patches (a stride-p convolution written
    as a matrix product). No absolute position is added to the patch tokens: the rotary embedding over
    (row, col) gives attention its geometry, and the latent slots give each latent token its identity.
    """

    def __init__(self, width: int, image_size: int, patch_size: int, channels: int, learned_slots: bool):
        super().__init__()
        self.grid = patch_grid(image_size, patch_size)
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        self.width = width
        self.patch_embed = nn.Linear(patch_size * patch_size * channels, width)
        slots = sincos_2d(width, self.grid, self.grid).unsqueeze(0)  # [1, N, D]
        # Official UNITE learns these; frozen sincos is the switch for ablations.
        self.latent_slots = nn.Parameter(slots, requires_grad=learned_slots)
        self.register_buffer("coordinates", grid_coordinates(self.grid, self.grid), persistent=False)  # [N, 2]
        nn.init.xavier_uniform_(self.patch_embed.weight)
        nn.init.zeros_(self.patch_embed.bias)

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def check_images(self, images: torch.Tensor) -> None:
        expected = (self.channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"image batch of shape {tuple(images.shape)} does not match the modality's "
                             f"[B, {expected[0]}, {expected[1]}, {expected[2]}] (modality.channels, "
                             "modality.image_size)")

    def layout(self, batch_size: int, device: torch.device) -> LatentLayout:
        """The full grid: every slot real, (row, col) coordinates, the learned slot embeddings."""
        mask = torch.ones(batch_size, self.num_tokens, dtype=torch.bool, device=device)
        positions = self.coordinates.to(device).expand(batch_size, -1, -1)  # [B, N, 2]
        slots = self.latent_slots.expand(batch_size, -1, -1)  # [B, N, D]
        return LatentLayout(mask=mask, positions=positions, slots=slots, padded=False)

    def forward(self, batch) -> Observation:
        images = batch.images
        self.check_images(images)
        tokens = self.patch_embed(patchify(images, self.patch_size))  # [B, N, D]
        layout = self.layout(images.shape[0], images.device)
        return Observation(tokens=tokens, mask=layout.mask, positions=layout.positions, latent_hints=None,
                           layout=layout, padded=False)

    def generation_layout(self, num_samples: int, device: torch.device,
                          generator: torch.Generator | None = None) -> LatentLayout:
        """Images always generate the full grid; `generator` is unused (nothing is random here)."""
        return self.layout(num_samples, device)
