"""End-of-run evaluation shared by every modality: reconstruction on a split, generated samples to files."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from core.compilation import compile_blocks


@torch.no_grad()
def reconstruction_report(model, modality, split: str, max_batches: int, batch_size: int,
                          device: torch.device) -> dict[str, float]:
    """Mean of the modality's per-sample reconstruction metrics over the first max_batches batches,
    plus its split-level figures (e.g. rFID).

    A per-sample value of NaN means "undefined for this sample" (e.g. no reference SMILES): it is left
    out of that metric's mean, and `<metric>/count` says how many samples the mean covers."""
    dataset = modality.dataset(split)
    count = min(len(dataset), max_batches * batch_size)
    loader = DataLoader(Subset(dataset, range(count)), batch_size=batch_size, collate_fn=modality.collate)
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for batch in tqdm(loader, desc=f"reconstruct {split}", unit="batch", dynamic_ncols=True):
        batch = modality.batch_to(batch, device)
        prediction, _ = model.reconstruct(batch)
        for key, values in modality.reconstruction_metrics(prediction, batch).items():
            values = values.float().cpu()
            defined = ~torch.isnan(values)
            sums[key] = sums.get(key, 0.0) + float(values[defined].sum())
            counts[key] = counts.get(key, 0) + int(defined.sum())
    report: dict = {"samples": count, "split": split}
    for key in sums:
        report[key] = sums[key] / counts[key] if counts[key] else float("nan")
        if counts[key] != count:
            report[f"{key}/count"] = counts[key]
    report.update(modality.reconstruction_split_metrics())
    return report


@torch.no_grad()
def generate_and_write(model, modality, sampler_cfg, num_samples: int, out_dir: Path, device: torch.device,
                       seed: int) -> dict:
    """Generate num_samples in batches with the configured solver; the modality writes the files."""
    model.eval()
    if sampler_cfg.compile:
        compile_blocks(model)
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions, layouts, labels_all = [], [], []
    start = time.monotonic()
    batches = range(0, num_samples, sampler_cfg.batch_size)
    for first in tqdm(batches, desc="generate", unit="batch", dynamic_ncols=True):
        n = min(sampler_cfg.batch_size, num_samples - first)
        labels = None
        if modality.num_classes:
            labels = torch.arange(first, first + n, device=device) % modality.num_classes
        prediction, layout, _ = model.generate(
            n, labels, solver=sampler_cfg.solver, num_steps=sampler_cfg.num_steps, shift=sampler_cfg.shift,
            guidance_scale=sampler_cfg.guidance_scale, guidance_interval=tuple(sampler_cfg.guidance_interval),
            rtol=sampler_cfg.rtol, atol=sampler_cfg.atol, device=device, precision=sampler_cfg.precision)
        predictions.append(prediction)
        layouts.append(layout)
        labels_all.append(labels)
    seconds = time.monotonic() - start
    summary = modality.write_samples(predictions, layouts, labels_all, out_dir)
    return {"samples": num_samples, "sampling_seconds": seconds, "solver": sampler_cfg.solver,
            "num_steps": sampler_cfg.num_steps, "guidance_scale": sampler_cfg.guidance_scale, **summary}
