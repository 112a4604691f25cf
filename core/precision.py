"""Which number format a step computes in, chosen from the hardware (trainer.precision).

    auto   bf16 autocast on CUDA GPUs with native bf16, float32 on CPUs (with or without native bf16:
           measured, see auto_choice)
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


def auto_choice(device: torch.device) -> tuple[torch.dtype, str]:
    """What trainer.precision=auto computes in on `device`, and why (one line for the run's log).

    Decided by measurement (`python -m benchmarks.run precision`, benchmarks/results/precision/): on an
    Intel Xeon with AMX-BF16 the CPU default image step ran 0.71x as fast in bf16 and the molecule steps
    1.13-1.14x, within the noise of a shared machine (issue 19 measured the default molecule run slower in bf16
    there); casts, norms and elementwise work dominate these small models. So CPUs stay in float32 and
    `trainer.precision=bf16` is the switch for a large model on an AMX CPU; CUDA GPUs with bf16 use it."""
    if device.type == "cuda":
        if device_has_native_bf16(device):
            return torch.bfloat16, "a CUDA GPU with native bf16"
        return torch.float32, "a CUDA GPU without native bf16"
    if device.type == "cpu" and cpu_has_native_bf16():
        native = ", ".join(sorted(cpu_flags() & NATIVE_BF16_CPU_FLAGS))
        return torch.float32, (f"a CPU: with native bf16 ({native}) bf16 autocast measured at most 1.14x faster than "
                               f"float32 on the CPU presets and 1.4x slower on one (benchmarks/results/precision/); "
                               f"trainer.precision=bf16 forces it")
    return torch.float32, f"a {device.type.upper()} without native bf16"


def auto_reason(device: torch.device) -> str:
    return auto_choice(device)[1]


def compute_dtype(device: torch.device, precision: str) -> torch.dtype:
    """The autocast dtype of a step on `device` under trainer.precision (float32 = no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision={precision!r}: choose one of {PRECISIONS}")
    if precision == "auto":
        return auto_choice(device)[0]
    return torch.bfloat16 if precision == "bf16" else torch.float32


def float32_region(device: torch.device | str):
    """A region that autocast leaves alone: inside it every op computes in its inputs' dtype (float32).

    The rule, applied where the code says so: what autocast does not cover, or what carries physical
    units at a resolution bf16 cannot hold, runs here on float32 inputs. bf16 keeps 8 significant bits:
    a 3 Å coordinate is resolved to 0.016 Å, coarser than the 0.04 Å the tokenizer reconstructs, and
    e3nn's tensor products mix bf16 activations with float32 weights and fail. So these run in float32:
      - a modality's geometry in and out (the e3nn encoder, coordinate features, the position head);
      - the GE's latent head and LayerNorm (z, the targets and the ODE state share one float32 scale);
      - every loss, alignment and metric (casts of their inputs inside them).
    Matrix products of the transformers stay under autocast: they are where bf16 pays."""
    kind = torch.device(device).type
    if kind not in ("cuda", "cpu"):
        return nullcontext()
    return torch.autocast(kind, enabled=False)


def widened_dtype(dtype: torch.dtype) -> torch.dtype:
    """bf16/fp16 -> float32; float32 and float64 (the parity tests) unchanged."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def widened(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor in `widened_dtype` of its dtype; integer tensors unchanged."""
    return tensor.to(widened_dtype(tensor.dtype))


def autocast_for(device: torch.device, precision: str):
    """The autocast context of a training or sampling forward pass (a null context for float32)."""
    dtype = compute_dtype(device, precision)
    if dtype == torch.float32 or device.type not in ("cuda", "cpu"):
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
