"""A network's parameters by role, for the description-length proxy (the paper: the tokenize and denoise
passes share their weights and differ mainly in their normalisation, i.e. in how the condition modulates it):

    normalisation   scales/shifts of LayerNorm and RMSNorm modules (QK-norm, the latent LayerNorm)
    modulation      the adaLN layers that turn the condition (t, class) into per-pass shifts, scales and gates
    conditioning    the timestep and class embedders that make the condition
    attention       qkv and output projections
    mlp             the SwiGLU layers of the blocks
    other           input projections, the output head, in-context class tokens
"""
from __future__ import annotations

import torch
import torch.nn as nn

from core.analysis.spectra import histogram_entropy_bits

ROLES = ("normalisation", "modulation", "conditioning", "attention", "mlp", "other")
EMBEDDERS = ("t_embedder", "y_embedder")


def parameter_role(owner: nn.Module, name: str) -> str:
    """The role (in ROLES) of parameter `name` (as named_parameters spells it) whose own module is `owner`."""
    parts = name.split(".")
    if isinstance(owner, (nn.LayerNorm, nn.RMSNorm)):
        return "normalisation"
    if "adaLN_modulation" in parts:
        return "modulation"
    if any(part in EMBEDDERS for part in parts):
        return "conditioning"
    if "attn" in parts:
        return "attention"
    if "mlp" in parts:
        return "mlp"
    return "other"


def parameter_roles(module: nn.Module) -> dict[str, str]:
    """Parameter name (as in named_parameters) -> its role in ROLES."""
    roles = {}
    for module_name, child in module.named_modules():
        for name, _ in child.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            roles[full] = parameter_role(child, full)
    return roles


def weight_entropy_rows(trained: nn.Module, initial: nn.Module, bins: int = 256) -> list[dict]:
    """One row per parameter tensor of `trained`: name, role, numel, entropy (bits per parameter) of the
    trained and the initial tensor (`initial`: the same architecture at its initial weights), and the
    relative change ||W - W0|| / ||W0|| (inf where W0 = 0)."""
    roles = parameter_roles(trained)
    start = dict(initial.named_parameters())
    rows = []
    for name, weight in trained.named_parameters():
        if name not in start or start[name].shape != weight.shape:
            raise ValueError(f"weight_entropy_rows: the initial model has no parameter {name!r} of shape "
                             f"{tuple(weight.shape)}; rebuild it from the same config")
        w, w0 = weight.detach().double(), start[name].detach().double()
        base = float(w0.norm())
        change = float((w - w0).norm()) / base if base > 0 else float("inf")
        rows.append({"name": name, "role": roles[name], "numel": weight.numel(),
                     "entropy_trained_bits": histogram_entropy_bits(w, bins),
                     "entropy_initial_bits": histogram_entropy_bits(w0, bins), "relative_change": change})
    return rows


def role_summary(rows: list[dict]) -> list[dict]:
    """Per role present in `rows`: tensors, parameters, parameter-weighted mean entropy trained and initial
    (bits per parameter), their difference, and the median relative change of its tensors."""
    summary = []
    for role in ROLES:
        chosen = [r for r in rows if r["role"] == role]
        if not chosen:
            continue
        count = sum(r["numel"] for r in chosen)
        trained = sum(r["entropy_trained_bits"] * r["numel"] for r in chosen) / count
        initial = sum(r["entropy_initial_bits"] * r["numel"] for r in chosen) / count
        changes = torch.tensor([r["relative_change"] for r in chosen], dtype=torch.float64)
        summary.append({"role": role, "tensors": len(chosen), "parameters": count, "entropy_trained_bits": trained,
                        "entropy_initial_bits": initial, "entropy_change_bits": trained - initial,
                        "median_relative_change": float(changes.median())})
    return summary
