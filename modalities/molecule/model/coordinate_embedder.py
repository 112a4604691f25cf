"""ADiT's alternative to the equivariant encoder: coordinates as plain token features.

Tokens are element embeddings plus an MLP of the centred coordinates (Å), in the input frame, so the
decoder returns coordinates in the input frame too. The network is not rotation-equivariant by
construction: training rotates input and target alike (the dataset's random rotation), so it learns every
orientation. Slot i may know it is atom i (index_slots, modalities/molecule/model/atom_slots.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch_geometric.utils import scatter, to_dense_batch

from core.modality import LatentLayout, Observation
from core.precision import float32_region, widened
from modalities.molecule.model.atom_counts import AtomCountPrior
from modalities.molecule.model.atom_slots import AtomIndexSlots
from modalities.molecule.model.corruption import AtomCorruption


class CoordinateTokens(nn.Module):
    """Per-atom token [A, width] = element embedding + MLP of the position relative to the molecule's
    centroid (Å, input frame). Element class `num_classes - 1` is the corruption's mask class."""

    def __init__(self, num_classes: int, width: int, hidden: int):
        super().__init__()
        self.element_embedding = nn.Embedding(num_classes, width)
        self.coordinates = nn.Sequential(nn.Linear(3, hidden), nn.SiLU(), nn.Linear(hidden, width))

    def forward(self, element: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        with float32_region(pos.device):  # Å coordinates in float32: bf16 resolves 3 Å to 0.016 Å
            centred = pos - scatter(pos, batch, dim=0, reduce="mean")[batch]
            return self.element_embedding(element) + self.coordinates(widened(centred))


class CoordinateAtomEmbedder(nn.Module):
    def __init__(self, width: int, num_elements: int, hidden: int, index_slots: str,
                 atom_count_histogram: torch.Tensor, corruption: AtomCorruption):
        super().__init__()
        self.atom_tokens = CoordinateTokens(num_elements + 1, width, hidden)  # + the mask class
        self.to_latent_hints = nn.Linear(width, width)
        self.atom_counts = AtomCountPrior(atom_count_histogram)
        self.slots = AtomIndexSlots(index_slots, width)
        self.corruption = corruption
        self.mask_class = num_elements

    def forward(self, batch) -> Observation:
        element, pos = batch.element, batch.pos
        if self.training:
            element, pos = self.corruption(element, pos, self.mask_class)
        tokens = self.atom_tokens(element, pos, batch.batch)
        tokens, mask = to_dense_batch(tokens, batch.batch)  # [B, N, D], [B, N]
        return Observation(tokens=tokens, mask=mask, positions=None,
                           latent_hints=self.to_latent_hints(tokens), layout=self.slots.layout(mask))

    def generation_layout(self, num_samples: int, device, generator=None) -> LatentLayout:
        return self.slots.layout(self.atom_counts.generation_mask(num_samples, device, generator))
