"""Figures of short image runs (probes), from each run's newest checkpoint's raw weights: after a few
hundred steps the EMA still mostly holds the initial weights.

    python -m benchmarks.run image_probe_figures RUN_DIR|CHECKPOINT [...] --name NAME

A run folder stands for its newest checkpoint; a checkpoint file (RUN_DIR/checkpoints/step_*.pt) for that
step, so runs of different step costs can be compared at equal compute.

Per run: steps, seconds per step, the last logged L1, PSNR/SSIM and the patch seam ratio
(modalities/image/metrics.py) of 512 test reconstructions and of their originals, the seam ratio of 100
samples (Euler 50, no guidance, seed 0). Writes benchmarks/results/NAME/probes.json and one
<run>.png per run: 10 test images, their reconstructions, 20 samples.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from core.build import build_modality, build_recipe
from core.checkpoint import list_checkpoints, load_checkpoint
from core.metrics_log import MetricsLog
from core.sample import upgrade_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def probe_figures(run_or_checkpoint: Path, out_dir: Path) -> dict:
    from modalities.image.datasets import to_uint8
    from modalities.image.metrics import patch_seam_ratio, psnr_per_image, ssim_per_image
    from modalities.image.modality import labelled_grid
    given_file = run_or_checkpoint.is_file()
    run = run_or_checkpoint.parents[1] if given_file else run_or_checkpoint
    newest = list_checkpoints(run / "checkpoints")[-1]
    checkpoint = run_or_checkpoint if given_file else newest
    state = load_checkpoint(checkpoint)
    cfg, weights = upgrade_checkpoint(OmegaConf.create(state["config"]), state["model"])
    modality = build_modality(cfg)
    model = build_recipe(cfg, modality)
    model.load_state_dict(weights)
    model.eval()
    rows = [row for row in MetricsLog(run, True).rows() if "l1" in row and row["step"] <= state["step"]]
    data = modality.dataset("test")
    batch = modality.collate([data[i] for i in range(min(512, len(data)))])
    torch.manual_seed(0)
    reconstructions, _ = model.reconstruct(batch)
    torch.manual_seed(0)
    samples, _, _ = model.generate(100, torch.arange(100) % modality.num_classes, solver="euler", num_steps=50,
                                   shift=None, guidance_scale=1.0, guidance_interval=(0.1, 1.0), rtol=1e-4,
                                   atol=1e-4, device=torch.device("cpu"))

    def to01(x):
        return (x.clamp(-1, 1) + 1) / 2
    patch = cfg.modality.patch_size
    pictures = torch.cat([to_uint8(batch.images[:10]), to_uint8(reconstructions[:10]), to_uint8(samples[:20])])
    name = run.name if checkpoint == newest else f"{run.name}_step{state['step']}"
    labelled_grid(pictures, [None] * 40, 10, 64).save(out_dir / f"{name}.png")
    return {"run": name, "steps": state["step"], "seconds_per_step": rows[-1]["wall_seconds"] / rows[-1]["step"],
            "l1_last_window": rows[-1]["l1"],
            "process_seconds": rows[-1]["process_seconds"], "psnr": float(psnr_per_image(to01(reconstructions), to01(batch.images)).mean()),
            "ssim": float(ssim_per_image(to01(reconstructions), to01(batch.images)).mean()),
            "seam_ratio_reconstructions": float(patch_seam_ratio(to01(reconstructions), patch).mean()),
            "seam_ratio_originals": float(patch_seam_ratio(to01(batch.images), patch).mean()),
            "seam_ratio_samples": float(patch_seam_ratio(to01(samples), patch).mean()),
            "patch_size": patch, "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--name", required=True)
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    out_dir = args.results_dir / args.name
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    figures = [probe_figures(run, out_dir) for run in args.runs]
    (out_dir / "probes.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
