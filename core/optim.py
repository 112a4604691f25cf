"""Optimisers: AdamW for everything, or Muon for hidden 2-D weights + AdamW for the rest (UNITE Table 8)."""
from __future__ import annotations

import torch
import torch.nn as nn

# Parameters that stay on AdamW under Muon: input/output maps and learned tokens (official UNITE split).
ADAMW_ONLY_NAME_PARTS = ("embed", "final_layer", "in_context_pos", "latent_in", "slot", "head", "table",
                         "mask_token", "to_tokens", "to_latent_hints")


def muon_eligible(name: str, parameter: torch.Tensor) -> bool:
    return parameter.dim() == 2 and not any(part in name for part in ADAMW_ONLY_NAME_PARTS)


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
            optimizer.load_state_dict(state)


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float, muon_momentum: float) -> OptimizerSet:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if name == "adamw":
        return OptimizerSet([torch.optim.AdamW([p for _, p in trainable], lr=lr, betas=tuple(betas), eps=eps,
                                               weight_decay=weight_decay)])
    if name == "muon":
        matrices = [p for n, p in trainable if muon_eligible(n, p)]
        rest = [p for n, p in trainable if not muon_eligible(n, p)]
        muon = torch.optim.Muon(matrices, lr=lr, weight_decay=weight_decay, momentum=muon_momentum,
                                nesterov=True, ns_steps=5, adjust_lr_fn="match_rms_adamw")
        adamw = torch.optim.AdamW(rest, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        return OptimizerSet([muon, adamw])
    raise ValueError(f"trainer.optimizer={name!r}: choose 'adamw' or 'muon'")
