"""Which number format a step computes in, chosen from the hardware (trainer.precision).

    auto   bf16 autocast where the hardware multiplies bf16 natively (CUDA GPUs with bf16; x86 CPUs with
           AVX512-BF16 or AMX-BF16; Arm CPUs with the BF16 extension), float32 elsewhere
    bf16   bf16 autocast on any device (on a CPU without native bf16 it is emulated and slower than fp32)
    fp32   no autocast

Why not always bf16: on an AVX2 CPU (no bf16 instructions) a bf16 matrix product is emulated through
float32 conversions and runs several times slower than float32; on an AVX512-BF16 CPU a bf16-autocast step
ran 1.6x faster than float32 (issue 13). The CPU's flags are read from /proc/cpuinfo, never assumed.
"""
from __future__ import annotations

import functools
import platform
from contextlib import nullcontext
from pathlib import Path

import torch

PRECISIONS = ("auto", "bf16", "fp32")
# /proc/cpuinfo flags that mean native bf16 arithmetic: x86 (flags) and Arm (Features).
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`) from /proc/cpuinfo; empty where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    return bool((cpu_flags() if flags is None else flags) & NATIVE_BF16_CPU_FLAGS)


def device_has_native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def compute_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The autocast dtype of a step on `device` under trainer.precision (float32 = no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision={precision!r}: choose one of {PRECISIONS}")
    if precision == "bf16" or (precision == "auto" and device_has_native_bf16(device)):
        return torch.bfloat16
    return torch.float32


def autocast_for(device: torch.device, precision: str):
    """The autocast context of a training or sampling forward pass (a null context for float32)."""
    dtype = compute_dtype(device, precision)
    if dtype == torch.float32 or device.type not in ("cuda", "cpu"):
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
