"""Transformer building blocks shared by the Generative Encoder and the decoders.

DiT-style blocks with adaLN-zero modulation, RMSNorm, SwiGLU MLP, QK-norm, optional rotary position
embedding, and key-padding masks through `scaled_dot_product_attention`. Two switches give the official
UNITE block: `norm_scale` (the RMSNorms before modulation carry a learnable scale) and `residual_norm`
(an RMSNorm of the residual stream ends every block, so no block is the identity at init).
Shapes: B batch, N tokens, D width, H heads.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.packing import PackedTokens
from core.rope import RotaryEmbedding, apply_rotary


def xavier_init_linear(module: nn.Module) -> None:
    """DiT/MAE initialisation of every Linear: Xavier-uniform weight, zero bias (use with Module.apply)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class RMSNorm(nn.RMSNorm):
    """torch's RMSNorm with its scale cast to the input's dtype: under bf16 autocast (which leaves rms_norm
    alone) a float32 scale meeting a bf16 activation sends torch to its slow unfused path, with a warning
    per call. The fused kernel accumulates in float32 either way; in float32 this is nn.RMSNorm exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return F.rms_norm(x, self.normalized_shape, weight, self.eps)


def per_token(values: torch.Tensor) -> torch.Tensor:
    """Modulation values per sample [B, D] -> [B, 1, D]; per token [B, N, D] (packed batches) stay."""
    return values.unsqueeze(1) if values.dim() == 2 else values


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x * (1 + scale) + shift.   x: [B, N, D]; shift, scale: [B, D] per sample or [B, N, D] per token."""
    return x * (1 + per_token(scale)) + per_token(shift)


class SwiGLU(nn.Module):
    """SwiGLU MLP; hidden width 2/3 of mlp_ratio * D keeps the parameter count of a GELU MLP.

    One weight holds gate and value (as the official w12), but they are computed as two products on its
    row halves: each output is contiguous, where `.chunk` of one output gives strided halves on which
    the elementwise product and its backward ran 2.5x slower on a Zen 4 CPU (issue 13)."""

    def __init__(self, width: int, mlp_ratio: float):
        super().__init__()
        self.hidden = int(2 / 3 * mlp_ratio * width)
        self.gate_and_value = nn.Linear(width, 2 * self.hidden)
        self.out = nn.Linear(self.hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b, h = self.gate_and_value.weight, self.gate_and_value.bias, self.hidden
        gate, value = F.linear(x, w[:h], b[:h]), F.linear(x, w[h:], b[h:])
        return self.out(F.silu(gate) * value)


class Attention(nn.Module):
    """Multi-head self-attention with optional QK-norm (RMSNorm per head) and RoPE."""

    def __init__(self, width: int, heads: int, qk_norm: bool):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        head_dim = width // heads
        self.q_norm = RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None, packed: PackedTokens | None = None) -> torch.Tensor:
        """x [B, N, D]; packed in 'tokens' mode: x is [1, T, D] and attention runs on the padded layout."""
        qkv = self.qkv(x)
        if packed is not None and packed.mode == "tokens":
            qkv = packed.unpack(qkv)  # [B, N, 3D]
        b, n, d3 = qkv.shape
        d = d3 // 3
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # [B, H, N, d]
        q, k = self.q_norm(q), self.k_norm(k)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask).transpose(1, 2).reshape(b, n, d)
        if packed is not None and packed.mode == "tokens":
            out = packed.pack(out)
        return self.proj(out)


