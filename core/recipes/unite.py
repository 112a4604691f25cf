"""UNITE: single-stage joint training of tokenizer and latent generator through one Generative Encoder.

One step:
    z      = GE.tokenize(embed(x))                       pass 1 (fully observed sample)
    L_rec  = modality loss(decoder(noised z), x)
    x1     = sg(z), repeated K times with independent (t, x0)
    x1_hat = GE.denoise(t x1 + (1 - t) x0, t, class)     pass 2 (same weights unless share_weights=false)
    L_gen  = sum over the K draws of the velocity MSE    (official code; 'mean' and the x-loss are switches)
    loss   = L_rec + gen_loss_weight * L_gen

Every random number of a step is drawn up front into `JointDraws` (one row per sample), either from
the global generator or from per-sample streams (core/noise_streams.py), so a step can be replayed.
The draws, the generator loss and the sampler are shared with the staged recipes (core/recipes/base.py).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from core.generative_encoder import GenerativeEncoder
from core.modality import LatentLayout, Modality
from core.recipes.base import JointDraws, LatentRecipe

__all__ = ["JointDraws", "LATENT_WHITENINGS", "UniteRecipe"]

LATENT_WHITENINGS = ("none", "running")


class UniteRecipe(LatentRecipe):
    STAGES = {"joint": ("embedder", "encoder", "decoder", "separate_denoiser")}

    def __init__(self, modality: Modality, embedder: nn.Module, encoder: GenerativeEncoder,
                 decoder: nn.Module, *, share_weights: bool, gen_loss_weight: float, detach_target: bool,
                 latent_whitening: str, latent_whitening_momentum: float, **flow):
        """flow: the LatentRecipe keys of configs/recipe/parts/flow.yaml and decoder_noise.yaml.

        latent_whitening: 'running' = the generator learns and samples (z - mean) / std per channel, with
        running (EMA, `latent_whitening_momentum` per step) statistics of the clean latents' real tokens kept
        as buffers in the checkpoint (UAE-3D whitens its latents with stored statistics); 'none' = z itself."""
        super().__init__(modality, stage_fractions={"joint": 1.0}, **flow)
        if latent_whitening not in LATENT_WHITENINGS:
            raise ValueError(f"recipe.latent_whitening={latent_whitening!r}: choose one of {LATENT_WHITENINGS}")
        if not 0.0 < latent_whitening_momentum <= 1.0:
            raise ValueError(f"recipe.latent_whitening_momentum={latent_whitening_momentum}: must lie in (0, 1]")
        self.latent_whitening = latent_whitening
        self.latent_whitening_momentum = latent_whitening_momentum
        if latent_whitening == "running":  # only then: checkpoints without whitening keep their keys
            self.register_buffer("latent_mean", torch.zeros(encoder.latent_channels))
            self.register_buffer("latent_std", torch.ones(encoder.latent_channels))
            self.register_buffer("latent_statistics_steps", torch.zeros((), dtype=torch.long))
        self.embedder = embedder
        self.encoder = encoder
        self.decoder = decoder
        # UNITE shares one GE between the passes; the paper's ablation gives the denoiser its own weights,
        # initialised independently.
        self.separate_denoiser = None
        if not share_weights:
            self.separate_denoiser = copy.deepcopy(encoder)
            self.separate_denoiser.initialize_weights()
        self.attach_denoiser_inputs()
        self.gen_loss_weight = gen_loss_weight
        self.detach_target = detach_target

    @property
    def denoiser(self) -> GenerativeEncoder:
        return self.encoder if self.separate_denoiser is None else self.separate_denoiser

    @property
    def tokenize_t_max(self) -> float:
        return self.encoder.tokenize_t_max

    # ------------------------------------------------------------------ training
    def forward(self, batch: Any, seeds: list[int] | None = None,
                draws: JointDraws | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its parts for one batch.

        seeds: per-sample noise streams (the trainer's); draws: every random number given explicitly
        (replaying a step); neither: drawn from the global generator."""
        observation = self.embedder(batch)
        layout = observation.layout
        if draws is None:
            draws = self.draw(layout.mask, observation.tokens.dtype, seeds)
        z = self.encoder.tokenize(observation, draws.tokenize_noise, draws.tokenize_t)  # [B, N, C]
        prediction = self.decoder(self.corrupt_for_decoder(z, draws), layout)
        rec_loss, logs = self.modality.reconstruction_loss(prediction, batch)
        target = z.detach() if self.detach_target else z
        if self.latent_whitening == "running":
            if self.training:
                self.update_latent_statistics(z.detach(), layout.mask)
            target = self.whiten(target)
        gen_loss = self.generative_loss(target, self.modality.batch_labels(batch), layout, draws)
        loss = rec_loss + self.gen_loss_weight * gen_loss
        return loss, {"loss": loss.detach(), "rec_loss": rec_loss.detach(), "gen_loss": gen_loss.detach(),
                      **{k: v.detach() for k, v in logs.items()}}

    @torch.no_grad()
    def update_latent_statistics(self, z: torch.Tensor, mask: torch.Tensor) -> None:
        """EMA of the per-channel mean and std of the real tokens; the first step takes the batch's own."""
        real = z[mask].float()  # [tokens, C]
        mean, std = real.mean(0), real.std(0, unbiased=False).clamp_min(1e-6)
        momentum = 1.0 if int(self.latent_statistics_steps) == 0 else self.latent_whitening_momentum
        self.latent_mean.lerp_(mean, momentum)
        self.latent_std.lerp_(std, momentum)
        self.latent_statistics_steps += 1

    def whiten(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean.to(z.dtype)) / self.latent_std.to(z.dtype)

    def unwhiten(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std.to(z.dtype) + self.latent_mean.to(z.dtype)

    # ------------------------------------------------------------------ inference
    def latent_from_generator(self, z: torch.Tensor) -> torch.Tensor:
        """With latent_whitening=running the denoiser samples whitened latents: unwhitened here."""
        return self.unwhiten(z) if self.latent_whitening == "running" else z

    def encode(self, batch: Any) -> tuple[torch.Tensor, LatentLayout]:
        observation = self.embedder(batch)
        return self.encoder.tokenize(observation), observation.layout

    def decode(self, z: torch.Tensor, layout: LatentLayout) -> Any:
        return self.decoder(z, layout)
