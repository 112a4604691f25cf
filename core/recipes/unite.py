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
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn

from core.generative_encoder import GenerativeEncoder
from core.modality import LatentLayout, Modality
from core.precision import autocast_for
from core.samplers import classifier_free_guidance, integrate, velocity_field
from core.timesteps import sample_timesteps
from core.transport import (additive_latent_noise, decoder_latent_noise, interpolate, velocity_loss,
                            x_prediction_loss)


@dataclass
class JointDraws:
    """The random numbers of one joint step for B samples, N latent tokens of C channels, K flow draws.

    tokenize_noise [B, N, C], tokenize_t [B]: pass 1's input latents and time (t ~ U(0, t_max)).
    decoder_replace [B] bool, decoder_t [B] ~ U(t_min, 1), decoder_eps [B, N, C]: the decoder's input noise.
    flow_t [K, B] (logit-normal or uniform, shifted), flow_x0 [K, B, N, C], class_drop [K, B] bool: pass 2.
    """
    tokenize_noise: torch.Tensor
    tokenize_t: torch.Tensor
    decoder_replace: torch.Tensor
    decoder_t: torch.Tensor
    decoder_eps: torch.Tensor
    flow_t: torch.Tensor
    flow_x0: torch.Tensor
    class_drop: torch.Tensor

    TOKEN_FIELDS = ("tokenize_noise", "decoder_eps", "flow_x0")  # fields with a token axis (second to last)

    @classmethod
    def from_samples(cls, rows: list["JointDraws"], mask: torch.Tensor) -> "JointDraws":
        """Stack per-sample draws (batch 1, real tokens only) into a batch; padded token slots hold zeros."""
        merged = {}
        every_slot_real = bool(mask.all())  # images: no padding to scatter around
        for field in fields(cls):
            parts = [getattr(row, field.name) for row in rows]
            batch_axis = parts[0].dim() - (3 if field.name in cls.TOKEN_FIELDS else 1)
            if field.name not in cls.TOKEN_FIELDS or every_slot_real:
                merged[field.name] = torch.cat(parts, dim=batch_axis)
                continue
            shape = list(parts[0].shape)
            shape[batch_axis], shape[-2] = len(parts), mask.shape[1]
            out = parts[0].new_zeros(shape)
            for index, part in enumerate(parts):
                out.select(batch_axis, index)[..., mask[index], :] = part.squeeze(batch_axis)
            merged[field.name] = out
        return cls(**merged)


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

    # ------------------------------------------------------------------ random numbers of a step
    def _draw(self, batch: int, tokens: int, device: torch.device, dtype: torch.dtype,
              generator: torch.Generator | None) -> JointDraws:
        k, channels = self.flow_draws_per_sample, self.encoder.latent_channels

        def uniform(*shape):
            return torch.rand(*shape, device=device, generator=generator)

        def normal(*shape):
            return torch.randn(*shape, device=device, dtype=dtype, generator=generator)
        t_min = self.decoder_noise_t_min
        return JointDraws(
            tokenize_noise=normal(batch, tokens, channels),
            tokenize_t=self.encoder.tokenize_t_max * uniform(batch),
            decoder_replace=uniform(batch) < self.decoder_noise_probability,
            decoder_t=t_min + (1 - t_min) * uniform(batch),
            decoder_eps=normal(batch, tokens, channels),
            flow_t=sample_timesteps(k * batch, self.timestep_distribution, self.timestep_shift, device, generator,
                                    self.logit_mean, self.logit_std).view(k, batch),
            flow_x0=normal(k, batch, tokens, channels),
            class_drop=uniform(k, batch) < self.denoiser.y_embedder.dropout)

    def draw(self, mask: torch.Tensor, dtype: torch.dtype, seeds: list[int] | None = None) -> JointDraws:
        """All random numbers of a step for a batch whose latent layout has `mask` [B, N].

        seeds: one per sample (core/noise_streams.py); each sample's numbers then come from its own
        generator and cover its real tokens only, so they do not depend on the batch they sit in.
        None: one batched draw from the global generator."""
        b, n = mask.shape
        if seeds is None:
            return self._draw(b, n, mask.device, dtype, None)
        if len(seeds) != b:
            raise ValueError(f"{len(seeds)} noise-stream seeds for a batch of {b} samples")
        counts = mask.sum(1).tolist()
        rows = [self._draw(1, count, mask.device, dtype, torch.Generator(mask.device).manual_seed(seed))
                for seed, count in zip(seeds, counts)]
        return JointDraws.from_samples(rows, mask)

    # ------------------------------------------------------------------ training
    def corrupt_for_decoder(self, z: torch.Tensor, draws: JointDraws) -> torch.Tensor:
        if self.decoder_noise == "interpolate":
            return decoder_latent_noise(z, draws.decoder_replace, draws.decoder_t, draws.decoder_eps)
        if self.decoder_noise == "additive":
            return additive_latent_noise(z, self.decoder_noise_sigma, draws.decoder_eps)
        return z

    def generative_loss(self, target: torch.Tensor, labels: torch.Tensor | None, layout: LatentLayout,
                        draws: JointDraws) -> torch.Tensor:
        """K draws of (t, x0) per clean latent, in chunks of `flow_chunk_size` draws per forward."""
        b = target.shape[0]
        total = target.new_zeros(())
        for first in range(0, self.flow_draws_per_sample, self.flow_chunk_size):
            k = min(self.flow_chunk_size, self.flow_draws_per_sample - first)
            x1 = target.repeat(k, 1, 1)  # [k B, N, C], draw-major like the official code
            chunk_layout = layout.repeat(k)
            chunk_labels = None if labels is None else labels.repeat(k)
            t = draws.flow_t[first:first + k].reshape(k * b)
            x0 = draws.flow_x0[first:first + k].reshape(x1.shape)
            drop = draws.class_drop[first:first + k].reshape(k * b)
            x1_hat = self.denoiser.denoise(interpolate(x0, x1, t), t, chunk_labels, chunk_layout, drop)
            if self.gen_loss_form == "velocity":
                per_sample = velocity_loss(x1_hat, x0, x1, t, self.min_remaining_time, chunk_layout.mask)
            else:
                per_sample = x_prediction_loss(x1_hat, x1, chunk_layout.mask)
            total = total + per_sample.view(k, b).mean(1).sum()  # sum over draws of each draw's batch mean
        if self.gen_loss_over_draws == "mean":
            total = total / self.flow_draws_per_sample
        return total

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
        gen_loss = self.generative_loss(target, self.modality.batch_labels(batch), layout, draws)
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
                 shift: float | None, guidance_scale: float, guidance_interval: tuple[float, float],
                 rtol: float, atol: float, device: torch.device,
                 precision: str = "fp32") -> tuple[Any, LatentLayout, torch.Tensor]:
        """Draw x0 ~ N(0, I), integrate the denoiser's flow to t = 1, decode.  Returns (prediction, layout, z).

        shift: time shift of the sampling grid; None = the training shift (recipe.timestep_shift).
        precision: autocast of the denoiser's evaluations (core/precision.py); the ODE state stays float32
        (the GE's final LayerNorm returns float32 under autocast) and decoding runs in float32."""
        if shift is None:
            shift = self.timestep_shift
        layout = self.embedder.generation_layout(num_samples, device, None)
        x0 = torch.randn(num_samples, layout.mask.shape[1], self.denoiser.latent_channels, device=device)
        if labels is None:
            labels = self.denoiser.y_embedder.null_labels(num_samples, device)
        null = self.denoiser.y_embedder.null_labels(num_samples, device)

        # conditional and unconditional evaluations share one batch of 2B: its layout is built once, not per step
        denoise_layout = layout if guidance_scale == 1.0 else layout.repeat(2)

        def denoise(x, t, y):
            with autocast_for(device, precision):
                return self.denoiser.denoise(x, t, y, denoise_layout).float()
        x_prediction = classifier_free_guidance(denoise, labels, null, guidance_scale, tuple(guidance_interval))
        z = integrate(velocity_field(x_prediction, self.min_remaining_time), x0, solver, num_steps, shift, rtol, atol)
        return self.decoder(z, layout), layout, z
