"""Padded token batches run packed: the token-wise layers see only the real tokens (trainer.packing).

A batch of sets of different sizes (molecules) is padded to its largest member; every token-wise layer
(projections, MLP, norms, modulation) then also computes the padding. Packed, the T real tokens are laid
end to end ([1, T, D]) and attention is done in one of two ways:

    tokens          attention on the padded layout: q, k, v are scattered back to [B, N, .] around the
                    attention call (key-padding mask as usual), everything else stays packed
    block_diagonal  attention over the one packed sequence with a block-diagonal mask (a token attends to
                    its own sample only): T x T scores instead of B x N x N, mostly masked out

Both give the padded path's outputs on every real token (tests/core/test_fast_paths.py);
`python -m benchmarks.run hot_paths --paths packing` measures them against padding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

PACKING_MODES = ("none", "tokens", "block_diagonal")
PACKING_CHOICES = ("auto", *PACKING_MODES)  # trainer.packing


@dataclass
class PackedTokens:
    """mask [B, N] bool of a padded batch -> its T real tokens in order (sample by sample)."""

    mask: torch.Tensor
    sample: torch.Tensor                 # [T] the sample each packed token belongs to
    mode: str                            # 'tokens' | 'block_diagonal'
    block_diagonal: torch.Tensor | None  # [1, 1, T, T] bool, True = same sample (block_diagonal mode)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, ...] (or [1, N, ...], shared by every sample) -> [1, T, ...]."""
        return x.expand(self.mask.shape[0], *x.shape[1:])[self.mask].unsqueeze(0)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """[1, T, ...] -> [B, N, ...], zeros at the padded positions."""
        out = x.new_zeros(*self.mask.shape, *x.shape[2:])
        out[self.mask] = x[0]
        return out

    def per_token(self, values: torch.Tensor) -> torch.Tensor:
        """Per-sample values [B, ...] -> [1, T, ...] (each token gets its sample's)."""
        return values[self.sample].unsqueeze(0)

    def pack_rotary(self, rotary: tuple[torch.Tensor, torch.Tensor] | None):
        """Tables [B or 1, 1, N, d] -> [1, 1, T, d] where attention runs packed; unchanged otherwise."""
        if rotary is None or self.mode == "tokens":
            return rotary
        return tuple(self.pack(table[:, 0]).unsqueeze(1) for table in rotary)


def pack_tokens(mask: torch.Tensor, mode: str) -> PackedTokens:
    if mode not in PACKING_MODES[1:]:
        raise ValueError(f"packing mode {mode!r}: choose one of {PACKING_MODES[1:]}")
    sample = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)[mask]  # [T]
    diagonal = (sample[:, None] == sample[None, :])[None, None] if mode == "block_diagonal" else None
    return PackedTokens(mask, sample, mode, diagonal)


def auto_packing(device: torch.device, model: nn.Module) -> tuple[str, str]:
    """(mode, why) for trainer.packing=auto: 'tokens' on CPUs, measured 1.16x faster per default molecule step
    with the same loss (benchmarks/results/hot_paths_packing.md); 'none' on GPUs (not measured yet) and for a
    model with in-context class tokens (packing does not support them). Unpadded batches (images) never pack."""
    if device.type != "cpu":
        return "none", f"not measured on {device.type} yet"
    if any(getattr(module, "in_context_tokens", 0) for module in model.modules()):
        return "none", "the model has in-context class tokens, which packing does not support"
    return "tokens", "a CPU: padded molecule batches ran 1.16x faster packed, same loss"


def resolve_packing(requested: str, device: torch.device, model: nn.Module) -> tuple[str, str]:
    """trainer.packing -> (the mode to set, why auto picked it; '' for an explicit mode)."""
    return auto_packing(device, model) if requested == "auto" else (requested, "")


def set_packing(model: nn.Module, mode: str) -> int:
    """Set the packing mode of every module of `model` that has one; returns how many."""
    if mode not in PACKING_MODES:
        raise ValueError(f"trainer.packing={mode!r}: choose one of {PACKING_MODES}")
    switched = 0
    for module in model.modules():
        if hasattr(module, "packing"):
            module.packing = mode
            switched += 1
    return switched
