"""Checks on trainer values that would otherwise fail late (or silently) inside the loop."""
from __future__ import annotations

from omegaconf import DictConfig

from core.lr_schedule import SCHEDULES, UNITS
from core.muon import NS_DTYPES
from core.optim import MUON_SPLITS
from core.packing import PACKING_CHOICES
from core.precision import PRECISIONS


def validate_trainer_config(tc: DictConfig) -> None:
    problems = []
    for key in ("max_steps", "batch_size", "grad_accum", "log_every", "checkpoint_every", "keep_checkpoints",
                "eval_batch_size"):
        if not isinstance(tc[key], int) or tc[key] < 1:
            problems.append(f"trainer.{key} must be a positive integer, got {tc[key]!r}")
    if isinstance(tc.batch_size, int) and isinstance(tc.grad_accum, int) and tc.grad_accum >= 1 \
            and tc.batch_size % tc.grad_accum:
        problems.append(f"trainer.batch_size={tc.batch_size} is not divisible by trainer.grad_accum={tc.grad_accum}")
    if tc.threads is not None and (not isinstance(tc.threads, int) or tc.threads < 1):
        problems.append(f"trainer.threads must be a positive integer or null, got {tc.threads!r}")
    if tc.lr <= 0:
        problems.append(f"trainer.lr must be > 0, got {tc.lr}")
    if tc.grad_clip <= 0:
        problems.append(f"trainer.grad_clip must be > 0, got {tc.grad_clip}")
    if tc.nonfinite not in ("stop", "skip"):
        problems.append(f"trainer.nonfinite={tc.nonfinite!r}: choose 'stop' or 'skip'")
    if tc.precision not in PRECISIONS:
        problems.append(f"trainer.precision={tc.precision!r}: choose one of {PRECISIONS}")
    if tc.muon_ns_dtype not in NS_DTYPES:
        problems.append(f"trainer.muon_ns_dtype={tc.muon_ns_dtype!r}: choose one of {NS_DTYPES}")
    if tc.packing not in PACKING_CHOICES:
        problems.append(f"trainer.packing={tc.packing!r}: choose one of {PACKING_CHOICES}")
    for key in ("fused_adamw", "compile"):
        if not isinstance(tc[key], bool):
            problems.append(f"trainer.{key} must be true or false, got {tc[key]!r}")
    if tc.time_limit_minutes is not None and tc.time_limit_minutes <= 0:
        problems.append(f"trainer.time_limit_minutes must be > 0 or null, got {tc.time_limit_minutes}")
    if tc.time_limit_clock not in ("wall", "process"):
        problems.append(f"trainer.time_limit_clock={tc.time_limit_clock!r}: choose 'wall' or 'process'")
    if tc.checkpoint_every_minutes is not None and tc.checkpoint_every_minutes <= 0:
        problems.append(f"trainer.checkpoint_every_minutes must be > 0 or null, got {tc.checkpoint_every_minutes}")
    if not all(isinstance(step, int) and step >= 1 for step in tc.checkpoint_steps):
        problems.append(f"trainer.checkpoint_steps must list steps >= 1, got {list(tc.checkpoint_steps)}")
    if tc.muon_split not in MUON_SPLITS:
        problems.append(f"trainer.muon_split={tc.muon_split!r}: choose one of {MUON_SPLITS}")
    problems += lr_schedule_problems(tc.lr_schedule)
    if problems:
        raise ValueError("invalid trainer config: " + "; ".join(problems))


def lr_schedule_problems(schedule: DictConfig) -> list[str]:
    where = "trainer.lr_schedule"
    problems = []
    if schedule.name not in SCHEDULES:
        problems.append(f"{where}.name={schedule.name!r}: choose one of {SCHEDULES}")
    if schedule.unit not in UNITS:
        problems.append(f"{where}.unit={schedule.unit!r}: choose one of {UNITS}")
    if schedule.warmup < 0:
        problems.append(f"{where}.warmup must be >= 0, got {schedule.warmup}")
    if schedule.name == "official" and (schedule.hold_until is None or schedule.decay_end is None):
        problems.append(f"{where}.name=official needs hold_until and decay_end (e.g. 30 and 50 epochs)")
    if schedule.name == "warmup_cosine" and schedule.hold_until is not None:
        problems.append(f"{where}.hold_until applies to name=official only; set it to null")
    if not 0 <= schedule.final_ratio <= 1:
        problems.append(f"{where}.final_ratio must lie in [0, 1], got {schedule.final_ratio}")
    return problems
