"""Learning-rate multiplier as a pure function of the step."""
from __future__ import annotations

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, final_ratio: float) -> float:
    """Linear warm-up from 0 to 1 over `warmup_steps`, then cosine decay from 1 to `final_ratio` at
    `total_steps`, held there afterwards (official UNITE decays to 0.5 and holds)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
