"""Reconstruction metrics: atom-type accuracy, coordinate RMSD after optimal (Kabsch) alignment, match rates.

Atom i of the prediction is compared with atom i of the target (the decoder's latent slot i belongs to
atom i) for RMSD; `atom_assignment` has the permutation-aware RMSD. Two match protocols, each named:
    inchi_openbabel  same InChI after OpenBabel bond perception (`inchi.py`): the published protocol (ADiT,
                     via pymatgen's MoleculeMatcher); order-free, lenient about bond lengths;
    edm_smiles       same canonical SMILES with 3-D stereo after EDM's bond table: strict, a bond length off
                     by more than the table's 3-10 pm margins changes the bond order and breaks the match.

The Kabsch functions are batched, masked and differentiable, and the training loss imports them.
"""
from __future__ import annotations

import numpy as np
import torch

from modalities.molecule.evaluation.bond_perception import perceive
from modalities.molecule.evaluation.chemistry_metrics import canonical_smiles, largest_fragment
from modalities.molecule.evaluation.inchi import inchi_match

MATCH_PROTOCOLS = ("inchi_openbabel", "edm_smiles")


def _batched(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None):
    """Bring [N, 3] inputs to [1, N, 3] and fill a missing mask; check shapes."""
    single = pred.dim() == 2
    if single:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if pred.shape != target.shape or pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"kabsch: pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be "
                         "[N, 3] or [B, N, 3]")
    if mask is None:
        mask = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"kabsch: mask {tuple(mask.shape)} must be {tuple(pred.shape[:2])}")
    return pred, target, mask.bool(), single


def masked_centred(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """points [B, N, 3] minus each molecule's centroid over its real atoms; padded rows (mask False) -> 0."""
    w = mask.to(points.dtype).unsqueeze(-1)
    return (points - (w * points).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)) * w


