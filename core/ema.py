"""Exponential moving average of a model's parameters (and a copy of its buffers)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA(nn.Module):
    """Holds `shadow`, a frozen copy of the model whose parameters track p_ema <- d p_ema + (1 - d) p."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"trainer.ema_decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay of the update that ends optimizer step `step` (1, 2, ...). With warm-up it is
        min(decay, (1 + step) / (10 + step)), as TensorFlow's ExponentialMovingAverage with num_updates: the
        initial weights' share after n steps falls like 10 / (10 + n) instead of decay^n (0.999^1584 = 20 %;
        benchmarks/results/qm9_cpu_long). Without it, the plain decay (official UNITE)."""
        if step < 1:
            raise ValueError(f"EMA step must be >= 1 (the optimizer step just taken), got {step}")
        return min(self.decay, (1.0 + step) / (10.0 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """After optimizer step `step` (1-based): p_ema <- d p_ema + (1 - d) p with d = decay_at(step)."""
        ema_params = list(self.shadow.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay_at(step))
        copy_buffers(model, self.shadow)


@torch.no_grad()
def copy_buffers(source: nn.Module, target: nn.Module) -> None:
    """target's buffers take source's values, matched by name.

    By name, not by position: deepcopy of e3nn's generated tensor-product modules re-lifts their
    Wigner-3j constants under other names (and more of them), which shifted every later buffer.
    Buffers only one side has are such constants; nothing to copy."""
    target_buffers = dict(target.named_buffers())
    for name, buffer in source.named_buffers():
        if name in target_buffers:
            target_buffers[name].copy_(buffer)
