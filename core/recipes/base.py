"""What every recipe shares: the random numbers of a step, the flow-matching generator loss and sampler,
the decoder-input noise, and training in named stages.

A recipe is an nn.Module with
    forward(batch, seeds) -> (loss, parts)      one optimiser step's loss in the current stage
    encode(batch) -> (z [B, N, C], layout)      the clean latents of a sample (no corruption)
    reconstruct(batch), generate(...)           what the evaluation calls
    STAGES                                      stage name -> the child modules it trains, in order
and is trained stage after stage by core/train.py (a single stage for UNITE). Frozen children are kept
in eval mode and get no gradient; see `set_stage`.

Every random number of a step is drawn up front into a draws dataclass (one row per sample), either from
the global generator or from per-sample streams (core/noise_streams.py), so a step can be replayed and
one process, N processes and gradient accumulation give the same step.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn

from core.generative_encoder import GenerativeEncoder
from core.modality import LatentLayout, Modality
from core.precision import autocast_for, widened_dtype
from core.samplers import classifier_free_guidance, integrate, velocity_field
from core.timesteps import TIMESTEP_DISTRIBUTIONS, sample_timesteps
from core.transport import (LOSS_WEIGHTINGS, X_PREDICTION_SKIPS, additive_latent_noise, broadcast_time,
                            decoder_latent_noise, edm_skip_coefficients, interpolate, truncated_snr_weight,
                            velocity_loss, x_prediction_loss)


@dataclass
class JointDraws:
    """The random numbers of one step for B samples, N latent tokens of C channels, K flow draws.

    tokenize_noise [B, N, C], tokenize_t [B]: pass 1's input latents and time (t ~ U(0, t_max)).
    decoder_replace [B] bool, decoder_t [B] ~ U(t_min, 1), decoder_eps [B, N, C]: the decoder's input noise.
    flow_t [K, B] (logit-normal, uniform or beta, shifted), flow_x0 [K, B, N, C], class_drop [K, B] bool: pass 2.
    self_condition [K, B] bool: which draws see the network's own first prediction (recipe.self_conditioning > 0;
    None otherwise, so that runs without it draw exactly the numbers they drew before it existed).
    """
    tokenize_noise: torch.Tensor
    tokenize_t: torch.Tensor
    decoder_replace: torch.Tensor
    decoder_t: torch.Tensor
    decoder_eps: torch.Tensor
    flow_t: torch.Tensor
    flow_x0: torch.Tensor
    class_drop: torch.Tensor
    self_condition: torch.Tensor | None

    TOKEN_FIELDS = ("tokenize_noise", "decoder_eps", "flow_x0")  # fields with a token axis (second to last)

    @classmethod
    def from_samples(cls, rows: list["JointDraws"], mask: torch.Tensor) -> "JointDraws":
        """Stack per-sample draws (batch 1, real tokens only) into a batch; padded token slots hold zeros."""
        merged = {}
        every_slot_real = bool(mask.all())  # images: no padding to scatter around
        for field in fields(cls):
            parts = [getattr(row, field.name) for row in rows]
            if parts[0] is None:
                merged[field.name] = None
                continue
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


class LatentRecipe(nn.Module):
    """Base of every recipe: subclasses build their networks, set STAGES and define `denoiser`,
    `tokenize_t_max`, `forward`, `encode` and `decode`."""

    STAGES: dict[str, tuple[str, ...]] = {}

    def __init__(self, modality: Modality, *, flow_draws_per_sample: int, flow_chunk_size: int, gen_loss_form: str,
                 gen_loss_over_draws: str, gen_loss_weighting: str, timestep_distribution: str, timestep_shift: float,
                 logit_mean: float, logit_std: float, beta_alpha: float, min_remaining_time: float,
                 self_conditioning: float, x_prediction_skip: str, decoder_noise: str, decoder_noise_probability: float,
                 decoder_noise_t_min: float, decoder_noise_sigma: float, stage_fractions: dict[str, float]):
        super().__init__()
        checks = {
            "gen_loss_form": (gen_loss_form, ("velocity", "x")),
            "gen_loss_over_draws": (gen_loss_over_draws, ("sum", "mean")),
            "gen_loss_weighting": (gen_loss_weighting, LOSS_WEIGHTINGS),
            "timestep_distribution": (timestep_distribution, TIMESTEP_DISTRIBUTIONS),
            "decoder_noise": (decoder_noise, ("interpolate", "additive", "none")),
            "x_prediction_skip": (x_prediction_skip, X_PREDICTION_SKIPS),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"recipe.{key}={value!r}: choose one of {allowed}")
        if not 0.0 <= self_conditioning < 1.0:
            raise ValueError(f"recipe.self_conditioning={self_conditioning}: a probability in [0, 1) (ADiT: 0.5)")
        if flow_draws_per_sample < 1 or flow_chunk_size < 1:
            raise ValueError("recipe.flow_draws_per_sample and recipe.flow_chunk_size must be >= 1")
        fractions = dict(stage_fractions)
        if list(fractions) != list(self.STAGES) or any(f <= 0 for f in fractions.values()) \
                or abs(sum(fractions.values()) - 1) > 1e-6:
            raise ValueError(f"recipe.stage_fractions={fractions}: give every stage of {list(self.STAGES)}, in this "
                             "order, a positive share of trainer.max_steps; the shares must sum to 1")
        self.modality = modality
        self.flow_draws_per_sample = flow_draws_per_sample
        self.flow_chunk_size = flow_chunk_size
        self.gen_loss_form = gen_loss_form
        self.gen_loss_over_draws = gen_loss_over_draws
        self.gen_loss_weighting = gen_loss_weighting
        self.timestep_distribution = timestep_distribution
        self.timestep_shift = timestep_shift
        self.logit_mean, self.logit_std = logit_mean, logit_std
        self.beta_alpha = beta_alpha
        self.min_remaining_time = min_remaining_time
        self.self_conditioning = self_conditioning
        self.x_prediction_skip = x_prediction_skip
        self.decoder_noise = decoder_noise
        self.decoder_noise_probability = decoder_noise_probability
        self.decoder_noise_t_min = decoder_noise_t_min
        self.decoder_noise_sigma = decoder_noise_sigma
        self.stage_fractions = fractions
        self.stage: str | None = None  # set by set_stage (training); None = every child follows train()/eval()
        self._own_requires_grad: dict[str, bool] | None = None

    @property
    def denoiser(self) -> GenerativeEncoder:
        raise NotImplementedError

    def attach_denoiser_inputs(self) -> None:
        """Called by a subclass once its denoiser exists: the inputs the flow options need (self-conditioning)."""
        if self.self_conditioning > 0:
            self.denoiser.add_self_conditioning()

    @property
    def tokenize_t_max(self) -> float:
        raise NotImplementedError

    # ------------------------------------------------------------------ stages
    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.STAGES)

    def stage_steps(self, total_steps: int) -> list[tuple[str, int]]:
        """Each stage's optimiser steps: its share of `total_steps` (the last stage takes the remainder), so
        every recipe trains for the same steps x batch."""
        names = self.stages
        steps = [round(self.stage_fractions[name] * total_steps) for name in names[:-1]]
        return list(zip(names, steps + [total_steps - sum(steps)]))

    def set_stage(self, name: str) -> None:
        """Train the children that STAGES names for this stage; freeze the rest (requires_grad False, eval
        mode). A parameter frozen by its own module (e.g. fixed slot embeddings) stays frozen."""
        if name not in self.STAGES:
            raise ValueError(f"stage {name!r}: {type(self).__name__} has stages {list(self.STAGES)}")
        if self._own_requires_grad is None:
            self._own_requires_grad = {n: p.requires_grad for n, p in self.named_parameters()}
        trained = self.STAGES[name]
        for child_name, child in self.named_children():
            for n, p in child.named_parameters(prefix=child_name):
                p.requires_grad_(self._own_requires_grad[n] and child_name in trained)
        self.stage = name
        self.train(self.training)

    def frozen_children(self) -> list[str]:
        if self.stage is None:
            return []
        return [n for n, _ in self.named_children() if n not in self.STAGES[self.stage]]

    def train(self, mode: bool = True) -> "LatentRecipe":
        super().train(mode)
        for name in self.frozen_children():  # frozen parts behave as at inference (no input corruption)
            getattr(self, name).eval()
        return self

    def prepare_stage(self, name: str, batches) -> None:
        """Called once when a stage starts (not when it resumes), with an iterable of training batches in a
        fixed order; staged recipes measure their latent statistics here."""

    def trained_parameter_count(self) -> int:
        """Parameters that some stage trains (frozen reference copies and unused inputs left out)."""
        trained = {child for children in self.STAGES.values() for child in children}
        return sum(p.numel() for name, child in self.named_children() if name in trained
                   for p in child.parameters())

    # ------------------------------------------------------------------ random numbers of a step
    def _draw(self, batch: int, tokens: int, device: torch.device, dtype: torch.dtype,
              generator: torch.Generator | None) -> JointDraws:
        k, channels = self.flow_draws_per_sample, self.denoiser.latent_channels

        def uniform(*shape):
            return torch.rand(*shape, device=device, generator=generator)

        def normal(*shape):
            return torch.randn(*shape, device=device, dtype=dtype, generator=generator)
        t_min = self.decoder_noise_t_min
        return JointDraws(
            tokenize_noise=normal(batch, tokens, channels),
            tokenize_t=self.tokenize_t_max * uniform(batch),
            decoder_replace=uniform(batch) < self.decoder_noise_probability,
            decoder_t=t_min + (1 - t_min) * uniform(batch),
            decoder_eps=normal(batch, tokens, channels),
            flow_t=sample_timesteps(k * batch, self.timestep_distribution, self.timestep_shift, device, generator,
                                    self.logit_mean, self.logit_std, self.beta_alpha).view(k, batch),
            flow_x0=normal(k, batch, tokens, channels),
            class_drop=uniform(k, batch) < self.denoiser.y_embedder.dropout,
            self_condition=uniform(k, batch) < self.self_conditioning if self.self_conditioning > 0 else None)

    def draw(self, mask: torch.Tensor, dtype: torch.dtype, seeds: list[int] | None = None) -> JointDraws:
        """All random numbers of a step for a batch whose latent layout has `mask` [B, N].

        seeds: one per sample (core/noise_streams.py); each sample's numbers then come from its own
        generator and cover its real tokens only, so they do not depend on the batch they sit in.
        None: one batched draw from the global generator."""
        b, n = mask.shape
        dtype = widened_dtype(dtype)  # noise, times and targets are float32 under autocast too (core/precision.py)
        if seeds is None:
            return self._draw(b, n, mask.device, dtype, None)
        if len(seeds) != b:
            raise ValueError(f"{len(seeds)} noise-stream seeds for a batch of {b} samples")
        counts = mask.sum(1).tolist()
        rows = [self._draw(1, count, mask.device, dtype, torch.Generator(mask.device).manual_seed(seed))
                for seed, count in zip(seeds, counts)]
        return type(rows[0]).from_samples(rows, mask)

    # ------------------------------------------------------------------ the generator's loss and sampler
    def predict_clean(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, layout: LatentLayout,
                      drop: torch.Tensor | None, self_condition: torch.Tensor | None) -> torch.Tensor:
        """The clean-latent prediction x1_hat: the denoise pass's output, or with recipe.x_prediction_skip=edm
        c_skip(t) x_t + c_out(t) times it (core/transport.edm_skip_coefficients), which near the data end leans
        on x_t instead of asking the network for a precision it does not reach there."""
        output = self.denoiser.denoise(x_t, t, labels, layout, drop, self_condition)
        if self.x_prediction_skip == "none":
            return output
        c_skip, c_out = edm_skip_coefficients(broadcast_time(t, x_t).to(output.dtype))
        return c_skip * x_t.to(output.dtype) + c_out * output

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
            x_t = interpolate(x0, x1, t)
            own_prediction = None
            if draws.self_condition is not None:  # ADiT: a first prediction without gradient, fed back in
                chosen = draws.self_condition[first:first + k].reshape(k * b)
                with torch.no_grad():
                    first_prediction = self.predict_clean(x_t, t, chunk_labels, chunk_layout, drop,
                                                          torch.zeros_like(x_t))
                own_prediction = torch.where(chosen.view(-1, 1, 1), first_prediction.to(x_t.dtype), 0.0)
            x1_hat = self.predict_clean(x_t, t, chunk_labels, chunk_layout, drop, own_prediction)
            if self.gen_loss_form == "velocity":
                per_sample = velocity_loss(x1_hat, x0, x1, t, self.min_remaining_time, chunk_layout.mask)
            else:
                per_sample = x_prediction_loss(x1_hat, x1, chunk_layout.mask)
            if self.gen_loss_weighting == "truncated_snr":
                per_sample = per_sample * truncated_snr_weight(t)
            total = total + per_sample.view(k, b).mean(1).sum()  # sum over draws of each draw's batch mean
        if self.gen_loss_over_draws == "mean":
            total = total / self.flow_draws_per_sample
        return total

    @torch.no_grad()
    def sample_latents(self, num_samples: int, labels: torch.Tensor | None, *, solver: str, num_steps: int,
                       shift: float | None, guidance_scale: float, guidance_interval: tuple[float, float],
                       rtol: float, atol: float, device: torch.device,
                       precision: str = "fp32") -> tuple[torch.Tensor, LatentLayout]:
        """Draw x0 ~ N(0, I) on a generation layout and integrate the denoiser's flow to t = 1.

        shift: time shift of the sampling grid; None = the training shift (recipe.timestep_shift).
        precision: autocast of the denoiser's evaluations (core/precision.py); the ODE state stays float32
        (the GE's latent head and LayerNorm run in float32 under autocast)."""
        if shift is None:
            shift = self.timestep_shift
        layout = self.embedder.generation_layout(num_samples, device, None)
        x0 = torch.randn(num_samples, layout.mask.shape[1], self.denoiser.latent_channels, device=device)
        if labels is None:
            labels = self.denoiser.y_embedder.null_labels(num_samples, device)
        null = self.denoiser.y_embedder.null_labels(num_samples, device)

        # conditional and unconditional evaluations share one batch of 2B: its layout is built once, not per step
        denoise_layout = layout if guidance_scale == 1.0 else layout.repeat(2)

        previous = {"prediction": None}  # self-conditioning: the last evaluation's prediction (zeros at first)

        def denoise(x, t, y):
            own = None
            if self.self_conditioning > 0:
                own = previous["prediction"] if previous["prediction"] is not None else torch.zeros_like(x)
            with autocast_for(device, precision):
                prediction = self.predict_clean(x, t, y, denoise_layout, None, own).float()
            previous["prediction"] = prediction
            return prediction
        x_prediction = classifier_free_guidance(denoise, labels, null, guidance_scale, tuple(guidance_interval))
        z = integrate(velocity_field(x_prediction, self.min_remaining_time), x0, solver, num_steps, shift, rtol, atol,
                      endpoint_correction=False)  # the x-prediction's velocity at t = 1 is the clamp's (samplers.py)
        return z, layout

    # ------------------------------------------------------------------ inference
    def encode(self, batch: Any) -> tuple[torch.Tensor, LatentLayout]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor, layout: LatentLayout) -> Any:
        raise NotImplementedError

    @torch.no_grad()
    def reconstruct(self, batch: Any) -> tuple[Any, torch.Tensor]:
        z, layout = self.encode(batch)
        return self.decode(z, layout), z

    @torch.no_grad()
    def generate(self, num_samples: int, labels: torch.Tensor | None, **sampler) -> tuple[Any, LatentLayout,
                                                                                          torch.Tensor]:
        """Sample latents (see sample_latents for the keyword arguments), decode in float32.
        Returns (prediction, layout, z)."""
        z, layout = self.sample_latents(num_samples, labels, **sampler)
        z = self.latent_from_generator(z)
        return self.decode(z, layout), layout, z

    def latent_from_generator(self, z: torch.Tensor) -> torch.Tensor:
        """A sampled latent in the space the generator learns -> the decoder's latent (the identity here;
        recipes that standardise or whiten the generator's target undo it)."""
        return z
