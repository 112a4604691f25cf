"""Image decoder: latent grid -> transformer trunk -> pixel head -> image [B, C, H, W] on [-1, 1].

Trunks (modality.decoder.architecture):
  rope     ours: core DecoderTrunk (RMSNorm, SwiGLU, QK-norm, 2-D RoPE over the latent grid)
  vit_mae  the official UNITE decoder, a ViT-MAE decoder: LayerNorm, GELU MLP, fixed 2-D sincos
           positions, a learned CLS token in front of the latent tokens
Pixel heads (modality.decoder.head):
  linear   one linear map per token to its p x p patch (ViT/MAE). Neighbouring patches are predicted
           independently, which small models show as seams at the patch borders.
  conv     one linear map per token to p x p x F features laid out on the pixel grid (pixel shuffle),
           then two 3 x 3 convolutions that see across the patch borders.

The prediction is on the data scale [-1, 1] (pixel = 127.5 * (x + 1)), not clamped, so the L1 loss sees
how far it overshoots; metrics and sample files clamp.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.generative_encoder import DecoderTrunk
from core.layers import Attention, xavier_init_linear
from core.modality import LatentLayout
from modalities.image.patches import patch_grid, sincos_2d, unpatchify

ARCHITECTURES = ("rope", "vit_mae")
HEADS = ("linear", "conv")


class ViTMAEBlock(nn.Module):
    """Pre-norm ViT block: LayerNorm, attention (no QK-norm, no RoPE), LayerNorm, GELU MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads, qk_norm=False)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.fc1 = nn.Linear(width, int(mlp_ratio * width))
        self.fc2 = nn.Linear(int(mlp_ratio * width), width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), None, None)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViTMAETrunk(nn.Module):
    """Latent grid [B, N, C] -> hidden states [B, N, D], as the official UNITE decoder.

    latent_width: the official code maps latents to 768 channels, then to the decoder width (two
    linear maps); null maps them straight to the width."""

    # HuggingFace ViT-MAE's LayerNorm epsilon, which the official decoder keeps.
    EPS = 1e-12

    def __init__(self, latent_channels: int, grid: int, depth: int, width: int, heads: int, mlp_ratio: float,
                 latent_width: int | None):
        super().__init__()
        self.latent_in = nn.Linear(latent_channels, latent_width or width)
        self.embed = nn.Linear(latent_width, width) if latent_width else None
        self.cls_token = nn.Parameter(torch.zeros(width))
        cls_and_grid = torch.cat([torch.zeros(1, width), sincos_2d(width, grid, grid)])  # [1 + N, D]
        self.register_buffer("positions", cls_and_grid.unsqueeze(0), persistent=False)
        self.blocks = nn.ModuleList(ViTMAEBlock(width, heads, mlp_ratio, self.EPS) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=self.EPS)

    def forward(self, z: torch.Tensor, layout: LatentLayout) -> torch.Tensor:
        x = self.latent_in(z)
        if self.embed is not None:
            x = self.embed(x)
        cls = self.cls_token.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positions.to(x.dtype)  # [B, 1 + N, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1:]


class ConvPixelHead(nn.Module):
    """Hidden states [B, N, D] -> image [B, C, H, W] through per-pixel features and 3 x 3 convolutions."""

    def __init__(self, width: int, patch_size: int, channels: int, features: int):
        super().__init__()
        self.patch_size, self.features = patch_size, features
        self.to_features = nn.Linear(width, patch_size * patch_size * features)
        self.refine = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.GELU(),
                                    nn.Conv2d(features, channels, 3, padding=1))

    def forward(self, h: torch.Tensor, image_size: int) -> torch.Tensor:
        grid = unpatchify(self.to_features(h), self.patch_size, image_size, image_size, self.features)
        return self.refine(grid)  # [B, C, H, W]


class ImageDecoder(nn.Module):
    def __init__(self, latent_channels: int, image_size: int, patch_size: int, channels: int, architecture: str,
                 depth: int, width: int, heads: int, mlp_ratio: float, latent_width: int | None, head: str,
                 conv_head_features: int):
        super().__init__()
        grid = patch_grid(image_size, patch_size)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"modality.decoder.architecture={architecture!r}: choose one of {ARCHITECTURES}")
        if head not in HEADS:
            raise ValueError(f"modality.decoder.head={head!r}: choose one of {HEADS}")
        if architecture == "rope" and latent_width is not None:
            raise ValueError("modality.decoder.latent_width applies to architecture=vit_mae only; set it to null")
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        self.architecture, self.head = architecture, head
        if architecture == "rope":
            self.trunk = DecoderTrunk(latent_channels, depth, width, heads, mlp_ratio, qk_norm=True, rope_axes=2)
        else:
            self.trunk = ViTMAETrunk(latent_channels, grid, depth, width, heads, mlp_ratio, latent_width)
        if head == "linear":
            self.pixel_head = nn.Linear(width, patch_size * patch_size * channels)
        else:
            self.pixel_head = ConvPixelHead(width, patch_size, channels, conv_head_features)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # No zero-init of the pixel head (MAE initialises its decoder head like any linear layer): a zero
        # head would pass no reconstruction gradient back to the latents in the first steps, while the
        # denoising loss already pulls the shared GE towards constant, easy-to-denoise latents.
        # The official ViT-MAE decoder keeps PyTorch's default initialisation of every layer.
        if self.architecture == "rope":
            self.apply(xavier_init_linear)

    def forward(self, z: torch.Tensor, layout: LatentLayout) -> torch.Tensor:
        """z: [B, N, C_lat] on the full grid -> images [B, C, H, W], [-1, 1] scale."""
        if layout.positions is None:
            raise ValueError("the image decoder needs grid positions in the latent layout (layout.positions)")
        h = self.trunk(z, layout)  # [B, N, D]
        if self.head == "conv":
            return at_least_float32(self.pixel_head(h, self.image_size))
        patches = self.pixel_head(h)  # [B, N, p*p*C]
        return unpatchify(at_least_float32(patches), self.patch_size, self.image_size, self.image_size, self.channels)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """bf16 (autocast) -> float32 for the loss; a float64 model keeps float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
