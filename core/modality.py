"""The one protocol through which a modality plugs into the core.

A modality supplies: an observation embedder (sample -> tokens of the GE's width), a decoder
(latents -> prediction), a reconstruction loss, datasets, and a sample writer. The core never imports a
modality; `core.train` builds one from its config's `_target_`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset


@dataclass
class LatentLayout:
    """Which latent tokens exist and where they sit.

    mask:      [B, N_lat] bool, True = a real token (molecules pad to the largest atom count).
    positions: [B, N_lat, A] coordinates for rotary embedding, or None for sets.
    slots:     [B, N_lat, D] learned slot embeddings added to the latent inputs in both passes, or None.
    hidden:    [B, N_lat] bool, latent tokens the decoder sees as its learned mask token (l-DeTok's masking,
               training only; core.generative_encoder.DecoderTrunk applies it), or None.
    padded:    False when every token is real (images): attention then runs without a mask, on the
               faster kernel. A flag, not a look at `mask`, so that no step waits for the GPU to answer.
    Positions and slots that are the same for every sample may be expanded views (stride 0 on the batch
    axis); they stay views through `repeat`, and the rotary tables are then computed once, not per row.
    """

    mask: torch.Tensor
    positions: torch.Tensor | None = None
    slots: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    padded: bool = True

    def repeat(self, k: int) -> "LatentLayout":
        """The layout of K stacked copies of the batch (K denoising draws per sample)."""
        return LatentLayout(repeat_rows(self.mask, k), repeat_rows(self.positions, k), repeat_rows(self.slots, k),
                            repeat_rows(self.hidden, k), self.padded)


def repeat_rows(x: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """K stacked copies along the batch axis; a view when every row is one (a stride-0 expansion)."""
    if x is None:
        return None
    if x.stride(0) == 0:
        return x[:1].expand(k * x.shape[0], *x.shape[1:])
    return x.repeat(k, *([1] * (x.dim() - 1)))


@dataclass
class Observation:
    """What the tokenize pass sees: observation tokens plus per-latent-slot hints.

    tokens:        [B, N_obs, D] observation tokens at the GE's width.
    mask:          [B, N_obs] bool, True = real token.
    positions:     [B, N_obs, A] or None.
    latent_hints:  [B, N_lat, D] added to latent slot i's input in pass 1 only (molecules: a projection
                   of atom i's token, which pairs latent i with atom i without any index embedding), or None.
    layout:        the latent layout this observation implies.
    padded:        False when every observation token is real (see LatentLayout.padded).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor | None
    latent_hints: torch.Tensor | None
    layout: LatentLayout
    padded: bool = True


@runtime_checkable
class ObservationEmbedder(Protocol):
    def __call__(self, batch: Any) -> Observation: ...

    def generation_layout(self, num_samples: int, device: torch.device,
                          generator: torch.Generator | None) -> LatentLayout:
        """Layout of latents to generate (molecules draw atom counts from the training histogram)."""
        ...


@runtime_checkable
class Modality(Protocol):
    name: str
    num_classes: int  # 0 = unconditional
    rope_axes: int  # coordinate axes for rotary embedding; 0 for sets

    def build_embedder(self, width: int) -> nn.Module: ...

    def build_decoder(self, latent_channels: int) -> nn.Module:
        """nn.Module mapping (z [B, N_lat, C], layout) to the modality's prediction."""
        ...

    def reconstruction_loss(self, prediction: Any, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss and named parts (for logging)."""
        ...

    def dataset(self, split: str) -> Dataset: ...

    def collate(self, items: list) -> Any: ...

    def batch_to(self, batch: Any, device: torch.device) -> Any: ...

    def batch_labels(self, batch: Any) -> torch.Tensor | None:
        """Class labels [B] for conditioning, or None."""
        ...

    def reconstruction_metrics(self, prediction: Any, batch: Any) -> dict[str, torch.Tensor]:
        """Per-sample reconstruction figures, each [B]; the core averages them over a split."""
        ...

    def reconstruction_split_metrics(self) -> dict[str, float]:
        """Figures of the whole set passed through reconstruction_metrics since the last call (e.g. rFID,
        which has no per-sample value), then forget that set; {} for a modality without such figures."""
        ...

    def write_samples(self, predictions: list, layouts: list[LatentLayout], labels: list,
                      out_dir: Path) -> dict[str, Any]:
        """Write generated samples (one list entry per generated batch) as files a user can open;
        returns a summary (numbers) for the metrics log."""
        ...
