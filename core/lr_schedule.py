"""Learning-rate multipliers as pure functions of the optimizer step, and the trainer's choice of one.

    warmup_cosine   linear warm-up to 1, cosine to `final_ratio` at the last step (held after it)
    official        official UNITE (utils/optim.py): warm-up from 0, held at 1 until `hold_until`, cosine to
                    `final_ratio` at `decay_end`, held there (ImageNet: epochs 20 / 30 / 50, ratio 0.5)
"""
from __future__ import annotations

import math
from typing import Callable

SCHEDULES = ("warmup_cosine", "official")
UNITS = ("steps", "epochs")


def cosine_between(progress: float, start: float, end: float) -> float:
    """start -> end along half a cosine; progress is clamped to [0, 1]."""
    progress = min(1.0, max(0.0, progress))
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, final_ratio: float) -> float:
    """Linear warm-up from 1/warmup_steps to 1 over `warmup_steps`, then cosine decay from 1 to
    `final_ratio` at `total_steps`, held there afterwards."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    return cosine_between((step - warmup_steps) / (total_steps - warmup_steps), 1.0, final_ratio)


def official_schedule(step: int, warmup_steps: int, hold_until: int, decay_end: int, final_ratio: float) -> float:
    """Official UNITE: step / warmup_steps during the warm-up (0 at the first step), 1 until `hold_until`,
    cosine from 1 to `final_ratio` at `decay_end`, `final_ratio` afterwards."""
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    if step < hold_until:
        return 1.0
    if step < decay_end:
        return cosine_between((step - hold_until) / (decay_end - hold_until), 1.0, final_ratio)
    return final_ratio


def lr_multiplier(schedule: dict, steps_per_epoch: int, max_steps: int) -> Callable[[int], float]:
    """The trainer.lr_schedule config as a function of the optimizer step (for LambdaLR).

    schedule: name, unit (steps | epochs: optimizer steps per pass over the training split), warmup,
    hold_until, decay_end (null = max_steps for warmup_cosine), final_ratio."""
    scale = steps_per_epoch if schedule["unit"] == "epochs" else 1

    def steps(key: str) -> int:
        return round(schedule[key] * scale)
    warmup = steps("warmup")
    if schedule["name"] == "warmup_cosine":
        end = max_steps if schedule["decay_end"] is None else steps("decay_end")
        return lambda step: warmup_cosine(step, warmup, end, schedule["final_ratio"])
    hold_until = steps("hold_until")
    decay_end = max(steps("decay_end"), hold_until)  # as the official code orders its stage ends
    return lambda step: official_schedule(step, warmup, hold_until, decay_end, schedule["final_ratio"])
