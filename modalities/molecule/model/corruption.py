"""ADiT's denoising corruption of the tokenizer's input: masked atom types and jittered positions.

During training only, the observation embedder sees a corrupted copy of each molecule while the
reconstruction target stays clean, so the tokenizer learns to fix small errors of the kind generated
latents decode into. ADiT (all-atom-diffusion-transformer, VAE `augmentations.noise: 0.1`) masks the type
of 10 % of a batch's atoms and, independently, adds N(0, 0.1 Å) noise to the coordinates of another 10 %.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AtomCorruption:
    """element_mask_fraction: share of a batch's atoms whose element becomes the mask class;
    jitter_fraction: share of atoms (drawn independently) moved by Gaussian noise of jitter_std Å per axis."""

    element_mask_fraction: float
    jitter_fraction: float
    jitter_std: float

    def __post_init__(self):
        for key in ("element_mask_fraction", "jitter_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"modality.input_corruption.{key}={value} must lie in [0, 1]")
        if self.jitter_std < 0:
            raise ValueError(f"modality.input_corruption.jitter_std={self.jitter_std} must be >= 0")

    def __call__(self, element: torch.Tensor, pos: torch.Tensor, mask_class: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """element [A] long, pos [A, 3] Å (flat PyG atoms) -> corrupted copies; inputs are not modified.

        Exactly round(fraction x A) atoms are chosen without replacement for each corruption (ADiT)."""
        total = element.shape[0]
        n_masked = round(self.element_mask_fraction * total)
        n_jittered = round(self.jitter_fraction * total) if self.jitter_std > 0 else 0
        if n_masked:
            chosen = torch.randperm(total, generator=generator, device=element.device)[:n_masked]
            element = element.clone()
            element[chosen] = mask_class
        if n_jittered:
            chosen = torch.randperm(total, generator=generator, device=pos.device)[:n_jittered]
            noise = torch.randn(n_jittered, 3, generator=generator, device=pos.device, dtype=pos.dtype)
            pos = pos.index_add(0, chosen, self.jitter_std * noise)
        return element, pos
