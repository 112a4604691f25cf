"""Reconstruction metrics: atom-type accuracy, coordinate RMSD after optimal (Kabsch) alignment, match rates.

Atom i of the prediction is compared with atom i of the target (the decoder's latent slot i belongs to
atom i) for RMSD; `atom_assignment` has the permutation-aware RMSD. Two match protocols, each named:
    inchi_openbabel  same InChI after OpenBabel bond perception (`inchi.py`): the published protocol (ADiT,
                     via pymatgen's MoleculeMatcher); order-free, lenient about bond lengths;
    edm_smiles       same canonical SMILES with 3-D stereo after EDM's bond table: strict, a bond length off
                     by more than the table's 3-10 pm margins changes the bond order and breaks the match.

The Kabsch functions (`alignment.py`, re-exported here) are batched, masked and differentiable, and the
training loss imports them.
"""
from __future__ import annotations

import numpy as np
import torch

from modalities.molecule.evaluation.alignment import (  # noqa: F401  (re-exported: the harness's names)
    kabsch_align, kabsch_rmsd, kabsch_rotation, masked_centred)
from modalities.molecule.evaluation.bond_perception import perceive
from modalities.molecule.evaluation.chemistry_metrics import canonical_smiles, largest_fragment
from modalities.molecule.evaluation.inchi import inchi_match

MATCH_PROTOCOLS = ("inchi_openbabel", "edm_smiles")


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
