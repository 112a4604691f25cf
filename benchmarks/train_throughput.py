"""Training throughput of a preset: median seconds per optimizer step and samples per second.

    python -m benchmarks.run train_throughput [--steps 20] [--warmup 3] [override ...]

Overrides are Hydra overrides of the train config (e.g. `experiment=qm9_unite_s trainer.batch_size=256`).
The step is the real joint UNITE step (both passes, backward, AdamW/Muon, EMA) on real data.
Appends a row to benchmarks/results/train_throughput.jsonl.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from core.build import build_modality, build_recipe
from core.ema import EMA
from core.optim import build_optimizer
from core.train import autocast_for

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"), \
            tempfile.TemporaryDirectory() as out_dir:  # the config needs an out_dir; nothing is written there
        cfg = compose("train", overrides=[f"trainer.out_dir={out_dir}", *args.overrides])
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.device != "cpu" else "cpu")
    modality = build_modality(cfg)
    dataset = modality.dataset("train")
    recipe = build_recipe(cfg, modality).to(device)
    ema = EMA(recipe, cfg.trainer.ema_decay, cfg.trainer.ema_warmup)
    tc = cfg.trainer
    optimizer = build_optimizer(recipe, tc.optimizer, tc.lr, tc.weight_decay, tc.betas, tc.eps, tc.muon_momentum,
                                tc.muon_split)
    loader = torch.utils.data.DataLoader(dataset, batch_size=tc.batch_size, shuffle=True, drop_last=True,
                                         collate_fn=modality.collate, num_workers=tc.num_workers)
    batches = iter(loader)
    times = []
    for index in range(args.warmup + args.steps):
        batch = modality.batch_to(next(batches), device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast_for(device, tc.precision):
            loss, _ = recipe(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(recipe.parameters(), tc.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(recipe, index + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    row = {"overrides": args.overrides, "device": torch.cuda.get_device_name() if device.type == "cuda" else
           f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
           "batch_size": tc.batch_size, "steps": args.steps, "median_step_seconds": median,
           "samples_per_second": tc.batch_size / median, "min_step_seconds": min(times),
           "max_step_seconds": max(times), "parameters": sum(p.numel() for p in recipe.parameters()),
           "torch": torch.__version__}
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    with open(results / "train_throughput.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
