"""Molecule reconstruction loss: element cross-entropy + rigid-motion-invariant coordinate losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modalities.molecule.evaluation.reconstruction_metrics import kabsch_align
from modalities.molecule.evaluation.atom_assignment import element_assignment, reorder


def permutation_aware_coordinate_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                                     elements: torch.Tensor, frame_search: bool = False) -> torch.Tensor:
    """`aligned_coordinate_mse` (Å²) after re-ordering the target's atoms within each element to fit the
    prediction best (`element_assignment`: align, assign, re-align), so that equal atoms decoded in another
    order are not punished. prediction, target [B, N, 3] Å, mask [B, N] bool, elements [B, N] int (the target
    element of each slot). The order is chosen without gradient. frame_search off by default: a decoder
    answering in the input frame is close to the target, where the given order's alignment is a good start."""
    order = element_assignment(prediction, target, mask, elements, frame_search)
    return aligned_coordinate_mse(prediction, reorder(target, order), mask)


def element_cross_entropy(logits: torch.Tensor, elements: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean CE over real atoms.  logits [B, N, K], elements [B, N] int, mask [B, N] bool."""
    return F.cross_entropy(logits[mask], elements[mask])


def aligned_coordinate_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared distance (Å²) per atom after aligning the target onto the prediction; zero for any
    rotated and translated copy of the target."""
    moved = kabsch_align(target, prediction, mask)
    return (((prediction - moved) ** 2).sum(-1))[mask].mean()


def pairwise_distance_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error (Å²) of all interatomic distances within each molecule (pairs i != j)."""
    pair = mask[:, :, None] & mask[:, None, :]
    pair &= ~torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    return ((_distances(prediction) - _distances(target)) ** 2)[pair].mean()


def _distances(points: torch.Tensor) -> torch.Tensor:
    """[B, N, 3] -> [B, N, N]; the epsilon keeps the gradient finite where two points coincide."""
    diff = points[:, :, None, :] - points[:, None, :, :]
    return (diff.pow(2).sum(-1) + 1e-12).sqrt()
