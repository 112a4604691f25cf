"""Spectra and entropies: the description-length proxy of a weight tensor (histogram entropy), the PCA
spectrum of a set of latents, its effective rank (Roy & Vetterli 2007) and PCA truncation of latents."""
from __future__ import annotations

import math

import torch


def histogram_entropy_bits(values: torch.Tensor, bins: int = 256) -> float:
    """Shannon entropy, in bits per value, of the histogram of `values` over `bins` equal bins spanning
    [min, max] (a fixed bin count, so tensors of any scale compare; at most log2(min(bins, numel)) bits).
    Uniform over 2^k bins -> k bits; a constant tensor (e.g. a norm scale at its initial 1) -> 0."""
    if bins < 1:
        raise ValueError(f"histogram_entropy_bits: bins={bins} must be >= 1")
    flat = values.detach().double().flatten()
    if flat.numel() == 0:
        raise ValueError("histogram_entropy_bits: empty tensor")
    low, high = float(flat.min()), float(flat.max())
    if high == low:
        return 0.0
    counts = torch.histc(flat, bins=bins, min=low, max=high)  # the maximum falls in the last bin
    p = counts[counts > 0] / flat.numel()
    return float(-(p * p.log2()).sum())


def _features(features: torch.Tensor, where: str) -> torch.Tensor:
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"{where}: need features [n >= 2, C], got {tuple(features.shape)}")
    return features.double()


def pca_spectrum(features: torch.Tensor) -> torch.Tensor:
    """Variance along each principal axis of features [n, C] (column-centred, unbiased), largest first:
    [min(n, C)]."""
    x = _features(features, "pca_spectrum")
    x = x - x.mean(0)
    return torch.linalg.svdvals(x).pow(2) / (x.shape[0] - 1)


def effective_rank(matrix: torch.Tensor) -> float:
    """exp(H(p)) with p_i = sigma_i / sum(sigma) the normalised singular values (Roy & Vetterli 2007):
    r for a rank-r matrix with equal singular values, between 1 and min(shape) otherwise; 0 for a zero matrix.
    Pass centred features for the effective rank of their PCA."""
    if matrix.dim() != 2:
        raise ValueError(f"effective_rank: need a matrix [m, n], got shape {tuple(matrix.shape)}")
    singular = torch.linalg.svdvals(matrix.double())
    total = singular.sum()
    if total == 0:
        return 0.0
    p = singular[singular > 0] / total
    return math.exp(float(-(p * p.log()).sum()))


def pca_basis(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [C], principal axes [C, C] as columns, largest variance first) of features [n, C]."""
    x = _features(features, "pca_basis")
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=True)
    return mean, vh.T


def truncate_to_components(features: torch.Tensor, mean: torch.Tensor, axes: torch.Tensor, k: int) -> torch.Tensor:
    """Features [..., C] projected onto the first k principal axes (about `mean`), in the original dtype:
    k = C gives them back, k = 0 gives the mean."""
    if not 0 <= k <= axes.shape[1]:
        raise ValueError(f"truncate_to_components: k={k} must lie in [0, {axes.shape[1]}]")
    if features.shape[-1] != axes.shape[0]:
        raise ValueError(f"truncate_to_components: features of {features.shape[-1]} channels, axes for "
                         f"{axes.shape[0]}")
    top = axes[:, :k].to(features.device)
    centred = features.double() - mean.to(features.device)
    return ((centred @ top) @ top.T + mean.to(features.device)).to(features.dtype)
