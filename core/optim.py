"""Optimisers: AdamW for everything, or Muon for 2-D weights + AdamW for the rest (UNITE Table 8).

Which 2-D weights stay on AdamW under Muon (trainer.muon_split), by parameter-name parts:
    official   the patch embedding and the GE's final layer (official UNITE `get_learnable_params`;
               its in-context positions and latent tokens are 3-D there, as ours are)
    io_adamw   also every input/output map, label/time table, latent slot and token (the usual advice
               for Muon: only hidden matrices on Muon)

Speed: AdamW is torch's fused kernel where the device has one (one pass over all tensors instead of a
loop of small kernels); Muon's Newton–Schulz runs in the dtype `muon_ns_dtype` names (core/muon.py;
'auto' = bf16 only on hardware with native bf16). Both are measured and tested against the plain path
(benchmarks/hot_paths.py, tests/core/test_optim.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from core.muon import Muon

ADAMW_NAME_PARTS = {
    "official": ("patch_embed", "final_layer"),
    "io_adamw": ("embed", "final_layer", "in_context_pos", "latent_in", "slot", "head", "table", "cls_token",
                 "to_tokens", "to_latent_hints"),
}
MUON_SPLITS = tuple(ADAMW_NAME_PARTS)
KERNEL_CHOICES = ("fused", "foreach")


def muon_eligible(name: str, parameter: torch.Tensor, split: str) -> bool:
    if split not in ADAMW_NAME_PARTS:
        raise ValueError(f"trainer.muon_split={split!r}: choose one of {MUON_SPLITS}")
    return parameter.dim() == 2 and not any(part in name for part in ADAMW_NAME_PARTS[split])


class OptimizerSet:
    """Several optimisers stepped together; state_dict/load_state_dict keep them in order."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> list[dict]:
        return [optimizer.state_dict() for optimizer in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        if len(states) != len(self.optimizers):
            raise ValueError(f"checkpoint holds {len(states)} optimiser states, this run has {len(self.optimizers)}")
        for optimizer, state in zip(self.optimizers, states):
            # the kernel choice is this run's (a checkpoint carries the one of the run that wrote it)
            kernels = [{k: g[k] for k in KERNEL_CHOICES if k in g} for g in optimizer.param_groups]
            optimizer.load_state_dict(state)
            for group, chosen in zip(optimizer.param_groups, kernels):
                group.update(chosen)


def adamw(params: list[torch.Tensor], lr: float, betas, eps: float, weight_decay: float,
          fused: bool) -> torch.optim.AdamW:
    """torch's AdamW; fused=True takes the fused kernel where every tensor's device has one."""
    use_fused = fused and bool(params) and all(p.device.type in ("cuda", "cpu") and p.is_floating_point()
                                               for p in params)
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                             fused=use_fused or None)


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float, muon_momentum: float, muon_split: str, fused_adamw: bool = True,
                    muon_ns_dtype: str = "auto") -> OptimizerSet:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if name == "adamw":
        return OptimizerSet([adamw([p for _, p in trainable], lr, betas, eps, weight_decay, fused_adamw)])
    if name == "muon":
        matrices = [p for n, p in trainable if muon_eligible(n, p, muon_split)]
        rest = [p for n, p in trainable if not muon_eligible(n, p, muon_split)]
        muon = Muon(matrices, lr=lr, weight_decay=weight_decay, momentum=muon_momentum, nesterov=True, ns_steps=5,
                    eps=eps, adjust_lr_fn="match_rms_adamw", ns_dtype=muon_ns_dtype)
        return OptimizerSet([muon, adamw(rest, lr, betas, eps, weight_decay, fused_adamw)])
    raise ValueError(f"trainer.optimizer={name!r}: choose 'adamw' or 'muon'")
