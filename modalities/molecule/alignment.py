"""Optimal rigid alignment (Kabsch) of padded point sets, proper rotations only (no reflections)."""
from __future__ import annotations

import torch


def masked_centroid(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """points [B, N, 3], mask [B, N] bool -> [B, 1, 3]."""
    w = mask.to(points.dtype).unsqueeze(-1)
    return (points * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)


def kabsch_align(mobile: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rotate and translate `mobile` onto `reference` (least squares over real atoms).

    mobile, reference: [B, N, 3]; mask: [B, N] bool.  Returns the moved copy of mobile [B, N, 3].
    The rotation is computed in float64 without gradient (SVD gradients are unstable for degenerate
    shapes); gradients flow through the points themselves, which is all a loss needs.
    """
    w = mask.to(mobile.dtype).unsqueeze(-1)
    mobile_centroid = masked_centroid(mobile, mask)
    reference_centroid = masked_centroid(reference, mask)
    with torch.no_grad():
        a = ((mobile - mobile_centroid) * w).double()
        b = ((reference - reference_centroid) * w).double()
        u, _, vh = torch.linalg.svd(a.transpose(1, 2) @ b)  # covariance [B, 3, 3]
        sign = torch.sign(torch.linalg.det(u @ vh))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        correction = torch.diag_embed(torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], -1))
        rotation = (u @ correction @ vh).to(mobile.dtype)  # row-vector convention: x @ R
    return (mobile - mobile_centroid) @ rotation + reference_centroid


def aligned_rmsd(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Coordinate RMSD after optimal rigid alignment, per molecule [B] (Å when inputs are Å)."""
    moved = kabsch_align(target, prediction, mask)
    squared = ((prediction - moved) ** 2).sum(-1) * mask
    return (squared.sum(1) / mask.sum(1).clamp_min(1)).sqrt()
