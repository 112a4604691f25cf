"""ADiT's measured alternative to the equivariant encoder: coordinates as plain token features.

Tokens are element embeddings plus an MLP of the centred coordinates (Å), in the input frame. The model
is not rotation-invariant by construction; training applies a random rotation per molecule so it learns
every orientation (the decoder's loss aligns frames, so the target need not be rotated too).
Permutation-equivariance holds as for the equivariant encoder (no index embedding).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from e3nn import o3
from torch_geometric.utils import to_dense_batch

from core.modality import LatentLayout, Observation
from modalities.molecule.model.atom_counts import AtomCountPrior


class CoordinateAtomEmbedder(nn.Module):
    def __init__(self, width: int, num_elements: int, hidden: int, random_rotation: bool,
                 atom_count_histogram: torch.Tensor):
        super().__init__()
        self.element_embedding = nn.Embedding(num_elements, width)
        self.coordinates = nn.Sequential(nn.Linear(3, hidden), nn.SiLU(), nn.Linear(hidden, width))
        self.to_latent_hints = nn.Linear(width, width)
        self.random_rotation = random_rotation
        self.atom_counts = AtomCountPrior(atom_count_histogram)

    def forward(self, batch) -> Observation:
        pos = batch.pos
        if self.training and self.random_rotation:
            rotations = o3.rand_matrix(int(batch.num_graphs), device=pos.device, dtype=pos.dtype)  # [B, 3, 3]
            pos = torch.einsum("aij,aj->ai", rotations[batch.batch], pos)
        tokens = self.element_embedding(batch.element) + self.coordinates(pos)
        tokens, mask = to_dense_batch(tokens, batch.batch)  # [B, N, D], [B, N]
        return Observation(tokens=tokens, mask=mask, positions=None,
                           latent_hints=self.to_latent_hints(tokens), layout=LatentLayout(mask=mask))

    def generation_layout(self, num_samples: int, device, generator=None) -> LatentLayout:
        return self.atom_counts.generation_layout(num_samples, device, generator)
