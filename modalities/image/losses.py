"""Image reconstruction loss: L1 on pixels + an optional perceptual (LPIPS) term.

UNITE uses L1 + LPIPS (weight 1.0). LPIPS needs pretrained VGG/AlexNet weights that cannot be
downloaded offline, so the perceptual term runs only when `perceptual_network` points at a local
TorchScript file; otherwise it is off, one warning says so, and every loss log carries
`perceptual_on` = 0 so a run's metrics record which loss it trained with.

Making the TorchScript file where the weights can be had (pip install lpips):
    import lpips, torch
    net = lpips.LPIPS(net="vgg").eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.jit.trace(net, (x, x)).save("lpips_vgg.pt")
The module must take two image batches [B, 3, H, W] in [-1, 1] and return per-image distances
([B] or [B, 1, 1, 1]).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


def l1_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel error on the [-1, 1] scale; scalar."""
    return (prediction.float() - target.float()).abs().mean()


class PerceptualDistance(nn.Module):
    """A frozen TorchScript perceptual metric (LPIPS) loaded from a local file; (x, y) -> [B]."""

    def __init__(self, path: str | Path):
        super().__init__()
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"modality.loss.perceptual_network={str(path)!r}: no such file. LPIPS weights cannot be downloaded "
                "here; give a TorchScript LPIPS module (see modalities/image/losses.py for how to make one) or "
                "set modality.loss.perceptual_network=null to train with L1 only")
        try:
            self.network = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as error:  # a file that is not TorchScript
            raise ValueError(f"modality.loss.perceptual_network={str(path)!r} is not a loadable TorchScript "
                             f"module: {error}") from error
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distance = self.network(prediction.float(), target.float())
        return distance.reshape(distance.shape[0], -1).mean(1)  # [B]


class ImageReconstructionLoss:
    """l1_weight * L1 + perceptual_weight * LPIPS (when a network file is given).

    Not an nn.Module on purpose: the perceptual network is frozen, must not enter the recipe's
    state_dict or optimiser, and moves to the batch's device on first use.
    """

    def __init__(self, l1_weight: float, perceptual_weight: float, perceptual_network: str | None):
        self.l1_weight = l1_weight
        self.perceptual_weight = perceptual_weight
        self.perceptual = None
        if perceptual_network is not None and perceptual_weight > 0:
            self.perceptual = PerceptualDistance(perceptual_network)
        else:
            reason = ("modality.loss.perceptual_network is null" if perceptual_weight > 0
                      else "modality.loss.perceptual_weight is 0")
            log.warning(f"image modality: perceptual (LPIPS) loss is OFF ({reason}); training with L1 only "
                        "(UNITE uses L1 + LPIPS). Results must say so.")

    @property
    def perceptual_on(self) -> bool:
        return self.perceptual is not None

    def describe(self) -> str:
        """One line for summaries: which terms the loss has."""
        if self.perceptual_on:
            return f"{self.l1_weight}*L1 + {self.perceptual_weight}*LPIPS"
        return f"{self.l1_weight}*L1 (perceptual off)"

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """prediction, target: [B, C, H, W] on [-1, 1] -> (scalar loss, named parts)."""
        l1 = l1_loss(prediction, target)
        loss = self.l1_weight * l1
        parts = {"l1": l1.detach(), "perceptual_on": torch.tensor(float(self.perceptual_on))}
        if self.perceptual is not None:
            self.perceptual.to(prediction.device)
            perceptual = self.perceptual(prediction, target).mean()
            loss = loss + self.perceptual_weight * perceptual
            parts["perceptual"] = perceptual.detach()
        return loss, parts
