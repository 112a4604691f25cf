"""Datasets and their errors: each bad input gives one error naming the file or config key."""
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from modalities.image.datasets import (ImageFileError, ImageFolderDataset, build_dataset, collate_images,
                                       fixed_subset, load_image, resolve_dataset_kind, to_uint8, unpack_once)


def write_image(path, size=(40, 30), mode="RGB", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = len(Image.new(mode, (1, 1)).getbands())
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    Image.fromarray(array[:, :, 0] if bands == 1 else array, mode=None if bands > 1 else "L").convert(mode).save(path)


def make_folder(root, classes=("cat", "dog"), per_class=3):
    for c in classes:
        for i in range(per_class):
            write_image(root / c / f"{i}.png", seed=i)
    return root


def test_image_folder_resizes_crops_and_labels(tmp_path):
    data = ImageFolderDataset(make_folder(tmp_path / "train"), image_size=16, channels=3, subset=None,
                              random_flip=False)
    assert data.classes == ["cat", "dog"] and len(data) == 6
    assert [data[i][1] for i in range(6)] == [0, 1, 0, 1, 0, 1]  # round-robin: every prefix is class-balanced
    image, label = data[3]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label == 1
    batch = collate_images([data[0], data[5]])
    assert batch.images.min() >= -1 and batch.images.max() <= 1 and batch.labels.tolist() == [0, 1]
    assert torch.equal(to_uint8(batch.images[0]), data[0][0])  # [-1, 1] <-> uint8 round trip is exact


def test_preloaded_images_are_the_decoded_files(tmp_path):
    data = ImageFolderDataset(make_folder(tmp_path / "train"), image_size=16, channels=3, subset=None,
                              random_flip=False)
    expected = [data[i] for i in range(len(data))]
    data.preload()
    assert data.decoded[0].shape == (6, 3, 16, 16) and data.decoded[0].dtype == torch.uint8
    assert all(torch.equal(data[i][0], image) and data[i][1] == label for i, (image, label) in enumerate(expected))
    data.random_flip = True  # flips stay random per read
    torch.manual_seed(0)
    flipped = [torch.equal(data[0][0], expected[0][0].flip(-1)) for _ in range(20)]
    assert any(flipped) and not all(flipped)


def test_grayscale_files_become_rgb(tmp_path):
    write_image(tmp_path / "gray.png", mode="L")
    assert load_image(tmp_path / "gray.png", 8, channels=3).shape == (3, 8, 8)


def test_corrupt_image_file_is_named(tmp_path):
    root = make_folder(tmp_path / "train")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = ImageFolderDataset(root, 16, 3, None, False)
    index = [str(p) for p, _ in data.files].index(str(root / "dog" / "broken.jpg"))
    with pytest.raises(ImageFileError, match=r"cannot decode image file .*dog/broken\.jpg"):
        data[index]


def test_wrong_channel_count_is_named(tmp_path):
    write_image(tmp_path / "alpha.png", mode="RGBA")
    with pytest.raises(ImageFileError, match=r"alpha\.png has 4 channels \(PIL mode RGBA\).*modality.channels=3"):
        load_image(tmp_path / "alpha.png", 8, channels=3)
    write_image(tmp_path / "colour.png", mode="RGB")
    with pytest.raises(ImageFileError, match=r"colour\.png has 3 channels.*modality.channels=1"):
        load_image(tmp_path / "colour.png", 8, channels=1)


def test_folder_without_class_subfolders_is_named(tmp_path):
    write_image(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match=r"flat has no class subfolders.*<class>/<image>"):
        ImageFolderDataset(tmp_path / "flat", 16, 3, None, False)
    with pytest.raises(ValueError, match="modality.data_root is null"):
        build_dataset("image_folder", "train", None, None, {"train": "train"}, 16, 3, None, False)


def test_fixed_subset_is_deterministic_and_spread():
    first = fixed_subset(1000, 50)
    assert first == fixed_subset(1000, 50) and len(set(first)) == 50 and max(first) > 500


def test_archive_is_unpacked_once_atomically(tmp_path):
    archive = tmp_path / "tiny.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"hello"
        info = tarfile.TarInfo("train/cat/readme.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    target = tmp_path / "cache" / "tiny"
    assert unpack_once(archive, target) == target
    assert (target / "train" / "cat" / "readme.txt").read_bytes() == b"hello"
    archive.unlink()  # a second call must not need the archive
    assert unpack_once(archive, target) == target
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["tiny"]  # no scratch folder left behind


def test_cifar10_jpeg_archive(cifar_archive):
    data = build_dataset("cifar10_jpeg", "test", str(cifar_archive), None, {"test": "test"}, 32, 3, None, False)
    assert len(data.classes) == 10 and len(data) == 10000
    assert data[0][0].shape == (3, 32, 32) and [data[i][1] for i in range(10)] == list(range(10))
    subset = build_dataset("cifar10_jpeg", "test", str(cifar_archive), None, {"test": "test"}, 32, 3, 20, False)
    assert len(subset) == 20 and len({subset[i][1] for i in range(20)}) >= 8


def test_cifar10_takes_the_given_copy_else_downloads_else_names_both(tmp_path, monkeypatch, compose_config):
    from urllib.error import URLError

    import torchvision.datasets
    assert resolve_dataset_kind("cifar10", None) == "torchvision_cifar10"
    assert resolve_dataset_kind("cifar10", "/path/to/cifar10_jpg.tgz") == "cifar10_jpeg"
    # a fresh machine: the default config holds no path; without the env variable data_root is null
    monkeypatch.delenv("UNITE_CIFAR10_JPEG", raising=False)
    cfg = compose_config(["modality=image", "trainer.out_dir=unused"])
    assert cfg.modality.dataset == "cifar10" and cfg.modality.data_root is None
    monkeypatch.setenv("UNITE_CIFAR10_JPEG", str(tmp_path / "copy.tgz"))
    assert compose_config(["modality=image", "trainer.out_dir=unused"]).modality.data_root == str(tmp_path / "copy.tgz")

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(FileNotFoundError, match=r"could not be downloaded.*URLError.*UNITE_CIFAR10_JPEG=.*modality.data_root="):
        build_dataset("cifar10", "train", None, str(tmp_path / "cache"), {"train": "train"}, 32, 3, None, False)
    with pytest.raises(ValueError, match="UNITE_CIFAR10_JPEG=.*modality.data_root="):
        build_dataset("cifar10_jpeg", "train", None, None, {"train": "train"}, 32, 3, None, False)