class TransformerBlock(nn.Module):
    """Pre-norm block; with `conditioned`, adaLN-zero modulation from a vector c [B, D] (DiT).

    norm_scale: the pre-attention/pre-MLP RMSNorms of a conditioned block carry a learnable scale
    (unconditioned blocks always do).  residual_norm: RMSNorm (with scale) of the block's output."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, qk_norm: bool, conditioned: bool,
                 norm_scale: bool = False, residual_norm: bool = False):
        super().__init__()
        affine = norm_scale or not conditioned
        self.norm1 = RMSNorm(width, eps=1e-6, elementwise_affine=affine)
        self.attn = Attention(width, heads, qk_norm)
        self.norm2 = RMSNorm(width, eps=1e-6, elementwise_affine=affine)
        self.mlp = SwiGLU(width, mlp_ratio)
        self.conditioned = conditioned
        if conditioned:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        self.norm3 = RMSNorm(width, eps=1e-6) if residual_norm else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None, attention_mask: torch.Tensor | None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None, packed: PackedTokens | None = None) -> torch.Tensor:
        """x [B, N, D] (packed: [1, T, D]); c [B, D]; packed: how tokens map to samples (core/packing.py)."""
        if not self.conditioned:
            x = x + self.attn(self.norm1(x), attention_mask, rotary, packed)
            x = x + self.mlp(self.norm2(x))
        else:
            modulation = self.adaLN_modulation(c)  # [B, 6D]: per sample, then spread over packed tokens
            if packed is not None:
                modulation = packed.per_token(modulation)
            shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(6, dim=-1)
            x = x + per_token(gate1) * self.attn(modulate(self.norm1(x), shift1, scale1), attention_mask, rotary,
                                                 packed)
            x = x + per_token(gate2) * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x if self.norm3 is None else self.norm3(x)


class FinalLayer(nn.Module):
    """adaLN-modulated RMSNorm (learnable scale with `norm_scale`) then a linear head to `out_channels`."""

    def __init__(self, width: int, out_channels: int, norm_scale: bool = False):
        super().__init__()
        self.norm = RMSNorm(width, eps=1e-6, elementwise_affine=norm_scale)
        self.linear = nn.Linear(width, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of t in [0, 1] (scaled by 1000, as in DiT) followed by an MLP.

    At the scale of the tokenize pass (t ~ U(0, 0.01)) these features already turn: cos(feature(0),
    feature(0.01)) = 0.68, so pass 1 sees a noisy condition. FourierTimestepEmbedder is the official form."""

    def __init__(self, width: int, frequency_channels: int = 256):
        super().__init__()
        self.frequency_channels = frequency_channels
        self.mlp = nn.Sequential(nn.Linear(frequency_channels, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequency_channels // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = 1000 * t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(self.mlp[0].weight.dtype))


class FourierTimestepEmbedder(nn.Module):
    """Gaussian Fourier features [sin, cos](2 pi t w), fixed w ~ N(0, scale^2), followed by an MLP
    (official UNITE).  With scale 1, features at t = 0 and t = 0.01 have cosine 0.998.

    w is a persistent buffer: it is drawn once at construction and travels in checkpoints."""

    def __init__(self, width: int, frequency_channels: int = 256, scale: float = 1.0):
        super().__init__()
        self.register_buffer("frequencies", scale * torch.randn(frequency_channels))
        self.mlp = nn.Sequential(nn.Linear(2 * frequency_channels, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * t.to(self.frequencies.dtype)[:, None] * self.frequencies[None]  # [B, F]
        features = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class embedding with a null class (index num_classes) for classifier-free guidance.

    Class dropout lives here (as in DiT): during training each label is replaced by the null class with
    probability `dropout`; `force_null` replaces all of them (the tokenize pass).
    """

    def __init__(self, num_classes: int, width: int, dropout: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout = dropout
        self.table = nn.Embedding(num_classes + 1, width)

    def null_labels(self, batch: int, device) -> torch.Tensor:
        return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)

    def forward(self, labels: torch.Tensor | None, batch: int, device, force_null: bool = False,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """drop: [B] bool, which labels become the null class in training (drawn here when None)."""
        if labels is None or force_null:
            labels = self.null_labels(batch, device)
        elif self.training and self.dropout > 0:
            if drop is None:
                drop = torch.rand(batch, device=device) < self.dropout
            labels = torch.where(drop, self.num_classes, labels)
        return self.table(labels)


def key_padding_to_attention_mask(token_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[B, N] bool (True = real) -> [B, 1, 1, N] bool for SDPA (True = may attend); None stays None.

    Only keys are masked: padded queries still attend to real keys, so no row is empty (no NaN)."""
    if token_mask is None:
        return None
    return token_mask[:, None, None, :]


__all__ = ["xavier_init_linear", "RMSNorm", "modulate", "SwiGLU", "Attention", "TransformerBlock", "FinalLayer", "TimestepEmbedder",
           "FourierTimestepEmbedder", "LabelEmbedder", "RotaryEmbedding", "key_padding_to_attention_mask"]
