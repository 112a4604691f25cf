"""Rotary position embedding over token coordinates of any number of axes (1-D sequences, 2-D grids).

Each axis gets an equal share of the head dimension's rotation pairs. Tokens carry float coordinates
[B, N, A], so observation patches and the latent tokens that share their grid cell get the same angles.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def concat_tokens(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Coordinates [B, N1, A] and [B, N2, A] -> [B, N1 + N2, A]; when both are the same for every sample
    (stride-0 expansions), the result is one row expanded, so its tables are computed once."""
    if first.stride(0) == 0 and second.stride(0) == 0:
        return torch.cat([first[:1], second[:1]], dim=1).expand(first.shape[0], -1, -1)
    return torch.cat([first, second], dim=1)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for coordinates [B, N, A] -> ([B, 1, N, head_dim], [B, 1, N, head_dim]).

    Coordinates shared by every sample (a stride-0 expansion, as images give) give tables of batch 1
    that broadcast, instead of B identical copies rebuilt on every pass."""

    def __init__(self, head_dim: int, num_axes: int, base: float = 10000.0):
        super().__init__()
        pairs_per_axis = head_dim // (2 * num_axes)
        if pairs_per_axis < 1:
            raise ValueError(f"head_dim {head_dim} is too small for RoPE over {num_axes} axes")
        self.head_dim = head_dim
        self.num_axes = num_axes
        # 1 / base^(i / pairs) in float32, written as the official UNITE code writes it, so a 1-axis table
        # equals theirs bit for bit.
        self.register_buffer(
            "inv_freq", 1.0 / base ** (torch.arange(pairs_per_axis, dtype=torch.float32) / pairs_per_axis),
            persistent=False)

    def forward(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if coords.shape[-1] != self.num_axes:
            raise ValueError(f"RoPE built for {self.num_axes} axes got coordinates of shape {tuple(coords.shape)}")
        if coords.shape[0] > 1 and coords.stride(0) == 0:
            coords = coords[:1]
        # Angles in float32 whatever the model's dtype (the official tables are float32 too).
        angles = (coords.float().unsqueeze(-1) * self.inv_freq.float()).flatten(-2)  # [B, N, A * pairs]
        pad = self.head_dim // 2 - angles.shape[-1]  # head dims not divisible by 2A rotate by 0
        angles = torch.nn.functional.pad(angles, (0, pad))
        angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # [B, 1, N, head_dim]
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i + d/2}).   x: [B, H, N, d]."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)
