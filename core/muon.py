"""Muon (torch.optim.Muon's update) with the Newton–Schulz iteration in a chosen dtype, batched by shape.

torch.optim.Muon orthogonalises every update in bfloat16. On hardware without native bf16 (an AVX2 CPU)
those products are emulated and the iteration cost ~90 % of a tiny UNITE step (issue 13); there it runs in
float32 here. Matrices of one shape (every block's qkv, every MLP...) are orthogonalised together in one
batched product per iteration, which removes the per-matrix loop. Momentum buffers and learning-rate
adjustment are torch's, so a state dict moves between this class and torch.optim.Muon.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor
from torch.optim._muon import _adjust_lr

from core.precision import device_has_native_bf16

NS_DTYPES = ("auto", "bf16", "fp32")


def resolve_ns_dtype(ns_dtype: str, device: torch.device) -> torch.dtype:
    """auto: bfloat16 where `device` multiplies bf16 natively (as torch.optim.Muon always does), else float32."""
    if ns_dtype not in NS_DTYPES:
        raise ValueError(f"trainer.muon_ns_dtype={ns_dtype!r}: choose one of {NS_DTYPES}")
    if ns_dtype == "bf16" or (ns_dtype == "auto" and device_has_native_bf16(device)):
        return torch.bfloat16
    return torch.float32


def newton_schulz(updates: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype) -> Tensor:
    """Quintic Newton–Schulz orthogonalisation of a stack of matrices [G, m, n] with m <= n (torch's
    iteration, batched): X <- X / max(|X|_F, eps); then X <- a X + (b A + c A²) X with A = X Xᵀ."""
    a, b, c = coefficients
    x = updates.to(dtype)
    x = x / torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = torch.bmm(x, x.transpose(1, 2))
        polynomial = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, polynomial, x, beta=a)
    return x


class Muon(torch.optim.Muon):
    """torch.optim.Muon with `ns_dtype` ('auto' | 'bf16' | 'fp32') for the Newton–Schulz iteration."""

    def __init__(self, params, *, ns_dtype: str = "auto", **kwargs):
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype
        resolve_ns_dtype(ns_dtype, torch.device("cpu"))  # an unknown name fails here, not at the first step

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, buffers = [], [], []
            self._init_group(group, params, grads, buffers)
            if not params:
                continue
            momentum, lr, decay = group["momentum"], group["lr"], group["weight_decay"]
            torch._foreach_lerp_(buffers, grads, 1 - momentum)
            updates = torch._foreach_lerp(grads, buffers, momentum) if group["nesterov"] else buffers
            if decay:
                torch._foreach_mul_(params, 1 - lr * decay)
            dtype = resolve_ns_dtype(self.ns_dtype, params[0].device)
            by_shape: dict[tuple, list[int]] = defaultdict(list)
            for index, p in enumerate(params):
                by_shape[(tuple(p.shape), p.device, p.dtype)].append(index)
            for (shape, _, _), indices in by_shape.items():
                tall = shape[0] > shape[1]  # iterate on the wide orientation, as torch does
                stack = torch.stack([updates[i].mT if tall else updates[i] for i in indices])
                ortho = newton_schulz(stack, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
                if tall:
                    ortho = ortho.mT
                step_size = _adjust_lr(lr, group["adjust_lr_fn"], torch.Size(shape))
                torch._foreach_add_([params[i] for i in indices], list(ortho.unbind(0)), alpha=-step_size)
        return loss
