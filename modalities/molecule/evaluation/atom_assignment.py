"""Optimal atom correspondence within each element, for decoders whose atom order may not match the input.

Symmetry-equivalent atoms (the hydrogens of a methyl group) can get identical tokens; a decoder then cannot
know which of them is "atom i", and comparing atom i with atom i punishes a correct molecule whose equal
atoms come out in another order. Here each predicted atom is matched with a target atom of the same element:

    1. align the target onto the prediction (Kabsch, proper rotations) with the current correspondence;
    2. per element, the assignment minimising the summed squared distance (Hungarian algorithm,
       `scipy.optimize.linear_sum_assignment`);
    3. repeat 1-2 until the assignment stops changing (at most `max_rounds`; a few rounds in practice).

With many atoms out of order, the first alignment (given order) can be far off and 1-3 stops in a poor
local optimum; `frame_search=True` also starts from the four proper principal-axes alignments and keeps the
start with the lowest final cost. The assignment is a discrete choice: no gradient flows through it.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from modalities.molecule.evaluation.alignment import kabsch_rmsd, kabsch_rotation, masked_centred

_PROPER_SIGNS = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)  # det +1


def reorder(points: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """points[b, order[b, i]] at [b, i]: points [B, N, D], order [B, N] int64 -> [B, N, D] (differentiable)."""
    return torch.gather(points, 1, order.unsqueeze(-1).expand(-1, -1, points.shape[-1]))


def _principal_axes_rotations(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, 4, 3, 3] proper rotations R taking the target's principal axes onto the prediction's (t @ R ~ p),
    one per sign choice of the axes (an axis is only defined up to sign). Inputs centred and masked."""
    _, axes_p = torch.linalg.eigh(prediction.transpose(1, 2) @ prediction)  # columns: axes, ascending
    _, axes_t = torch.linalg.eigh(target.transpose(1, 2) @ target)
    # det(R) = det(axes_t) det(axes_p) prod(signs): flip all signs where the two bases differ in handedness
    orientation = torch.linalg.det(axes_p) * torch.linalg.det(axes_t)  # [B], +-1
    signs = _PROPER_SIGNS.to(prediction.device)[None] * orientation[:, None, None]  # [B, 4, 3]
    return axes_t[:, None] @ torch.diag_embed(signs) @ axes_p.transpose(1, 2)[:, None]


def _assign(prediction: np.ndarray, moved: np.ndarray, groups: list[list[np.ndarray]]) -> np.ndarray:
    """Per molecule and element group, the target atom each predicted atom takes. [M, N, 3] x2 -> [M, N]."""
    order = np.tile(np.arange(prediction.shape[1]), (prediction.shape[0], 1))
    for m, molecule_groups in enumerate(groups):
        for atoms in molecule_groups:  # only elements with two or more atoms: a lone atom has no choice
            cost = ((prediction[m][atoms][:, None] - moved[m][atoms][None]) ** 2).sum(-1)  # [k, k]
            rows, cols = linear_sum_assignment(cost)
            order[m, atoms[rows]] = atoms[cols]
    return order


def _element_groups(elements: np.ndarray, mask: np.ndarray) -> list[list[np.ndarray]]:
    groups = []
    for e, m in zip(elements, mask):
        values, counts = np.unique(e[m], return_counts=True)
        groups.append([np.flatnonzero(m & (e == v)) for v, c in zip(values, counts) if c > 1])
    return groups


@torch.no_grad()
def element_assignment(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                       elements: torch.Tensor, frame_search: bool = True, max_rounds: int = 10) -> torch.Tensor:
    """Order [B, N] int64 such that target atom order[b, i] is the one matched with predicted atom i.

    prediction, target: [B, N, 3] Å; mask [B, N] bool (padding keeps order[b, i] = i); elements [B, N] int:
    the element of slot i, shared by prediction and target (only atoms of equal element are exchanged).
    frame_search: also start from the principal-axes alignments (see the module doc).
    """
    if prediction.shape != target.shape or prediction.dim() != 3 or prediction.shape[-1] != 3:
        raise ValueError(f"element_assignment: prediction {tuple(prediction.shape)} and target "
                         f"{tuple(target.shape)} must both be [B, N, 3]")
    if mask.shape != prediction.shape[:2] or elements.shape != mask.shape:
        raise ValueError(f"element_assignment: mask {tuple(mask.shape)} and elements {tuple(elements.shape)} "
                         f"must be {tuple(prediction.shape[:2])}")
    m, e = mask.bool().cpu(), elements.cpu()
    p, t = masked_centred(prediction.detach().cpu().double(), m), masked_centred(target.detach().cpu().double(), m)
    b, n = m.shape
    starts = [kabsch_rotation(t, p, m)[:, None]]  # [B, 1, 3, 3], the given order
    if frame_search:
        starts.append(_principal_axes_rotations(p, t))
    rotation = torch.cat(starts, 1)  # [B, S, 3, 3]
    s = rotation.shape[1]
    p, t, m = p.repeat_interleave(s, 0), t.repeat_interleave(s, 0), m.repeat_interleave(s, 0)  # [B*S, ...]
    groups = [g for g in _element_groups(e.numpy(), mask.bool().cpu().numpy()) for _ in range(s)]
    rotation = rotation.reshape(b * s, 3, 3)
    order = None
    for _ in range(max_rounds):
        new = torch.from_numpy(_assign(p.numpy(), (t @ rotation).numpy(), groups))
        if order is not None and torch.equal(new, order):
            break
        order = new
        rotation = kabsch_rotation(reorder(t, order), p, m)
    cost = ((reorder(t, order) @ rotation - p) ** 2).sum((-1, -2)).reshape(b, s)
    return order.reshape(b, s, n)[torch.arange(b), cost.argmin(1)].to(elements.device)


def permutation_aware_rmsd(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                           elements: torch.Tensor, frame_search: bool = True) -> torch.Tensor:
    """Coordinate RMSD [B] (Å) after the optimal assignment within each element and Kabsch alignment.

    Shapes as `element_assignment`. Never above `kabsch_rmsd` in the given order: that order is the first
    start, and every round only lowers the cost."""
    order = element_assignment(prediction, target, mask, elements, frame_search)
    return kabsch_rmsd(prediction, reorder(target, order), mask)
