"""UNITE: single-stage joint training of tokenizer and latent generator through one Generative Encoder.

One step:
    z      = GE.tokenize(embed(x))                       pass 1 (fully observed sample)
    L_rec  = modality loss(decoder(noised z), x)
    x1     = sg(z), repeated K times with independent (t, x0)
    x1_hat = GE.denoise(t x1 + (1 - t) x0, t, class)     pass 2 (same weights unless share_weights=false)
    L_gen  = sum over the K draws of the velocity MSE    (official code; 'mean' and the x-loss are switches)
    loss   = L_rec + gen_loss_weight * L_gen
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from core.generative_encoder import GenerativeEncoder
from core.modality import LatentLayout, Modality
from core.samplers import classifier_free_guidance, integrate, velocity_field
from core.timesteps import sample_timesteps
from core.transport import (additive_latent_noise, decoder_latent_noise, interpolate, velocity_loss,
                            x_prediction_loss)


class UniteRecipe(nn.Module):
    def __init__(self, modality: Modality, embedder: nn.Module, encoder: GenerativeEncoder,
                 decoder: nn.Module, *, share_weights: bool, flow_draws_per_sample: int,
                 flow_chunk_size: int, gen_loss_weight: float, gen_loss_form: str, gen_loss_over_draws: str,
                 detach_target: bool, timestep_distribution: str, timestep_shift: float,
                 logit_mean: float, logit_std: float, min_remaining_time: float,
                 decoder_noise: str, decoder_noise_probability: float, decoder_noise_t_min: float,
                 decoder_noise_sigma: float):
        super().__init__()
        checks = {
            "gen_loss_form": (gen_loss_form, ("velocity", "x")),
            "gen_loss_over_draws": (gen_loss_over_draws, ("sum", "mean")),
            "decoder_noise": (decoder_noise, ("interpolate", "additive", "none")),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"recipe.{key}={value!r}: choose one of {allowed}")
        if flow_draws_per_sample < 1 or flow_chunk_size < 1:
            raise ValueError("recipe.flow_draws_per_sample and recipe.flow_chunk_size must be >= 1")
        self.modality = modality
        self.embedder = embedder
        self.encoder = encoder
        self.decoder = decoder
        # UNITE shares one GE between the passes; the paper's ablation gives the denoiser its own weights,
        # initialised independently.
        self.separate_denoiser = None
        if not share_weights:
            self.separate_denoiser = copy.deepcopy(encoder)
            self.separate_denoiser.initialize_weights()
        self.flow_draws_per_sample = flow_draws_per_sample
        self.flow_chunk_size = flow_chunk_size
        self.gen_loss_weight = gen_loss_weight
        self.gen_loss_form = gen_loss_form
        self.gen_loss_over_draws = gen_loss_over_draws
        self.detach_target = detach_target
        self.timestep_distribution = timestep_distribution
        self.timestep_shift = timestep_shift
        self.logit_mean, self.logit_std = logit_mean, logit_std
        self.min_remaining_time = min_remaining_time
        self.decoder_noise = decoder_noise
        self.decoder_noise_probability = decoder_noise_probability
        self.decoder_noise_t_min = decoder_noise_t_min
        self.decoder_noise_sigma = decoder_noise_sigma

    @property
    def denoiser(self) -> GenerativeEncoder:
        return self.encoder if self.separate_denoiser is None else self.separate_denoiser

    # ------------------------------------------------------------------ training
    def corrupt_for_decoder(self, z: torch.Tensor) -> torch.Tensor:
        if self.decoder_noise == "interpolate":
            return decoder_latent_noise(z, self.decoder_noise_probability, self.decoder_noise_t_min)
        if self.decoder_noise == "additive":
            return additive_latent_noise(z, self.decoder_noise_sigma)
        return z

    def generative_loss(self, target: torch.Tensor, labels: torch.Tensor | None,
                        layout: LatentLayout) -> torch.Tensor:
        """K draws of (t, x0) per clean latent, in chunks of `flow_chunk_size` draws per forward."""
        b = target.shape[0]
        total = target.new_zeros(())
        remaining = self.flow_draws_per_sample
        while remaining > 0:
            k = min(self.flow_chunk_size, remaining)
            remaining -= k
            x1 = target.repeat(k, 1, 1)  # [k B, N, C]
            chunk_layout = layout.repeat(k)
            chunk_labels = None if labels is None else labels.repeat(k)
            t = sample_timesteps(k * b, self.timestep_distribution, self.timestep_shift, x1.device,
                                 logit_mean=self.logit_mean, logit_std=self.logit_std)
            x0 = torch.randn_like(x1)
            x1_hat = self.denoiser.denoise(interpolate(x0, x1, t), t, chunk_labels, chunk_layout)
            if self.gen_loss_form == "velocity":
                per_sample = velocity_loss(x1_hat, x0, x1, t, self.min_remaining_time, chunk_layout.mask)
            else:
                per_sample = x_prediction_loss(x1_hat, x1, chunk_layout.mask)
            total = total + per_sample.view(k, b).mean(1).sum()  # sum over draws of each draw's batch mean
        if self.gen_loss_over_draws == "mean":
            total = total / self.flow_draws_per_sample
        return total

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its parts for one batch."""
        observation = self.embedder(batch)
        z = self.encoder.tokenize(observation)  # [B, N, C]
        prediction = self.decoder(self.corrupt_for_decoder(z), observation.layout)
        rec_loss, logs = self.modality.reconstruction_loss(prediction, batch)
        target = z.detach() if self.detach_target else z
        gen_loss = self.generative_loss(target, self.modality.batch_labels(batch), observation.layout)
        loss = rec_loss + self.gen_loss_weight * gen_loss
        return loss, {"loss": loss.detach(), "rec_loss": rec_loss.detach(), "gen_loss": gen_loss.detach(),
                      **{k: v.detach() for k, v in logs.items()}}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def reconstruct(self, batch: Any) -> tuple[Any, torch.Tensor]:
        observation = self.embedder(batch)
        z = self.encoder.tokenize(observation)
        return self.decoder(z, observation.layout), z

    @torch.no_grad()
    def generate(self, num_samples: int, labels: torch.Tensor | None, *, solver: str, num_steps: int,
                 shift: float, guidance_scale: float, guidance_interval: tuple[float, float],
                 rtol: float, atol: float, device: torch.device) -> tuple[Any, LatentLayout, torch.Tensor]:
        """Draw x0 ~ N(0, I), integrate the denoiser's flow to t = 1, decode.  Returns (prediction, layout, z)."""
        layout = self.embedder.generation_layout(num_samples, device, None)
        x0 = torch.randn(num_samples, layout.mask.shape[1], self.denoiser.latent_channels, device=device)
        if labels is None:
            labels = self.denoiser.y_embedder.null_labels(num_samples, device)
        null = self.denoiser.y_embedder.null_labels(num_samples, device)

        def denoise(x, t, y):
            return self.denoiser.denoise(x, t, y, layout.repeat(x.shape[0] // num_samples))
        x_prediction = classifier_free_guidance(denoise, labels, null, guidance_scale, tuple(guidance_interval))
        z = integrate(velocity_field(x_prediction, self.min_remaining_time), x0, solver, num_steps, shift, rtol, atol)
        return self.decoder(z, layout), layout, z
