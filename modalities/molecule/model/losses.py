"""Molecule reconstruction losses: element cross-entropy, coordinate errors (in the input frame, or after
optimal alignment) and interatomic-distance errors (all pairs, or the bonded range only)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.precision import float32_region, widened
from modalities.molecule.evaluation.atom_assignment import element_assignment, reorder
from modalities.molecule.evaluation.alignment import kabsch_align, masked_centred


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


def centred_coordinate_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared distance (Å²) per atom after moving each molecule's centroid to the origin, with no
    rotation: the decoder must answer in the input frame (frame-carrying tokens). prediction, target
    [B, N, 3] Å, mask [B, N] bool."""
    return (((masked_centred(prediction, mask) - masked_centred(target, mask)) ** 2).sum(-1))[mask].mean()


def aligned_coordinate_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared distance (Å²) per atom after aligning the target onto the prediction; zero for any
    rotated and translated copy of the target."""
    moved = kabsch_align(target, prediction, mask)
    return (((prediction - moved) ** 2).sum(-1))[mask].mean()


def pairwise_distance_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                          cutoff: float | None = None) -> torch.Tensor:
    """Mean squared error (Å²) of interatomic distances within each molecule (pairs i != j).

    cutoff: only pairs closer than this in the target (Å), e.g. 2.0 keeps the bonded range (QM9's longest
    bond, C-C, is about 1.6 Å); None keeps every pair."""
    pair = mask[:, :, None] & mask[:, None, :]
    pair &= ~torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    target_distances = _distances(target)
    if cutoff is not None:
        pair &= target_distances < cutoff
    return ((_distances(prediction) - target_distances) ** 2)[pair].mean()


def _distances(points: torch.Tensor) -> torch.Tensor:
    """[B, N, 3] -> [B, N, N]; the epsilon keeps the gradient finite where two points coincide."""
    diff = points[:, :, None, :] - points[:, None, :, :]
    return (diff.pow(2).sum(-1) + 1e-12).sqrt()


COORDINATE_FRAMES = ("input", "aligned", "permutation")


@dataclass(frozen=True)
class ReconstructionLoss:
    """L_rec = element CE + coordinate MSE + distance MSE over all pairs + distance MSE over short pairs.

    coordinate_frame: "input" compares centred coordinates in the input frame (tokens that carry the frame);
    "aligned" first aligns the target onto the prediction (Kabsch), for tokens that are rotation-invariant;
    "permutation" also re-orders equal-element target atoms to fit best (invariant tokens give symmetric
    atoms identical tokens, so their order is arbitrary).
    Every weighted term is in Å² (the CE in nats)."""

    element_weight: float
    coordinate_weight: float
    coordinate_frame: str
    distance_weight: float
    short_distance_weight: float
    short_distance_cutoff: float

    def __post_init__(self):
        if self.coordinate_frame not in COORDINATE_FRAMES:
            raise ValueError(f"modality.loss.coordinate_frame={self.coordinate_frame!r}: choose one of "
                             f"{COORDINATE_FRAMES}")
        if self.short_distance_cutoff <= 0:
            raise ValueError(f"modality.loss.short_distance_cutoff={self.short_distance_cutoff} must be > 0 Å")

    def __call__(self, element_logits: torch.Tensor, predicted_positions: torch.Tensor, elements: torch.Tensor,
                 positions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """element_logits [B, N, K], predicted_positions and positions [B, N, 3] Å, elements [B, N], mask [B, N].
        Computed in float32 whatever autocast is on (core/precision.py)."""
        with float32_region(positions.device):
            return self._terms(widened(element_logits), widened(predicted_positions), elements,
                               widened(positions), mask)

    def _terms(self, element_logits, predicted_positions, elements, positions, mask):
        parts = {"element_ce": element_cross_entropy(element_logits, elements, mask)}
        if self.coordinate_frame == "permutation":  # every coordinate term sees the re-ordered target
            positions = reorder(positions, element_assignment(predicted_positions, positions, mask, elements,
                                                              frame_search=False))
        if self.coordinate_frame == "input":
            parts["coordinate_mse"] = centred_coordinate_mse(predicted_positions, positions, mask)
        else:
            parts["coordinate_mse"] = aligned_coordinate_mse(predicted_positions, positions, mask)
        weights = {"element_ce": self.element_weight, "coordinate_mse": self.coordinate_weight}
        if self.distance_weight:
            parts["distance_mse"] = pairwise_distance_mse(predicted_positions, positions, mask)
            weights["distance_mse"] = self.distance_weight
        if self.short_distance_weight:
            parts["short_distance_mse"] = pairwise_distance_mse(predicted_positions, positions, mask,
                                                                self.short_distance_cutoff)
            weights["short_distance_mse"] = self.short_distance_weight
        loss = sum(weights[name] * value for name, value in parts.items())
        return loss, parts
