"""Images <-> patch tokens, as pure functions.

A patch holds p x p pixels of C channels, flattened in (row, col, channel) order (DiT/MAE convention);
patches are listed row-major over the grid, so token n sits at grid cell (n // cols, n % cols).
"""
from __future__ import annotations

import torch


def patch_grid(image_size: int, patch_size: int) -> int:
    """Patches per side for a square image; raises naming the config keys when they do not divide."""
    if patch_size < 1 or image_size < 1:
        raise ValueError(f"modality.image_size={image_size} and modality.patch_size={patch_size} must be >= 1")
    if image_size % patch_size:
        raise ValueError(
            f"modality.image_size={image_size} is not divisible by modality.patch_size={patch_size}: "
            f"choose a patch size that divides the image size (e.g. {_divisors(image_size)})")
    return image_size // patch_size


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, min(n, 33)) if n % d == 0]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)(W/p), p*p*C]."""
    b, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image of shape {tuple(images.shape)} is not divisible into {patch_size}x{patch_size} "
                         "patches (modality.patch_size)")
    rows, cols = h // patch_size, w // patch_size
    x = images.reshape(b, c, rows, patch_size, cols, patch_size)
    x = torch.einsum("bcrpkq->brkpqc", x)  # [B, rows, cols, p, p, C]
    return x.reshape(b, rows * cols, patch_size * patch_size * c)


def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int, channels: int) -> torch.Tensor:
    """[B, (H/p)(W/p), p*p*C] -> [B, C, H, W]; inverse of `patchify`."""
    b, n, d = patches.shape
    rows, cols = height // patch_size, width // patch_size
    if rows * cols != n or d != patch_size * patch_size * channels:
        raise ValueError(f"patch tokens of shape {tuple(patches.shape)} do not tile a {channels}x{height}x{width} "
                         f"image with patch {patch_size} (expected [B, {rows * cols}, "
                         f"{patch_size * patch_size * channels}])")
    x = patches.reshape(b, rows, cols, patch_size, patch_size, channels)
    x = torch.einsum("brkpqc->bcrpkq", x)
    return x.reshape(b, channels, height, width)


def grid_coordinates(rows: int, cols: int, device=None) -> torch.Tensor:
    """(row, col) of each token of a row-major grid as floats, [rows * cols, 2] (the RoPE coordinates)."""
    r, c = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return torch.stack([r.flatten(), c.flatten()], dim=-1).float()


def sincos_2d(width: int, rows: int, cols: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding in MAE's layout, [rows * cols, width]: the first half of the
    channels encodes the column, the second half the row, each as [sin, cos] at geometric frequencies
    1 / 10000^(k / (width / 4)).  Computed in float64, returned as float32 (as MAE and UNITE do)."""
    if width % 4:
        raise ValueError(f"2-D sincos embedding needs a width divisible by 4, got {width}")
    coords = grid_coordinates(rows, cols).double()  # [N, 2] = (row, col)
    quarter = width // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    parts = []
    for axis in (1, 0):  # column, then row
        angles = coords[:, axis:axis + 1] * freqs  # [N, width/4]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=-1).float()
