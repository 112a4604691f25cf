"""Zero vs small-normal initialisation of the GE output layer, side by side on the same runs:

    python -m benchmarks.run final_layer_init [--stds 0.0 0.02] [--seeds 0 1 2] [--steps 400] [override ...]

Each (std, seed) is a short `core.train` run (no end-of-run evaluation) of the given config, default
`modality=image modality.loss.l1_weight=1.0`: the setting where, with the zero init, the latents
collapsed to a constant in 2 of 4 CPU runs. Records per run the logged gradient norm of the first
window, the L1 at the end, and whether the latents collapsed: a final L1 above 95 % of the L1 of
predicting every image by the training set's mean image (the image modality's L1, [-1, 1] scale).
Writes benchmarks/results/final_layer_init.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from core.train import train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OVERRIDES = ["modality=image", "modality.loss.l1_weight=1.0", "trainer.evaluate_at_end=false",
                     "trainer.checkpoint_every=100000"]


def one_run(std: float, seed: int, steps: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out_dir:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=[*overrides, f"model.final_layer_init_std={std}",
                                              f"trainer.seed={seed}", f"trainer.max_steps={steps}",
                                              f"trainer.out_dir={out_dir}"])
        start = time.monotonic()
        train(cfg)
        rows = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
    rows = [row for row in rows if "rec_loss" in row]
    return {"std": std, "seed": seed, "steps": steps, "seconds": time.monotonic() - start,
            "first_window_grad_norm": rows[0]["grad_norm"], "max_window_grad_norm": max(r["grad_norm"] for r in rows),
            "final_l1": rows[-1]["l1"], "final_gen_loss": rows[-1]["gen_loss"],
            "curve_step_l1_gen": [(r["step"], r["l1"], r["gen_loss"]) for r in rows]}


def mean_image_l1(overrides: list[str], images: int = 5000) -> float:
    """Mean |x - mean image| over a fixed subset of the training images, [-1, 1] scale."""
    from core.build import build_modality
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"), \
            tempfile.TemporaryDirectory() as out_dir:  # the config needs an out_dir; nothing is written there
        cfg = compose("train", overrides=[*overrides, f"trainer.out_dir={out_dir}"])
    dataset = build_modality(cfg).dataset("train")
    x = torch.stack([dataset[i][0] for i in range(min(images, len(dataset)))]).float() / 127.5 - 1
    return float((x - x.mean(0)).abs().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stds", type=float, nargs="+", default=[0.0, 0.02])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    overrides = args.overrides or DEFAULT_OVERRIDES
    baseline = mean_image_l1(overrides)
    runs = [one_run(std, seed, args.steps, overrides) for seed in args.seeds for std in args.stds]
    for run in runs:
        run["collapsed"] = run["final_l1"] > 0.95 * baseline
    summary = {}
    for std in args.stds:
        mine = [r for r in runs if r["std"] == std]
        summary[std] = {"runs": len(mine), "collapsed": sum(r["collapsed"] for r in mine),
                        "final_l1": [round(r["final_l1"], 4) for r in mine],
                        "first_window_grad_norm": [round(r["first_window_grad_norm"], 1) for r in mine]}
    result = {"overrides": overrides, "mean_image_l1": baseline, "summary_by_std": summary, "runs": runs,
              "hardware": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "torch": torch.__version__}
    path = ROOT / "benchmarks" / "results" / "final_layer_init.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
