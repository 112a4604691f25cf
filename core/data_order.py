"""A resumable, shardable sampler: the order of epoch e is a pure function of (seed, e).

Resuming at (epoch, position) replays exactly the batches an uninterrupted run would have seen, which
`torch.utils.data.RandomSampler` cannot do without replaying its generator.
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, num_items: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1):
        if num_items < world_size:
            raise ValueError(f"dataset of {num_items} items is smaller than the {world_size} processes")
        self.num_items, self.seed, self.shuffle = num_items, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0  # items of this rank's share already consumed in `epoch`

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def epoch_order(self, epoch: int) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.num_items, generator=generator)
        else:
            order = torch.arange(self.num_items)
        usable = self.num_items - self.num_items % self.world_size  # equal shares for every rank
        return order[:usable][self.rank::self.world_size]

    def __len__(self) -> int:
        return self.num_items // self.world_size - self.start

    def __iter__(self):
        return iter(self.epoch_order(self.epoch)[self.start:].tolist())
