"""Collect an image run's figures and pictures into benchmarks/results/<name>/:

    python -m benchmarks.run image_run_report RUN_DIR --name cifar10_image_run [--pairs 50] [--samples DIR ...]

Copies summary.json, metrics.jsonl and config.yaml of RUN_DIR, its samples grid (samples.png), and the
summary and grid of every extra `core.sample` output folder given with --samples (samples_<folder>.png /
.json); writes reconstructions.png: the first `pairs` images of the evaluation split (classes round robin)
next to their reconstructions by the newest checkpoint's EMA weights. The README beside them is written
by hand: it says what was run and what the figures mean.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from core.checkpoint import list_checkpoints
from core.sample import load_for_sampling

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def reconstruction_pairs(checkpoint: Path, pairs: int):
    """uint8 images [2 * pairs, C, H, W] (original, reconstruction, ...) and their captions."""
    from modalities.image.datasets import to_uint8
    model, modality, cfg, _ = load_for_sampling(checkpoint, OmegaConf.create({}), torch.device("cpu"))
    dataset = modality.dataset(cfg.trainer.eval_split)
    batch = modality.collate([dataset[i] for i in range(min(pairs, len(dataset)))])
    torch.manual_seed(0)  # pass 1 starts from noise at t ~ U(0, tokenize_t_max): seed it for a repeatable grid
    prediction, _ = model.reconstruct(batch)
    originals, reconstructions = to_uint8(batch.images), to_uint8(prediction)
    images = torch.stack([originals, reconstructions], dim=1).flatten(0, 1)
    names = [modality.class_names[i] for i in batch.labels.tolist()]
    captions = [caption for name in names for caption in (name, "rec.")]
    return images, captions, modality.evaluation


def main() -> None:
    from modalities.image.modality import labelled_grid
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True, help="folder under benchmarks/results/")
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--samples", type=Path, nargs="*", default=[], help="core.sample output folders")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    checkpoints = list_checkpoints(args.run_dir / "checkpoints")
    if not checkpoints:
        raise SystemExit(f"{args.run_dir / 'checkpoints'}: no step_*.pt checkpoint")
    out = args.results_dir / args.name
    out.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "metrics.jsonl", "config.yaml"):
        if (args.run_dir / name).is_file():
            shutil.copyfile(args.run_dir / name, out / name)
    if (args.run_dir / "samples" / "grid.png").is_file():
        shutil.copyfile(args.run_dir / "samples" / "grid.png", out / "samples.png")
    for folder in args.samples:
        shutil.copyfile(folder / "grid.png", out / f"samples_{folder.name}.png")
        shutil.copyfile(folder / "summary.json", out / f"samples_{folder.name}.json")
    images, captions, evaluation = reconstruction_pairs(checkpoints[-1], args.pairs)
    grid = labelled_grid(images, captions, evaluation.grid_columns, evaluation.grid_tile)
    grid.save(out / "reconstructions.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
