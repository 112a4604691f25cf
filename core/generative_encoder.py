"""The Generative Encoder (GE): one transformer, two passes, shared weights.

    tokenize(observation)          pass 1: latents from a fully observed sample
                                   (noise latents + slot hints ⊕ observation tokens, t ~ U(0, t_max), null class)
    denoise(x_t, t, labels, layout) pass 2: clean-latent prediction from noisy latents + class condition

Both end in the same LayerNorm over channels, so clean latents, denoised predictions and every sampler
state live on one normalised scale. Sizes (depth/width/heads) are names in configs/model/.

Official-UNITE switches (configs/model/*.yaml): block_norm, norm_scale, time_embedding=fourier,
rope_positions=sequence (1-D RoPE over the token index: latents 0..N_lat-1, then observation tokens).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from core.layers import (FinalLayer, FourierTimestepEmbedder, LabelEmbedder, RMSNorm, TimestepEmbedder,
                         TransformerBlock, key_padding_to_attention_mask, xavier_init_linear)
from core.modality import LatentLayout, Observation
from core.packing import pack_tokens
from core.precision import float32_region, widened
from core.rope import RotaryEmbedding, concat_tokens


class GenerativeEncoder(nn.Module):
    packing = "none"  # trainer.packing: padded batches run packed (core/packing.py)

    def __init__(self, depth: int, width: int, heads: int, mlp_ratio: float, qk_norm: bool,
                 latent_channels: int, num_classes: int, class_dropout: float, in_context_tokens: int,
                 in_context_start: int, rope_axes: int, tokenize_t_max: float, latent_norm_affine: bool,
                 final_layer_init_std: float, gradient_checkpointing: bool, block_norm: bool, norm_scale: bool,
                 time_embedding: str, rope_positions: str):
        super().__init__()
        if latent_channels <= 0:
            raise ValueError(f"model.latent_channels must be > 0, got {latent_channels}")
        if in_context_tokens and not 0 <= in_context_start < depth:
            raise ValueError(f"model.in_context_start={in_context_start} must lie in [0, depth={depth})")
        if time_embedding not in ("sinusoidal", "fourier"):
            raise ValueError(f"model.time_embedding={time_embedding!r}: choose 'sinusoidal' or 'fourier'")
        if rope_positions not in ("grid", "sequence"):
            raise ValueError(f"model.rope_positions={rope_positions!r}: choose 'grid' or 'sequence'")
        if rope_positions == "sequence" and not rope_axes:
            raise ValueError("model.rope_positions=sequence numbers tokens by their index, but this modality's "
                             "tokens are a set (rope_axes=0) with no order; use model.rope_positions=grid")
        self.width = width
        self.latent_channels = latent_channels
        self.tokenize_t_max = tokenize_t_max
        self.in_context_tokens = in_context_tokens
        self.in_context_start = in_context_start
        self.gradient_checkpointing = gradient_checkpointing
        if final_layer_init_std < 0:
            raise ValueError(f"model.final_layer_init_std must be >= 0, got {final_layer_init_std}")
        self.final_layer_init_std = final_layer_init_std
        self.rope_positions = rope_positions

        self.latent_in = nn.Linear(latent_channels, width)
        self.t_embedder = FourierTimestepEmbedder(width) if time_embedding == "fourier" else TimestepEmbedder(width)
        self.y_embedder = LabelEmbedder(num_classes, width, class_dropout)
        rotary_axes = 1 if rope_positions == "sequence" else rope_axes
        self.rotary = RotaryEmbedding(width // heads, rotary_axes) if rope_axes else None
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, mlp_ratio, qk_norm, conditioned=True, norm_scale=norm_scale,
                             residual_norm=block_norm) for _ in range(depth))
        self.final_layer = FinalLayer(width, latent_channels, norm_scale=norm_scale)
        self.latent_norm = nn.LayerNorm(latent_channels, elementwise_affine=latent_norm_affine)
        if in_context_tokens:
            self.in_context_pos = nn.Parameter(torch.zeros(1, in_context_tokens, width))
        self.self_condition_in: nn.Linear | None = None  # add_self_conditioning()
        self.initialize_weights()

    def add_self_conditioning(self) -> None:
        """The input map of a previous clean-latent prediction (ADiT's self-conditioning), called by a recipe
        with recipe.self_conditioning > 0. Zero-initialised and bias-free, so it starts as no input and an
        absent prediction (the tokenize pass, the first sampling step) is the same as a zero one."""
        if self.self_condition_in is None:
            self.self_condition_in = nn.Linear(self.latent_channels, self.width, bias=False)
            nn.init.zeros_(self.self_condition_in.weight)

    def initialize_weights(self) -> None:
        self.apply(xavier_init_linear)
        nn.init.normal_(self.y_embedder.table.weight, std=0.02)
        if self.in_context_tokens:
            nn.init.normal_(self.in_context_pos, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:  # adaLN-zero: every block starts as the identity
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        # 0 = zeros (official UNITE, DiT): z starts at LayerNorm(0) = 0, where LayerNorm's gradient is
        # 1/sqrt(eps) ~ 300x; > 0 = small normal weights, so z starts as a random projection of the input.
        nn.init.normal_(self.final_layer.linear.weight, std=self.final_layer_init_std)
        nn.init.zeros_(self.final_layer.linear.bias)
        if self.self_condition_in is not None:
            nn.init.zeros_(self.self_condition_in.weight)

    # ------------------------------------------------------------------ the two passes
    def tokenize(self, observation: Observation, noise: torch.Tensor | None = None,
                 t: torch.Tensor | None = None) -> torch.Tensor:
        """Pass 1.  Returns z [B, N_lat, C] (LayerNorm'd; padded slots hold values the loss ignores).

        noise [B, N_lat, C] ~ N(0, I) and t [B] ~ U(0, tokenize_t_max) are drawn here unless given."""
        layout = observation.layout
        b, n = layout.mask.shape
        device = layout.mask.device
        if noise is None:
            noise = torch.randn(b, n, self.latent_channels, device=device, dtype=observation.tokens.dtype)
        if t is None:
            t = self.tokenize_t_max * torch.rand(b, device=device)
        return self(noise, t, None, layout, observation, force_null_class=True)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None,
                layout: LatentLayout, class_drop: torch.Tensor | None = None,
                self_condition: torch.Tensor | None = None) -> torch.Tensor:
        """Pass 2.  x_t: [B, N_lat, C], t: [B] -> predicted clean latent x1_hat [B, N_lat, C].

        class_drop [B] bool: labels replaced by the null class in training (drawn by the embedder if None).
        self_condition [B, N_lat, C]: a previous prediction of x1 (only with add_self_conditioning)."""
        return self(x_t, t, labels, layout, None, force_null_class=False, class_drop=class_drop,
                    self_condition=self_condition)

    # ------------------------------------------------------------------ shared trunk
    def forward(self, latent_input: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None,
                layout: LatentLayout, observation: Observation | None, force_null_class: bool,
                class_drop: torch.Tensor | None = None, self_condition: torch.Tensor | None = None) -> torch.Tensor:
        b, n_lat, _ = latent_input.shape
        x = self.latent_in(latent_input)  # [B, N_lat, D]
        if self_condition is not None:
            if self.self_condition_in is None:
                raise ValueError("a self-conditioning input was given but this GE has no self-conditioning map "
                                 "(the recipe calls add_self_conditioning when recipe.self_conditioning > 0)")
            x = x + self.self_condition_in(self_condition.to(latent_input.dtype))
        if layout.slots is not None:
            x = x + layout.slots
        token_mask, positions, padded = layout.mask, layout.positions, layout.padded
        if observation is not None:
            if observation.latent_hints is not None:
                x = x + observation.latent_hints
            x = torch.cat([x, observation.tokens.to(x.dtype)], dim=1)  # [B, N_lat + N_obs, D]
            token_mask = torch.cat([token_mask, observation.mask], dim=1)
            padded = padded or observation.padded
            if positions is not None:
                positions = concat_tokens(positions, observation.positions)
        if self.rotary is not None and self.rope_positions == "sequence":
            positions = torch.arange(x.shape[1], device=x.device, dtype=torch.float32).view(1, -1, 1).expand(b, -1, 1)
        if self.rotary is not None and positions is None:
            raise ValueError("this GE uses rotary embedding (rope_axes > 0) but the modality gave no token positions")

        y = self.y_embedder(labels, b, x.device, force_null=force_null_class, drop=class_drop)  # [B, D]
        c = self.t_embedder(t) + y
        rotary = self.rotary(positions) if self.rotary is not None else None
        # no mask without padding: SDPA then takes its fused kernel (and no [B, 1, 1, N] mask is read)
        attention_mask = key_padding_to_attention_mask(token_mask) if padded else None
        packed = None
        if self.packing != "none" and padded:
            if self.in_context_tokens:
                raise ValueError("trainer.packing does not support in-context class tokens (model.in_context_tokens > 0)")
            packed = pack_tokens(token_mask, self.packing)
            x, rotary = packed.pack(x), packed.pack_rotary(rotary)
            if packed.block_diagonal is not None:
                attention_mask = packed.block_diagonal

        for index, block in enumerate(self.blocks):
            if self.in_context_tokens and index == self.in_context_start:
                # Class tokens join the sequence here (official UNITE: 32 tokens from block 4 on);
                # they sit at coordinate 0, where the rotary embedding is the identity.
                x, attention_mask, rotary = self._append_class_tokens(x, y, token_mask, positions, padded)
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, c, attention_mask, rotary, packed, use_reentrant=False)
            else:
                x = block(x, c, attention_mask, rotary, packed)
        if packed is not None:
            x = packed.unpack(x)
        offset = self.in_context_tokens if self.in_context_tokens else 0
        latent_out = x[:, offset:offset + n_lat]
        with float32_region(x.device):  # z, targets and sampler states share one float32 scale (core/precision.py)
            return self.latent_norm(self.final_layer(widened(latent_out), widened(c)))  # [B, N_lat, C]

    def _append_class_tokens(self, x, y, token_mask, positions, padded: bool):
        b = x.shape[0]
        context = y.unsqueeze(1) + self.in_context_pos  # [B, T, D]
        x = torch.cat([context.to(x.dtype), x], dim=1)
        attention_mask = None
        if padded:
            mask = torch.cat([torch.ones(b, self.in_context_tokens, dtype=torch.bool, device=x.device), token_mask], 1)
            attention_mask = key_padding_to_attention_mask(mask)
        rotary = None
        if self.rotary is not None:
            zeros = positions.new_zeros(1, self.in_context_tokens, positions.shape[-1]).expand(b, -1, -1)
            rotary = self.rotary(concat_tokens(zeros, positions))
        return x, attention_mask, rotary


class DecoderTrunk(nn.Module):
    """Latent tokens -> hidden states for a modality's output head.

    Linear C -> D, then unconditioned pre-norm transformer blocks (RMSNorm, SwiGLU, QK-norm, RoPE over
    the layout's positions when rope_axes > 0), then a final RMSNorm.

    A learned mask token (l-DeTok) exists only after `add_mask_token()`, called by the recipes that hide
    latent tokens (`LatentLayout.hidden`): every parameter must get a gradient in every step (DDP).
    """

    packing = "none"  # trainer.packing (core/packing.py)

    def __init__(self, latent_channels: int, depth: int, width: int, heads: int, mlp_ratio: float,
                 qk_norm: bool, rope_axes: int):
        super().__init__()
        self.latent_in = nn.Linear(latent_channels, width)
        self.rotary = RotaryEmbedding(width // heads, rope_axes) if rope_axes else None
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, mlp_ratio, qk_norm, conditioned=False) for _ in range(depth))
        self.norm = RMSNorm(width, eps=1e-6)
        self.width = width
        self.mask_token: nn.Parameter | None = None

    def add_mask_token(self) -> None:
        """The learned token that replaces hidden latent positions (MAE/l-DeTok initialisation)."""
        if self.mask_token is None:
            self.mask_token = nn.Parameter(0.02 * torch.randn(self.width))

    def forward(self, z: torch.Tensor, layout: LatentLayout) -> torch.Tensor:
        x = self.latent_in(z)  # [B, N, D]
        if layout.hidden is not None:
            if self.mask_token is None:
                raise ValueError("the latent layout hides tokens (l-DeTok masking) but this decoder has no mask "
                                 "token; the recipe must call DecoderTrunk.add_mask_token() when it is built")
            # torch.where, even where nothing is hidden: the mask token always gets a (zero) gradient
            x = torch.where(layout.hidden.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        rotary = self.rotary(layout.positions) if self.rotary is not None else None
        attention_mask = key_padding_to_attention_mask(layout.mask) if layout.padded else None
        packed = pack_tokens(layout.mask, self.packing) if self.packing != "none" and layout.padded else None
        if packed is not None:
            x, rotary = packed.pack(x), packed.pack_rotary(rotary)
            if packed.block_diagonal is not None:
                attention_mask = packed.block_diagonal
        for block in self.blocks:
            x = block(x, None, attention_mask, rotary, packed)
        return self.norm(x if packed is None else packed.unpack(x))


def decoder_trunk(decoder: nn.Module) -> DecoderTrunk:
    """The one DecoderTrunk inside a modality's decoder (recipes that hide latent tokens attach a mask token)."""
    trunks = [m for m in decoder.modules() if isinstance(m, DecoderTrunk)]
    if len(trunks) != 1:
        raise ValueError(f"{type(decoder).__name__} holds {len(trunks)} core.generative_encoder.DecoderTrunk modules; "
                         "masking latent tokens (recipe=ldetok) needs a decoder built on exactly one (images: "
                         "modality.decoder.architecture=rope)")
    return trunks[0]