def kabsch_rotation(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Proper rotation R [B, 3, 3] minimising sum_i |(p_i - p̄) R - (t_i - t̄)|² over masked atoms.

    pred, target [B, N, 3] (Å), mask [B, N] bool. det(R) = +1 always: a mirror image is never
    "aligned" by a reflection. Computed in float64 without gradient (see `kabsch_align`).
    """
    with torch.no_grad():
        w = mask.to(torch.float64).unsqueeze(-1)  # [B, N, 1]
        n = w.sum(1, keepdim=True).clamp_min(1.0)  # [B, 1, 1]
        p = pred.detach().to(torch.float64)
        t = target.detach().to(torch.float64)
        p = (p - (w * p).sum(1, keepdim=True) / n) * w
        t = (t - (w * t).sum(1, keepdim=True) / n) * w
        h = p.transpose(1, 2) @ t  # [B, 3, 3] covariance
        u, _, vt = torch.linalg.svd(h)
        d = torch.sign(torch.linalg.det(u @ vt))  # -1 where the best orthogonal map is a reflection
        d = torch.where(d == 0, torch.ones_like(d), d)
        flip = torch.ones_like(u[..., 0])  # [B, 3]
        flip[:, 2] = d
        return (u * flip.unsqueeze(1)) @ vt


def kabsch_align(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`pred` rigidly moved (rotation + translation) onto `target`; same shape as pred ([N, 3] or [B, N, 3]).

    Gradients flow through pred and both centroids; the rotation is a constant in backprop. For the
    aligned squared error this is the exact gradient (the rotation is optimal, so its own derivative
    term vanishes) and it avoids SVD's unstable gradient for planar or linear molecules (equal singular
    values). Padded rows (mask False) are moved too and carry no meaning.
    """
    p, t, m, single = _batched(pred, target, mask)
    rotation = kabsch_rotation(p, t, m).to(p.dtype)
    w = m.to(p.dtype).unsqueeze(-1)
    n = w.sum(1, keepdim=True).clamp_min(1.0)
    aligned = (p - (w * p).sum(1, keepdim=True) / n) @ rotation + (w * t).sum(1, keepdim=True) / n
    return aligned[0] if single else aligned


def kabsch_rmsd(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Coordinate RMSD (Å) after optimal proper-rotation alignment.

    pred, target: [N, 3] -> scalar, or [B, N, 3] with mask [B, N] bool -> [B]. Differentiable in pred
    (and target); the gradient at RMSD = 0 is 0 rather than NaN. A molecule with no unmasked atom gets 0.
    """
    p, t, m, single = _batched(pred, target, mask)
    aligned = kabsch_align(p, t, m)
    w = m.to(p.dtype)
    msd = (((aligned - t) ** 2).sum(-1) * w).sum(-1) / w.sum(-1).clamp_min(1.0)  # [B]
    positive = msd > 0
    rmsd = torch.where(positive, msd, torch.ones_like(msd)).sqrt() * positive
    return rmsd[0] if single else rmsd


def atom_type_accuracy(pred_types: torch.Tensor, target_types: torch.Tensor,
                       mask: torch.Tensor | None = None) -> tuple[int, int]:
    """(correctly typed atoms, atoms) over unmasked entries. Types [B, N] or [N] int, mask like them."""
    correct = pred_types == target_types
    if mask is not None:
        correct = correct & mask.bool()
        return int(correct.sum()), int(mask.sum())
    return int(correct.sum()), int(correct.numel())


def reconstruction_smiles(atomic_numbers: np.ndarray, positions: np.ndarray, route: str = "edm",
                          isomeric: bool = True) -> str | None:
    """Canonical SMILES of the largest fragment under `route`, with 3-D stereo by default; None if invalid.

    Stereo is on by default so that a decoder returning the mirror image of a chiral molecule does not
    count as a match.
    """
    perception = perceive(route, atomic_numbers, positions)
    if not perception.valid:
        return None
    try:
        return canonical_smiles(largest_fragment(perception.mol), isomeric=isomeric)
    except Exception:  # RDKit could not write it: treat as invalid
        return None


def reconstruction_match(pred_numbers: np.ndarray, pred_positions: np.ndarray, target_numbers: np.ndarray,
                         target_positions: np.ndarray, route: str = "edm", isomeric: bool = True) -> bool | None:
    """True if prediction and target have the same canonical SMILES under `route`.

    Returns None when the target itself is invalid under the route: such molecules are left out of the
    match rate (and counted), since no SMILES exists to match.
    """
    target = reconstruction_smiles(target_numbers, target_positions, route, isomeric)
    if target is None:
        return None
    return reconstruction_smiles(pred_numbers, pred_positions, route, isomeric) == target


def match_verdicts(pred_numbers: np.ndarray, pred_positions: np.ndarray, target_numbers: np.ndarray,
                   target_positions: np.ndarray) -> dict[str, bool | None]:
    """Per protocol in MATCH_PROTOCOLS: did the prediction reconstruct the target? None where the target has
    no identity under the protocol (no InChI; not valid under the EDM route), to be left out and counted.
    Inputs: atomic numbers [n] int, positions [n, 3] Å."""
    return {
        "inchi_openbabel": inchi_match(pred_numbers, pred_positions, target_numbers, target_positions),
        "edm_smiles": reconstruction_match(pred_numbers, pred_positions, target_numbers, target_positions,
                                           route="edm", isomeric=True),
    }


def reconstruction_match_rates(predicted: list, targets: list) -> dict[str, torch.Tensor]:
    """`match_verdicts` of each (prediction, target) pair as per-molecule floats [B] named
    "match_rate_<protocol>": 1 matched, 0 not, NaN where the target has no identity under the protocol.

    predicted, targets: lists of (atomic numbers [n], positions [n, 3] Å) pairs (tensors or arrays)."""
    if len(predicted) != len(targets):
        raise ValueError(f"reconstruction_match_rates: {len(predicted)} predictions for {len(targets)} targets")
    rates = {protocol: [] for protocol in MATCH_PROTOCOLS}
    for (pz, px), (tz, tx) in zip(predicted, targets):
        verdicts = match_verdicts(_numpy(pz), _numpy(px).astype(np.float64), _numpy(tz),
                                  _numpy(tx).astype(np.float64))
        for protocol, verdict in verdicts.items():
            rates[protocol].append(float("nan") if verdict is None else float(verdict))
    return {f"match_rate_{protocol}": torch.tensor(values, dtype=torch.float64) for protocol, values in rates.items()}


def _numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
