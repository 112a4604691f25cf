"""Shared pieces of the speed benchmarks: what machine a figure comes from, paired A/B timing, our step.

Every figure is written with `machine_record()` beside it (CPU model and flags, torch, threads, load
average, commit), because these machines change from day to day and share their cores with other jobs.
Speed-ups are measured as `alternate()` rounds inside one process: each round runs every candidate once
(rotating who goes first), so slow phases of a busy machine hit all candidates alike; the figure is the
median over rounds of each candidate's time and of the per-round ratio to the first candidate.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

from core.precision import autocast_for, cpu_flags, cpu_has_native_bf16, cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEXT_COLUMNS = ("commit", "cpu", "cpu_flags", "gpu", "torch", "python", "path", "setup", "note", "case")
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "bf16", "sve")


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


def machine_record(device: torch.device | None = None) -> dict:
    """Where a figure was measured: one flat dict, ready to be a CSV row's prefix."""
    gpu = torch.cuda.get_device_name() if device is not None and device.type == "cuda" else ""
    return {"cpu": cpu_model(), "cpu_flags": " ".join(f for f in REPORTED_FLAGS if f in cpu_flags()),
            "cpu_native_bf16": cpu_has_native_bf16(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "load_1min": round(os.getloadavg()[0], 2), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "commit": commit()}


def previous_rows(csv_path: Path) -> list[dict]:
    """Rows of an earlier run's CSV (for --append), numbers as numbers."""
    import csv
    if not csv_path.is_file():
        return []

    def value(key: str, text: str):
        if key in TEXT_COLUMNS:  # a commit such as 1234e56 is not a number
            return text
        try:
            return float(text) if any(c in text for c in ".e") else int(text)
        except ValueError:
            return text
    with open(csv_path, newline="") as handle:
        return [{k: value(k, v) for k, v in row.items()} for row in csv.DictReader(handle)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(candidates: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
              device: torch.device = torch.device("cpu")) -> dict:
    """Time each candidate `rounds` times, interleaved.  Returns {name: seconds per call (list)},
    the medians, and per-round ratios time(first candidate) / time(candidate) with their median."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    base = names[0]
    ratios = {name: [b / t for b, t in zip(times[base], times[name])] for name in names}
    return {"times": times, "median": {n: statistics.median(t) for n, t in times.items()},
            "ratio_to_first": {n: statistics.median(r) for n, r in ratios.items()}, "rounds": rounds}


class OurTrainStep:
    """One optimizer step as core/train.py runs it (one process, no accumulation): per-sample noise
    streams, autocast as trainer.precision resolves, backward, clip, optimizers, schedulers, EMA."""

    def __init__(self, recipe, optimizer, schedulers, ema, precision: str, grad_clip: float, seed: int = 0):
        from core.noise_streams import global_positions, stream_seeds
        self.recipe, self.optimizer, self.schedulers, self.ema = recipe, optimizer, schedulers, ema
        self.precision, self.grad_clip, self.seed = precision, grad_clip, seed
        self._seeds = lambda step, batch: stream_seeds(seed, step, global_positions(1, 0, 0, batch))
        self.step_index = 0

    def forward_backward(self, batch, batch_size: int) -> torch.Tensor:
        device = next(self.recipe.parameters()).device
        with autocast_for(device, self.precision):
            loss, _ = self.recipe(batch, self._seeds(self.step_index, batch_size))
        loss.backward()
        return loss

    def __call__(self, batch, batch_size: int) -> torch.Tensor:
        loss = self.forward_backward(batch, batch_size)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.recipe.parameters(), self.grad_clip)
        if not bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):
            raise FloatingPointError("non-finite loss in a timed step")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for scheduler in self.schedulers:
            scheduler.step()
        if self.ema is not None:
            self.ema.update(self.recipe, self.step_index + 1)
        self.step_index += 1
        return loss


def build_train_step(cfg, optimizer_name: str | None = None, fused_adamw: bool | None = None,
                     precision: str | None = None, compiled: bool | None = None, seed: int = 0,
                     device: torch.device = torch.device("cpu")) -> OurTrainStep:
    """The recipe, optimiser, EMA and execution switches (packing, compile) that core/train.py builds from
    `cfg`; the arguments replace the config's choice where given."""
    from core.build import build_modality, build_recipe
    from core.compilation import compile_blocks
    from core.ema import EMA
    from core.optim import build_optimizer
    from core.packing import resolve_packing, set_packing
    tc = cfg.trainer
    torch.manual_seed(seed)
    recipe = build_recipe(cfg, build_modality(cfg)).to(device).train()
    optimizer = build_optimizer(recipe, optimizer_name or tc.optimizer, tc.lr, tc.weight_decay, tc.betas, tc.eps,
                                tc.muon_momentum, tc.muon_split, tc.fused_adamw if fused_adamw is None else fused_adamw,
                                tc.muon_ns_dtype)
    ema = EMA(recipe, tc.ema_decay, tc.ema_warmup)
    set_packing(recipe, resolve_packing(tc.packing, device, recipe)[0])
    if tc.compile if compiled is None else compiled:
        compile_blocks(recipe)
    return OurTrainStep(recipe, optimizer, [], ema, precision or tc.precision, tc.grad_clip, seed)
