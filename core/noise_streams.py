"""Per-sample random streams for training: the noise a sample receives in a step is a function of
(seed, step, the sample's position in the step's global batch) only.

So a step draws the same numbers whether its global batch runs in one process, is split over W processes
(torchrun) or accumulated over micro-batches: the runs agree to float rounding, and a resumed run needs
no generator state for them. Positions follow `ResumableSampler`'s sharding: item i of rank r's share is
item W i + r of the epoch's order.
"""
from __future__ import annotations

import numpy as np


def global_positions(world_size: int, rank: int, micro_index: int, micro_batch: int) -> list[int]:
    """Positions in the step's global batch of the `micro_batch` items that rank `rank` holds in its
    `micro_index`-th micro-batch of the step (0-based)."""
    first = micro_index * micro_batch
    return [world_size * (first + k) + rank for k in range(micro_batch)]


def stream_seeds(seed: int, step: int, positions: list[int]) -> list[int]:
    """One 63-bit generator seed per position (numpy SeedSequence: distinct inputs, independent streams)."""
    return [int(np.random.SeedSequence([seed, step, position]).generate_state(1, np.uint64)[0] >> np.uint64(1))
            for position in positions]
