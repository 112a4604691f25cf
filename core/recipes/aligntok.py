"""AlignTok (Chen et al. 2025, arXiv 2509.25162): a pretrained vision foundation encoder aligned into a tokenizer.

    latent_alignment      the foundation encoder frozen; a light adapter (features -> C-channel latent:
                          Linear then LayerNorm, as the GE's latent head) and the decoder train on the
                          reconstruction loss
    perceptual_alignment  everything trains; plus the semantic preservation loss, which keeps the encoder's
                          features close to those of a frozen copy of the original encoder
                          (semantic_weight x mean over tokens of 1 - cosine similarity, or of the MSE)
    decoder_refinement    the decoder alone, reconstruction loss
    generator             as two_stage (core/recipes/staged.py): a separate GE of the model's size on the
                          frozen tokenizer's standardised latents

The paper's latent has 32 channels (model.latent_channels=32); every recipe here takes the model's. The
modality's patch embedder is not used (the foundation encoder reads the pixels): its learned latent slots
stay at their sincos initialisation and give the generator its grid positions, as in the other recipes.
The foundation encoder is the config's `foundation` object (images: modalities.image.foundation).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.generative_encoder import GenerativeEncoder
from core.modality import LatentLayout, Modality
from core.recipes.staged import NO_DECODER_NOISE, StagedRecipe

DISTANCES = ("cosine", "mse")


def semantic_distance(features: torch.Tensor, reference: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over tokens of the distance between features [B, N, F] and the original encoder's [B, N, F]:
    1 - cosine similarity (scale-free), or the mean squared difference."""
    if kind == "cosine":
        return (1 - F.cosine_similarity(features, reference, dim=-1)).mean()
    return (features - reference).pow(2).mean()


class AlignTokRecipe(StagedRecipe):
    STAGES = {"latent_alignment": ("adapter", "decoder"),
              "perceptual_alignment": ("foundation", "adapter", "decoder"),
              "decoder_refinement": ("decoder",),
              "generator": ("generator",)}
    LOGGED = ("rec_loss", "semantic_loss", "gen_loss")

    def __init__(self, modality: Modality, embedder: nn.Module, encoder: GenerativeEncoder, decoder: nn.Module, *,
                 foundation: nn.Module, semantic_weight: float, semantic_distance: str, **options):
        """options: the keys of StagedRecipe and LatentRecipe (configs/recipe/aligntok.yaml)."""
        if semantic_distance not in DISTANCES:
            raise ValueError(f"recipe.semantic_distance={semantic_distance!r}: choose one of {DISTANCES}")
        foundation.bind(modality)
        super().__init__(modality, generator=encoder, **NO_DECODER_NOISE, **options)
        self.embedder = embedder  # the latent layout (grid positions, slots) only; never trained
        self.foundation = foundation
        self.reference = copy.deepcopy(foundation).requires_grad_(False)  # the original encoder, never trained
        channels = encoder.latent_channels
        self.adapter = nn.Sequential(nn.Linear(foundation.feature_dim, channels), nn.LayerNorm(channels))
        self.decoder = decoder
        self.semantic_weight = semantic_weight
        self.semantic_distance = semantic_distance

    @property
    def tokenize_t_max(self) -> float:
        return 0.0  # no tokenize pass of a GE

    def clean_latents(self, batch, draws_for=None):
        layout = self.embedder(batch).layout
        z = self.adapter(self.foundation(batch))  # [B, N, C]
        return z, layout, None if draws_for is None else draws_for(layout.mask, z.dtype)

    def tokenizer_loss(self, batch, draws_for):
        layout = self.embedder(batch).layout
        features = self.foundation(batch)  # [B, N, F]
        prediction = self.decoder(self.adapter(features), layout)
        rec_loss, logs = self.modality.reconstruction_loss(prediction, batch)
        parts = {"rec_loss": rec_loss.detach(), **{k: v.detach() for k, v in logs.items()}}
        if self.stage != "perceptual_alignment":
            return rec_loss, parts
        with torch.no_grad():
            reference = self.reference(batch)
        semantic = semantic_distance(features, reference, self.semantic_distance)
        return rec_loss + self.semantic_weight * semantic, {**parts, "semantic_loss": semantic.detach()}

    def decode(self, z: torch.Tensor, layout: LatentLayout) -> Any:
        return self.decoder(z, layout)
