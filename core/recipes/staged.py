"""Staged recipes: a tokenizer trained first, then frozen, then a separate generator on its latents.

    two_stage   stage `tokenizer`: the same embedder, GE (tokenize pass only) and decoder as UNITE, trained
                as a plain autoencoder (reconstruction loss; the latent is the GE's LayerNorm output, no KL)
    ldetok      the same, with l-DeTok's corruption in the tokenizer stage (Yang et al. 2025): a random
                share of the tokens hidden from the encoder (the decoder sees its mask token there) and
                interpolative noise on the latents, z' = (1 - tau) z + tau gamma eps; none at inference
    then, both  stage `generator`: the tokenizer frozen (its EMA weights, core/stages.py), latents recomputed
                each step and standardised per channel by training-set statistics measured when the stage
                starts, and a separate GE of the same size (used as a DiT/SiT) trained with the same
                transport, timestep sampling, flow loss and sampler as UNITE's pass 2.

AlignTok (core/recipes/aligntok.py) shares the generator stage through StagedRecipe.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn

from core.generative_encoder import GenerativeEncoder, decoder_trunk
from core.modality import LatentLayout, Modality, Observation
from core.recipes.base import JointDraws, LatentRecipe
from core.transport import interpolative_latent_noise, mask_ratio, random_token_mask

STANDARDIZATIONS = ("channel", "none")
# recipes whose tokenizer has its own corruption (l-DeTok) or none (AlignTok) take no decoder-input noise
NO_DECODER_NOISE = {"decoder_noise": "none", "decoder_noise_probability": 0.0, "decoder_noise_t_min": 1.0,
                    "decoder_noise_sigma": 0.0}


class StagedRecipe(LatentRecipe):
    """Base of the staged recipes: the generator GE, the latent statistics, the generator stage's loss.

    Subclasses set STAGES (the last one is `generator`), LOGGED, and define tokenizer_loss and clean_latents."""

    LOGGED: tuple[str, ...] = ("rec_loss", "gen_loss")  # loss parts every stage reports (NaN where not computed)

    def __init__(self, modality: Modality, *, generator: GenerativeEncoder, latent_standardization: str,
                 standardization_samples: int, **common):
        super().__init__(modality, **common)
        if self.stages[-1] != "generator":
            raise ValueError(f"{type(self).__name__}.STAGES must end with the generator stage")
        if latent_standardization not in STANDARDIZATIONS:
            raise ValueError(f"recipe.latent_standardization={latent_standardization!r}: choose one of "
                             f"{STANDARDIZATIONS}")
        if standardization_samples < 1:
            raise ValueError(f"recipe.standardization_samples must be >= 1, got {standardization_samples}")
        self.generator = generator
        self.attach_denoiser_inputs()
        self.latent_standardization = latent_standardization
        self.standardization_samples = standardization_samples
        channels = generator.latent_channels
        # the generator works on (z - mean) / std; measured when the generator stage starts, saved in checkpoints
        self.register_buffer("latent_mean", torch.zeros(channels))
        self.register_buffer("latent_std", torch.ones(channels))

    @property
    def denoiser(self) -> GenerativeEncoder:
        return self.generator

    # ------------------------------------------------------------------ subclasses
    def tokenizer_loss(self, batch: Any, draws_for) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def clean_latents(self, batch: Any, draws_for=None) -> tuple[torch.Tensor, LatentLayout, JointDraws | None]:
        """(z [B, N, C] on the tokenizer's scale, the latent layout, the step's draws or None when
        draws_for is None: inference)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def forward(self, batch: Any, seeds: list[int] | None = None,
                draws: JointDraws | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The current stage's loss and its parts (every stage logs the same keys: NaN where not computed).

        seeds: per-sample noise streams (the trainer's); draws: every random number given explicitly."""
        if self.stage is None:
            raise RuntimeError(f"{type(self).__name__} trains in stages {list(self.STAGES)}: call set_stage first")

        def draws_for(mask: torch.Tensor, dtype: torch.dtype) -> JointDraws:
            return draws if draws is not None else self.draw(mask, dtype, seeds)
        if self.stage == "generator":
            loss, parts = self.generator_loss(batch, draws_for)
        else:
            loss, parts = self.tokenizer_loss(batch, draws_for)
        nan = loss.new_full((), math.nan).detach()
        return loss, {"loss": loss.detach(), **{key: nan for key in self.LOGGED}, **parts}

    def generator_loss(self, batch: Any, draws_for) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():  # the tokenizer is frozen
            z, layout, draws = self.clean_latents(batch, draws_for)
        target = self.standardize(z)
        gen_loss = self.generative_loss(target, self.modality.batch_labels(batch), layout, draws)
        return gen_loss, {"gen_loss": gen_loss.detach()}

    def standardize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std

    def destandardize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std + self.latent_mean

    @torch.no_grad()
    def prepare_stage(self, name: str, batches) -> None:
        """Generator stage: per-channel mean and std of the frozen tokenizer's latents over the first
        `standardization_samples` training samples (real tokens only), as l-DeTok standardises its latents."""
        if name != "generator" or self.latent_standardization == "none":
            return
        total, total_sq, count, samples = 0.0, 0.0, 0, 0
        for batch in batches:
            z, layout, _ = self.clean_latents(batch)
            real = z[layout.mask].double()  # [tokens, C]
            total, total_sq, count = total + real.sum(0), total_sq + (real ** 2).sum(0), count + real.shape[0]
            samples += z.shape[0]
            if samples >= self.standardization_samples:
                break
        mean = total / count
        std = (total_sq / count - mean ** 2).clamp_min(1e-12).sqrt()
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)

    # ------------------------------------------------------------------ inference
    def encode(self, batch: Any) -> tuple[torch.Tensor, LatentLayout]:
        z, layout, _ = self.clean_latents(batch)
        return z, layout

    def latent_from_generator(self, z: torch.Tensor) -> torch.Tensor:
        """The generator samples standardised latents: back to the tokenizer's scale."""
        return self.destandardize(z)


class TwoStageRecipe(StagedRecipe):
    """The standard baseline: the UNITE networks trained as an autoencoder, then a separate generator."""

    STAGES = {"tokenizer": ("embedder", "encoder", "decoder"), "generator": ("generator",)}

    def __init__(self, modality: Modality, embedder: nn.Module, encoder: GenerativeEncoder, decoder: nn.Module,
                 **options):
        """options: the keys of StagedRecipe and LatentRecipe (configs/recipe/two_stage.yaml)."""
        generator = copy.deepcopy(encoder)  # the same GE size, its own weights
        generator.initialize_weights()
        super().__init__(modality, generator=generator, **options)
        self.embedder = embedder
        self.encoder = encoder
        self.decoder = decoder

    @property
    def tokenize_t_max(self) -> float:
        return self.encoder.tokenize_t_max

    def clean_latents(self, batch, draws_for=None):
        observation = self.embedder(batch)
        layout = observation.layout
        if draws_for is None:
            return self.encoder.tokenize(observation), layout, None
        draws = draws_for(layout.mask, observation.tokens.dtype)
        return self.encoder.tokenize(observation, draws.tokenize_noise, draws.tokenize_t), layout, draws

    def tokenizer_loss(self, batch, draws_for):
        z, layout, draws = self.clean_latents(batch, draws_for)
        prediction = self.decoder(self.corrupt_for_decoder(z, draws), layout)
        rec_loss, logs = self.modality.reconstruction_loss(prediction, batch)
        return rec_loss, {"rec_loss": rec_loss.detach(), **{k: v.detach() for k, v in logs.items()}}

    def decode(self, z: torch.Tensor, layout: LatentLayout) -> Any:
        return self.decoder(z, layout)


@dataclass
class DetokDraws(JointDraws):
    """JointDraws plus l-DeTok's corruption: corruption_tau [B] ~ U(0, 1), corruption_eps [B, N, C] ~ N(0, I),
    mask_u [B] ~ U(0, 1) (-> the mask ratio), mask_scores [B, N, 1] ~ U(0, 1) (the lowest are hidden)."""
    corruption_tau: torch.Tensor
    corruption_eps: torch.Tensor
    mask_u: torch.Tensor
    mask_scores: torch.Tensor

    TOKEN_FIELDS = JointDraws.TOKEN_FIELDS + ("corruption_eps", "mask_scores")


class DetokRecipe(TwoStageRecipe):
    """l-DeTok: the two-stage recipe whose tokenizer learns to decode masked and noised latents.

    Tokens are hidden in pairs: observation token i and latent token i (an image patch and its latent; an
    atom and its latent), both left out of the GE's attention, so the encoder sees only visible ones.
    (Molecules: the e3nn embedder still computes every atom's token from all its neighbours, hidden ones
    included; with modality/embedder=coordinates the tokens are per atom and the hiding is complete.)"""

    LOGGED = ("rec_loss", "gen_loss", "hidden_share")

    def __init__(self, modality: Modality, embedder: nn.Module, encoder: GenerativeEncoder, decoder: nn.Module, *,
                 noise_gamma: float, mask_ratio_min: float, mask_ratio_max: float, **two_stage):
        if not 0 <= mask_ratio_max < 1 or mask_ratio_min >= mask_ratio_max:
            raise ValueError(f"recipe.mask_ratio_min={mask_ratio_min}, mask_ratio_max={mask_ratio_max}: need "
                             "min < max and 0 <= max < 1 (paper: -0.1 and 0.75)")
        if noise_gamma < 0:
            raise ValueError(f"recipe.noise_gamma must be >= 0, got {noise_gamma}")
        super().__init__(modality, embedder, encoder, decoder, **NO_DECODER_NOISE, **two_stage)
        decoder_trunk(self.decoder).add_mask_token()
        self.noise_gamma = noise_gamma
        self.mask_ratio_min, self.mask_ratio_max = mask_ratio_min, mask_ratio_max

    def _draw(self, batch, tokens, device, dtype, generator) -> DetokDraws:
        joint = super()._draw(batch, tokens, device, dtype, generator)
        channels = self.denoiser.latent_channels
        return DetokDraws(**vars(joint),
                          corruption_tau=torch.rand(batch, device=device, generator=generator),
                          corruption_eps=torch.randn(batch, tokens, channels, device=device, dtype=dtype,
                                                     generator=generator),
                          mask_u=torch.rand(batch, device=device, generator=generator),
                          mask_scores=torch.rand(batch, tokens, 1, device=device, generator=generator))

    def hidden_tokens(self, layout: LatentLayout, draws: DetokDraws) -> torch.Tensor:
        """[B, N] bool: the tokens hidden in this step (ratio max(0, U(min, max)) of each sample's real ones)."""
        ratio = mask_ratio(draws.mask_u, self.mask_ratio_min, self.mask_ratio_max)
        return random_token_mask(layout.mask, ratio, draws.mask_scores.squeeze(-1))

    def tokenizer_loss(self, batch, draws_for):
        observation = self.embedder(batch)
        layout = observation.layout
        if observation.tokens.shape[1] != layout.mask.shape[1]:
            raise ValueError(f"l-DeTok hides observation token i with latent token i, but this modality has "
                             f"{observation.tokens.shape[1]} observation and {layout.mask.shape[1]} latent tokens")
        draws = draws_for(layout.mask, observation.tokens.dtype)
        hidden = self.hidden_tokens(layout, draws)
        # padded=True: hidden tokens are padding now, so attention needs its mask even for images
        visible = Observation(tokens=observation.tokens, mask=observation.mask & ~hidden,
                              positions=observation.positions, latent_hints=observation.latent_hints,
                              layout=replace(layout, mask=layout.mask & ~hidden, padded=True), padded=True)
        z = self.encoder.tokenize(visible, draws.tokenize_noise, draws.tokenize_t)  # [B, N, C]
        noised = interpolative_latent_noise(z, draws.corruption_tau, draws.corruption_eps, self.noise_gamma)
        prediction = self.decoder(noised, replace(layout, hidden=hidden))
        rec_loss, logs = self.modality.reconstruction_loss(prediction, batch)
        real = layout.mask.sum().clamp_min(1)
        return rec_loss, {"rec_loss": rec_loss.detach(), "hidden_share": (hidden.sum() / real).detach(),
                          **{k: v.detach() for k, v in logs.items()}}

