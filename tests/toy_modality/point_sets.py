"""A third modality that lives only in the tests: 2-D point sets on circles, one radius per class.

It exists to prove docs/adding-a-modality.md: everything a modality needs, in one file, built by Hydra
from `_target_`, trained by core.train without any change to core/. A sample is N points (x, y) spread
around a circle of radius 0.5 (class 0), 1.0 (class 1) or 1.5 (class 2), with a random phase and a
little noise. Points form a set: no positions (rope_axes = 0); latent slot i is paired with point i by
a pass-1 hint (a projection of point i's token), as the molecule modality pairs atoms and latents.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from core.generative_encoder import DecoderTrunk
from core.modality import LatentLayout, Observation

RADII = (0.5, 1.0, 1.5)


@dataclass
class PointBatch:
    points: torch.Tensor  # [B, N, 2]
    labels: torch.Tensor  # [B]

    def to(self, device) -> "PointBatch":
        return PointBatch(self.points.to(device), self.labels.to(device))


class CirclePoints(Dataset):
    """`size` fixed samples drawn once from a seeded generator."""

    def __init__(self, size: int, num_points: int, noise: float, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(len(RADII), (size,), generator=generator)
        phase = 2 * math.pi * torch.rand(size, 1, generator=generator)
        angles = phase + torch.linspace(0, 2 * math.pi, num_points + 1)[:-1]  # [size, N]
        radius = torch.tensor(RADII)[self.labels].unsqueeze(1)
        self.points = torch.stack([radius * angles.cos(), radius * angles.sin()], -1)
        self.points += noise * torch.randn(self.points.shape, generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.points[i], int(self.labels[i])


class PointEmbedder(nn.Module):
    """PointBatch -> one token per point; latent hints pair latent i with point i."""

    def __init__(self, width: int, num_points: int):
        super().__init__()
        self.num_points = num_points
        self.embed = nn.Sequential(nn.Linear(2, width), nn.SiLU(), nn.Linear(width, width))
        self.to_latent_hints = nn.Linear(width, width)

    def forward(self, batch: PointBatch) -> Observation:
        tokens = self.embed(batch.points)  # [B, N, D]
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return Observation(tokens=tokens, mask=mask, positions=None, latent_hints=self.to_latent_hints(tokens),
                           layout=LatentLayout(mask=mask))

    def generation_layout(self, num_samples: int, device, generator=None) -> LatentLayout:
        return LatentLayout(mask=torch.ones(num_samples, self.num_points, dtype=torch.bool, device=device))


class PointDecoder(nn.Module):
    """Latents [B, N, C] -> points [B, N, 2]."""

    def __init__(self, latent_channels: int, depth: int, width: int, heads: int):
        super().__init__()
        self.trunk = DecoderTrunk(latent_channels, depth, width, heads, mlp_ratio=2.0, qk_norm=True, rope_axes=0)
        self.head = nn.Linear(width, 2)

    def forward(self, z: torch.Tensor, layout: LatentLayout) -> torch.Tensor:
        return self.head(self.trunk(z, layout))


class PointSetModality:
    name = "point_sets"
    num_classes = len(RADII)
    rope_axes = 0

    def __init__(self, name: str, num_points: int, train_size: int, test_size: int, noise: float, decoder: dict):
        if name != self.name:
            raise ValueError(f"modality.name must be {self.name!r}, got {name!r}")
        self.num_points, self.noise, self.decoder_options = num_points, noise, dict(decoder)
        self.sizes = {"train": train_size, "val": test_size, "test": test_size}

    def dataset(self, split: str) -> Dataset:
        seed = {"train": 0, "val": 1, "test": 2}[split]
        return CirclePoints(self.sizes[split], self.num_points, self.noise, seed)

    def collate(self, items: list) -> PointBatch:
        return PointBatch(torch.stack([p for p, _ in items]), torch.tensor([y for _, y in items]))

    def batch_to(self, batch: PointBatch, device) -> PointBatch:
        return batch.to(device)

    def batch_labels(self, batch: PointBatch) -> torch.Tensor:
        return batch.labels

    def build_embedder(self, width: int) -> PointEmbedder:
        return PointEmbedder(width, self.num_points)

    def build_decoder(self, latent_channels: int) -> PointDecoder:
        return PointDecoder(latent_channels, **self.decoder_options)

    def reconstruction_loss(self, prediction: torch.Tensor, batch: PointBatch):
        mse = ((prediction - batch.points) ** 2).mean()
        return mse, {"point_mse": mse.detach()}

    def reconstruction_metrics(self, prediction: torch.Tensor, batch: PointBatch) -> dict[str, torch.Tensor]:
        """Per-sample root-mean-square point error, [B]."""
        return {"point_rmse": ((prediction - batch.points) ** 2).sum(-1).mean(-1).sqrt()}

    def reconstruction_split_metrics(self) -> dict[str, float]:
        return {}

    def write_samples(self, predictions: list, layouts: list, labels: list, out_dir: Path) -> dict:
        """points.json; returns the mean |radius error| against each sample's class radius."""
        points = torch.cat(predictions).cpu()
        classes = torch.cat(labels).cpu()
        radius_error = (points.norm(dim=-1).mean(-1) - torch.tensor(RADII)[classes]).abs()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "points.json").write_text(json.dumps({"points": points.tolist(), "labels": classes.tolist()}))
        return {"mean_radius_error": float(radius_error.mean())}


TARGET = f"{PointSetModality.__module__}.{PointSetModality.__qualname__}"


def register_point_sets() -> None:
    """configs/modality/point_sets.yaml, written into Hydra's ConfigStore: `modality=point_sets` composes it."""
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(group="modality", name="point_sets", node={
        "_target_": TARGET, "name": "point_sets", "num_points": 12, "train_size": 512, "test_size": 64,
        "noise": 0.02, "decoder": {"depth": 1, "width": 64, "heads": 4}})
