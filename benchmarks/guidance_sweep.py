"""Classifier-free guidance sweep of a checkpoint (the paper reports the best scale of 1.0-4.0; say which):

    python -m benchmarks.run guidance_sweep CHECKPOINT [sampler.num_steps=50 +evaluation.write_png=false ...]
        --name NAME [--num-samples 1000] [--scales 1.0 1.5 2.0 3.0 4.0]

Loads the EMA weights once, then for each scale generates `num-samples` class-balanced samples with the
same seed and lets the modality evaluate them (images: gFID; molecules: stability, validity, ...).
Trailing arguments are `core.sample` overrides (sampler.*, +evaluation.*). Writes
benchmarks/results/<NAME>.json with one row per scale and each scale's sample grid beside it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from core.distributed import init_world
from core.evaluation import generate_and_write
from core.sample import load_for_sampling

ROOT = Path(__file__).resolve().parents[1]


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--name", required=True, help="results file name (without .json)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("sample", overrides=[f"checkpoint={args.checkpoint}", *args.overrides])
    world = init_world(cfg.device)
    model, modality, _, step = load_for_sampling(args.checkpoint, cfg.evaluation, world.device)
    results = args.results_dir
    grids = results / args.name
    grids.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in args.scales:
        cfg.sampler.guidance_scale = scale
        with tempfile.TemporaryDirectory() as out_dir:
            row = generate_and_write(model, modality, cfg.sampler, args.num_samples, Path(out_dir), world.device,
                                     cfg.seed)
            grid = Path(out_dir) / "grid.png"
            if grid.is_file():
                shutil.copyfile(grid, grids / f"guidance_{scale:g}.png")
        row = {k: v for k, v in row.items() if k != "grid"}
        rows.append({"guidance_scale": scale, **row})
        print(json.dumps(rows[-1], default=str))
    sampler = {k: v for k, v in OmegaConf.to_container(cfg.sampler).items() if k != "guidance_scale"}
    report = {"checkpoint": str(args.checkpoint), "step": step, "num_samples": args.num_samples, "sampler": sampler,
              "evaluation_overrides": OmegaConf.to_container(cfg.evaluation), "seed": cfg.seed,
              "device": str(world.device), "rows": rows}
    (results / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
