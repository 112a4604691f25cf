"""The atom-count prior for generation: the training split's histogram of molecule sizes."""
from __future__ import annotations

import torch
import torch.nn as nn


class AtomCountPrior(nn.Module):
    """Histogram [max_atoms + 1] of training atom counts, kept as a buffer so checkpoints carry it."""

    def __init__(self, histogram: torch.Tensor):
        super().__init__()
        histogram = torch.as_tensor(histogram, dtype=torch.float64)
        if histogram.dim() != 1 or histogram.sum() <= 0 or bool((histogram < 0).any()):
            raise ValueError("atom_count_histogram must be a 1-D tensor of non-negative counts with a positive sum")
        self.register_buffer("histogram", histogram)

    @property
    def max_atoms(self) -> int:
        return self.histogram.numel() - 1

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.histogram.float().cpu(), num_samples, replacement=True, generator=generator)

    def generation_mask(self, num_samples: int, device, generator=None) -> torch.Tensor:
        """[num_samples, N] bool: one latent slot per drawn atom, padded to the largest drawn count."""
        counts = self.sample(num_samples, generator).to(device)
        return torch.arange(int(counts.max()), device=device)[None, :] < counts[:, None]
