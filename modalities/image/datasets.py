"""Labelled image datasets: any ImageFolder, the offline CIFAR-10 JPEG archive, torchvision's CIFAR-10.

`modality.dataset=cifar10` (the default) takes the offline JPEG copy when a data root is given
(modality.data_root, or $UNITE_CIFAR10_JPEG through the config), else torchvision's download into the
cache; with neither a copy nor the network it stops with one error that names both ways.

Every dataset yields (image uint8 [C, S, S], class index) with S = modality.image_size; images that are
not S x S are resized on the short side and centre-cropped (ADM/DiT preprocessing). Grayscale,
palette and CMYK files are decoded to RGB as torchvision's ImageFolder does (ImageNet has a few);
files with an alpha channel, or colour files for a 1-channel modality, are refused with the file's name.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
DECODABLE_MODES = {3: ("RGB", "L", "P", "CMYK", "YCbCr", "1"), 1: ("L", "1")}
DATASET_KINDS = ("cifar10", "cifar10_jpeg", "image_folder", "torchvision_cifar10")
NO_CIFAR10 = ("give the offline CIFAR-10 JPEG archive (cifar10_jpg.tgz) or its unpacked folder as "
              "UNITE_CIFAR10_JPEG=/path/to/cifar10_jpg.tgz or modality.data_root=/path/to/cifar10_jpg.tgz")


class ImageFileError(ValueError):
    """An image file that cannot be used; the message names the file."""


def cache_root(cache_dir: str | None) -> Path:
    """modality.cache_dir, else $UNITE_CACHE, else ~/.cache/unite."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("UNITE_CACHE", Path.home() / ".cache" / "unite")).expanduser()


def unpack_once(archive: Path, target: Path) -> Path:
    """Extract a .tgz into `target` once: unpack into a temporary sibling folder, then rename it.

    A rename is atomic, so `target` is either complete or absent, and parallel jobs cannot see half an
    archive; the loser of a race deletes its copy."""
    if target.is_dir():
        return target
    if not archive.is_file():
        raise FileNotFoundError(f"modality.data_root={str(archive)!r}: no such archive")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-unpacking-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        os.rename(scratch, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    """Short side -> size (box-halving, then bicubic, as ADM), then a centred size x size crop."""
    if image.size == (size, size):
        return image
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.Resampling.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.Resampling.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """Decode one file -> uint8 [channels, size, size]; ImageFileError names the file when it cannot."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise ImageFileError(f"cannot decode image file {path}: {type(error).__name__}: {error}. "
                             "Replace or delete the file.") from error
    if channels not in DECODABLE_MODES:
        raise ValueError(f"modality.channels={channels}: choose 3 (RGB) or 1 (grayscale)")
    if image.mode not in DECODABLE_MODES[channels] or (image.mode == "P" and "transparency" in image.info):
        bands = len(image.getbands())
        raise ImageFileError(f"image file {path} has {bands} channels (PIL mode {image.mode}) but the modality "
                             f"expects modality.channels={channels}; convert the file (e.g. drop the alpha "
                             "channel) or change modality.channels")
    image = center_crop_resize(image.convert("RGB" if channels == 3 else "L"), size)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # [C, S, S]


def round_robin_by_class(indices: list[int], labels: list[int]) -> list[int]:
    """Reorder indices so classes alternate (c0, c1, ..., c0, c1, ...): any prefix is class-balanced,
    which matters because the core evaluates the first N items of a split."""
    groups: dict[int, list[int]] = {}
    for index in indices:
        groups.setdefault(labels[index], []).append(index)
    columns = [groups[label] for label in sorted(groups)]
    return [index for row in itertools.zip_longest(*columns) for index in row if index is not None]


def fixed_subset(length: int, subset: int | None) -> list[int]:
    """All indices, or `subset` of them drawn once with seed 0 and sorted (so every class appears)."""
    if subset is None or subset >= length:
        return list(range(length))
    if subset < 1:
        raise ValueError(f"a subset size must be >= 1 or null, got {subset}")
    generator = torch.Generator().manual_seed(0)
    return sorted(torch.randperm(length, generator=generator)[:subset].tolist())


class LabelledImages(Dataset):
    """Shared behaviour: a fixed subset listed round-robin over classes, optional random horizontal
    flip, class names.  labels: the class of every item of the full split."""

    def __init__(self, classes: list[str], labels: list[int], subset: int | None, random_flip: bool):
        self.classes = classes
        self.indices = round_robin_by_class(fixed_subset(len(labels), subset), labels)
        self.random_flip = random_flip
        self.decoded: tuple[torch.Tensor, list[int]] | None = None  # filled by preload()

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def preload(self) -> "LabelledImages":
        """Decode every item once into one uint8 tensor [N, C, S, S] (CIFAR-10 train: 150 MB), so that a
        step's batch is an index into memory instead of N file decodes (modality.preload)."""
        if self.decoded is None:
            from tqdm import tqdm
            pairs = [self.load(index) for index in tqdm(self.indices, desc="decode images into memory",
                                                         unit="image", dynamic_ncols=True, mininterval=2)]
            self.decoded = torch.stack([image for image, _ in pairs]), [label for _, label in pairs]
        return self

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.decoded is not None:
            image, label = self.decoded[0][i], self.decoded[1][i]
        else:
            image, label = self.load(self.indices[i])
        if self.random_flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, label


class ImageFolderDataset(LabelledImages):
    """root/<class>/<image> (ImageNet train/val layout); classes are the sorted subfolder names."""

    def __init__(self, root: str | Path, image_size: int, channels: int, subset: int | None, random_flip: bool):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist (modality.data_root / "
                                    "modality.split_folders)")
        classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
        if not classes:
            raise ValueError(f"image folder {root} has no class subfolders: lay it out as {root}/<class>/<image>.jpg "
                             "(ImageNet train/val layout); one subfolder per class, even for a single class")
        self.files: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            names = sorted(e.name for e in os.scandir(root / name) if e.name.lower().endswith(IMAGE_EXTENSIONS))
            self.files += [(root / name / file, label) for file in names]
        if not self.files:
            raise ValueError(f"image folder {root}: the class subfolders hold no files ending in {IMAGE_EXTENSIONS}")
        self.root, self.image_size, self.channels = root, image_size, channels
        super().__init__(classes, [label for _, label in self.files], subset, random_flip)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[index]
        return load_image(path, self.image_size, self.channels), label


class TorchvisionCIFAR10(LabelledImages):
    """torchvision.datasets.CIFAR10 (download=True): lossless CIFAR-10 for users with internet."""

    def __init__(self, root: Path, train: bool, image_size: int, channels: int, subset: int | None,
                 random_flip: bool):
        from torchvision.datasets import CIFAR10
        if channels != 3:
            raise ValueError(f"CIFAR-10 is RGB but modality.channels={channels}")
        try:
            data = CIFAR10(str(root), train=train, download=True)
        except (OSError, RuntimeError) as error:  # no network (URLError is an OSError), a broken download
            raise FileNotFoundError(f"CIFAR-10 is not in {root} and could not be downloaded ({type(error).__name__}: "
                                    f"{error}). Connect to the network, or {NO_CIFAR10}") from None
        self.images, self.labels, self.image_size = data.data, list(data.targets), image_size  # [N, 32, 32, 3]
        super().__init__(list(data.classes), self.labels, subset, random_flip)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index])
        array = np.asarray(center_crop_resize(image, self.image_size), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), self.labels[index]


