"""Per-image reconstruction metrics (PSNR, SSIM via torchmetrics) and the Inception Score.

Inputs are images on [0, 1] (data_range 1): PSNR = 10 log10(1 / MSE) in dB, MSE over all pixels and
channels of one image. The Inception Score needs the Inception classifier head, which the offline FID
file does not have, so it runs only with a classifier given by path.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def psnr_per_image(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] on [0, 1] -> PSNR in dB, [B]."""
    return peak_signal_noise_ratio(prediction.float(), target.float(), data_range=1.0, reduction="none",
                                   dim=(1, 2, 3))


def patch_seam_ratio(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """How much sharper the image changes across patch borders than inside patches, [B].

    Mean |difference| of neighbouring pixels across the borders of the p x p patch grid divided by the
    same inside patches, over both axes and all channels. Natural images give ~1.0; a decoder that
    predicts each patch on its own shows its seams as values above 1.  images: [B, C, H, W]."""
    x = images.float()
    borders, inside = [], []
    for axis in (-1, -2):
        steps = (x.narrow(axis, 1, x.shape[axis] - 1) - x.narrow(axis, 0, x.shape[axis] - 1)).abs()
        at_border = (torch.arange(1, x.shape[axis], device=x.device) % patch_size) == 0  # pixel j-1 | j
        shape = [1] * x.dim()
        shape[axis] = -1
        at_border = at_border.view(shape).expand_as(steps)
        borders.append((steps * at_border).flatten(1).sum(1) / at_border.flatten(1).sum(1))
        inside.append((steps * ~at_border).flatten(1).sum(1) / (~at_border).flatten(1).sum(1))
    return (borders[0] + borders[1]) / (inside[0] + inside[1]).clamp_min(1e-12)


def ssim_per_image(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] on [0, 1] -> SSIM (11 x 11 Gaussian window, sigma 1.5), [B]."""
    return structural_similarity_index_measure(prediction.float(), target.float(), data_range=1.0,
                                               reduction="none")


class ClassifierLogits(nn.Module):
    """A TorchScript Inception classifier from a local file: uint8 [N, 3, 299, 299] -> logits [N, K].

    The module must do its own input scaling (torch-fidelity's 'logits_unbiased' feature, exported
    with torch.jit.trace, is the standard one)."""

    def __init__(self, path: str | None):
        super().__init__()
        if path is None:
            raise ValueError(
                "the Inception Score needs the Inception classifier (logits) weights, which cannot be downloaded "
                "here and are not in the FID feature file (it ends at pool3). Set "
                "modality.evaluation.inception_score_classifier=<TorchScript file> or leave the Inception Score off")
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"modality.evaluation.inception_score_classifier={path!r}: no such file")
        self.network = torch.jit.load(str(file), map_location="cpu").eval()
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images).float()


def inception_score(images: torch.Tensor, classifier_path: str | None, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the Inception Score over `splits` splits of uint8 images [N, 3, H, W]."""
    from torchmetrics.image.inception import InceptionScore
    metric = InceptionScore(feature=ClassifierLogits(classifier_path), splits=splits)
    metric.update(images)
    mean, std = metric.compute()
    return float(mean), float(std)
