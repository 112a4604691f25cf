"""Molecule decoder: transformer over the latent set -> element logits and 3-D coordinates (Å).

With frame-carrying tokens (the default) coordinates come out in the input frame and the loss compares
them there; with rotation-invariant tokens the frame is the decoder's choice and the loss aligns the
target onto the prediction first (`modality.loss.coordinate_frame`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from core.generative_encoder import DecoderTrunk
from core.modality import LatentLayout
from core.precision import float32_region, widened


@dataclass
class MoleculePrediction:
    element_logits: torch.Tensor  # [B, N, num_elements]
    positions: torch.Tensor  # [B, N, 3] Å
    mask: torch.Tensor  # [B, N] bool

    @property
    def elements(self) -> torch.Tensor:
        return self.element_logits.argmax(-1)


class MoleculeDecoder(nn.Module):
    def __init__(self, latent_channels: int, num_elements: int, depth: int, width: int, heads: int,
                 mlp_ratio: float, coordinate_scale: float):
        super().__init__()
        self.trunk = DecoderTrunk(latent_channels, depth, width, heads, mlp_ratio, qk_norm=True, rope_axes=0)
        self.element_head = nn.Linear(width, num_elements)
        self.position_head = nn.Linear(width, 3)
        self.coordinate_scale = coordinate_scale  # Å per unit of the head's output

    def forward(self, z: torch.Tensor, layout: LatentLayout) -> MoleculePrediction:
        h = self.trunk(z, layout)
        with float32_region(h.device):  # coordinates (Å) and logits in float32 (core/precision.py)
            h = widened(h)
            positions = self.position_head(h) * self.coordinate_scale
            return MoleculePrediction(self.element_head(h), positions, layout.mask)