def resolve_dataset_kind(kind: str, data_root: str | None) -> str:
    """`cifar10` -> the offline JPEG copy when a data root is given, else torchvision's download; other
    kinds stay as they are."""
    if kind == "cifar10":
        return "cifar10_jpeg" if data_root is not None else "torchvision_cifar10"
    return kind


def check_data_root(kind: str, data_root: str | None, split_folders: dict[str, str]) -> None:
    """A known dataset kind, and a data_root where it needs one (all but the CIFAR-10 downloads)."""
    if kind not in DATASET_KINDS:
        raise ValueError(f"modality.dataset={kind!r}: choose one of {DATASET_KINDS}")
    if data_root is None and kind == "cifar10_jpeg":
        raise ValueError(f"modality.data_root is null: modality.dataset=cifar10_jpeg needs the archive; {NO_CIFAR10} "
                         "(or use modality.dataset=cifar10 to download CIFAR-10)")
    if data_root is None and kind == "image_folder":
        raise ValueError(f"modality.data_root is null: modality.dataset=image_folder needs an ImageFolder root holding "
                         f"the split folders {sorted(set(dict(split_folders).values()))}, e.g. "
                         "modality.data_root=/path/to/imagenet")


def build_dataset(kind: str, split: str, data_root: str | None, cache_dir: str | None,
                  split_folders: dict[str, str], image_size: int, channels: int, subset: int | None,
                  random_flip: bool) -> LabelledImages:
    """The `split` of dataset `kind`; split_folders maps train/val/test to folder names."""
    check_data_root(kind, data_root, split_folders)
    kind = resolve_dataset_kind(kind, data_root)
    if split not in split_folders:
        raise KeyError(f"split {split!r} is not in modality.split_folders {dict(split_folders)}")
    folder = split_folders[split]
    if kind == "torchvision_cifar10":
        root = Path(data_root).expanduser() if data_root else cache_root(cache_dir) / "torchvision-cifar10"
        return TorchvisionCIFAR10(root, folder == "train", image_size, channels, subset, random_flip)
    root = Path(data_root).expanduser()
    if kind == "cifar10_jpeg" and root.is_file():
        root = unpack_once(root, cache_root(cache_dir) / "cifar10-jpeg")
    return ImageFolderDataset(root / folder, image_size, channels, subset, random_flip)


@dataclass
class ImageBatch:
    """images: [B, C, H, W] float on [-1, 1] (pixel = 127.5 (x + 1)); labels: [B] class indices."""

    images: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> "ImageBatch":
        return ImageBatch(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True))


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (values outside are clamped) -> uint8 [0, 255], rounded."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def collate_images(items: list[tuple[torch.Tensor, int]]) -> ImageBatch:
    images = torch.stack([image for image, _ in items])  # [B, C, S, S] uint8
    return ImageBatch(from_uint8(images), torch.tensor([label for _, label in items], dtype=torch.long))
