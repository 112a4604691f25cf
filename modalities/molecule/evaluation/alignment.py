"""Optimal rigid alignment (Kabsch) of predicted onto target coordinates: batched, masked, differentiable.

Pure torch (no RDKit): the training loss (`model/losses.py` via `atom_assignment.py`) and the
reconstruction metrics both use it, and training must run where the chemistry toolkits are not installed.
"""
from __future__ import annotations

import torch


def _batched(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None):
    """Bring [N, 3] inputs to [1, N, 3] and fill a missing mask; check shapes."""
    single = pred.dim() == 2
    if single:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if pred.shape != target.shape or pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"kabsch: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be "
                         "[N, 3] or [B, N, 3]")
    if mask is None:
        mask = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"kabsch: mask {tuple(mask.shape)} must be {tuple(pred.shape[:2])}")
    return pred, target, mask.bool(), single


def masked_centred(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """points [B, N, 3] minus each molecule's centroid over its real atoms; padded rows (mask False) -> 0."""
    w = mask.to(points.dtype).unsqueeze(-1)
    return (points - (w * points).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)) * w


def kabsch_rotation(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Proper rotation R [B, 3, 3] minimising sum_i |(p_i - p̄) R - (t_i - t̄)|² over masked atoms.

    pred, target [B, N, 3] (Å), mask [B, N] bool. det(R) = +1 always: a mirror image is never
    "aligned" by a reflection. Computed in float64 without gradient (see `kabsch_align`).
    """
    with torch.no_grad():
        w = mask.to(torch.float64).unsqueeze(-1)  # [B, N, 1]
        n = w.sum(1, keepdim=True).clamp_min(1.0)  # [B, 1, 1]
        p = pred.detach().to(torch.float64)
        t = target.detach().to(torch.float64)
        p = (p - (w * p).sum(1, keepdim=True) / n) * w
        t = (t - (w * t).sum(1, keepdim=True) / n) * w
        h = p.transpose(1, 2) @ t  # [B, 3, 3] covariance
        u, _, vt = torch.linalg.svd(h)
        d = torch.sign(torch.linalg.det(u @ vt))  # -1 where the best orthogonal map is a reflection
        d = torch.where(d == 0, torch.ones_like(d), d)
        flip = torch.ones_like(u[..., 0])  # [B, 3]
        flip[:, 2] = d
        return (u * flip.unsqueeze(1)) @ vt


def kabsch_align(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`pred` rigidly moved (rotation + translation) onto `target`; same shape as pred ([N, 3] or [B, N, 3]).

    Gradients flow through pred and both centroids; the rotation is a constant in backprop. For the
    aligned squared error this is the exact gradient (the rotation is optimal, so its own derivative
    term vanishes) and it avoids SVD's unstable gradient for planar or linear molecules (equal singular
    values). Padded rows (mask False) are moved too and carry no meaning.
    """
    p, t, m, single = _batched(pred, target, mask)
    rotation = kabsch_rotation(p, t, m).to(p.dtype)
    w = m.to(p.dtype).unsqueeze(-1)
    n = w.sum(1, keepdim=True).clamp_min(1.0)
    aligned = (p - (w * p).sum(1, keepdim=True) / n) @ rotation + (w * t).sum(1, keepdim=True) / n
    return aligned[0] if single else aligned


def kabsch_rmsd(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Coordinate RMSD (Å) after optimal proper-rotation alignment.

    pred, target: [N, 3] -> scalar, or [B, N, 3] with mask [B, N] bool -> [B]. Differentiable in pred
    (and target); the gradient at RMSD = 0 is 0 rather than NaN. A molecule with no unmasked atom gets 0.
    """
    p, t, m, single = _batched(pred, target, mask)
    aligned = kabsch_align(p, t, m)
    w = m.to(p.dtype)
    msd = (((aligned - t) ** 2).sum(-1) * w).sum(-1) / w.sum(-1).clamp_min(1.0)  # [B]
    positive = msd > 0
    rmsd = torch.where(positive, msd, torch.ones_like(msd)).sqrt() * positive
    return rmsd[0] if single else rmsd
