"""Validity, connectivity, canonical SMILES, uniqueness, novelty: pure functions on RDKit molecules.

Definitions (EDM's, `qm9/rdkit_functions.py`, unless said otherwise):
    validity          fraction of all molecules whose perceived molecule passes RDKit sanitisation;
                      a valid molecule may have several fragments;
    SMILES            canonical SMILES of the *largest fragment* (most atoms, H included) of a valid
                      molecule, hydrogens removed, no stereochemistry by default (EDM's molecules have no
                      stereo either: bonds come without a conformer-based stereo assignment);
    uniqueness        distinct SMILES / valid molecules;
    novelty           unique SMILES absent from the reference (training) SMILES / unique SMILES
                      (EDM divides by unique; ADiT divides the same count by valid molecules:
                      `novelty_over_valid`);
    valid_and_unique  unique SMILES / all molecules (EDM's V x U);
    connected         fraction of all molecules whose perceived bond graph is one fragment (MiDi's
                      "connected"); a route that produced no graph counts as not connected.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from rdkit import Chem, rdBase

from modalities.molecule.evaluation.bond_perception import Perception


def num_fragments(mol: Chem.Mol) -> int:
    """Number of connected components of the bond graph (0 for an empty molecule)."""
    return len(Chem.GetMolFrags(mol, asMols=False, sanitizeFrags=False))


def largest_fragment(mol: Chem.Mol) -> Chem.Mol:
    """The fragment with most atoms (H counted), as EDM picks it; ties go to the first in atom order."""
    fragments = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    return max(fragments, default=mol, key=lambda f: f.GetNumAtoms())


_REMOVE_ALL_HS = Chem.RemoveHsParameters()
_REMOVE_ALL_HS.removeDefiningBondStereo = True  # else an imine N-H with stereo stays as "[H]N=C..."


def canonical_smiles(mol: Chem.Mol, isomeric: bool = False) -> str:
    """Canonical SMILES of a sanitised molecule, explicit H removed.

    isomeric=True keeps stereochemistry assigned from the 3-D conformer (tetrahedral and double-bond),
    so mirror images get different SMILES; False (default) drops it, matching EDM.
    """
    with rdBase.BlockLogs():
        mol = Chem.Mol(mol)
        if not isomeric:
            Chem.RemoveStereochemistry(mol)  # routes may have set some (xyz2mol, OpenBabel): drop it all
        elif mol.GetNumConformers():
            Chem.AssignStereochemistryFrom3D(mol)
        mol = Chem.RemoveHs(mol, _REMOVE_ALL_HS, sanitize=False)
        return Chem.MolToSmiles(mol, isomericSmiles=isomeric)


def canonicalize_smiles(smiles: str, isomeric: bool = False) -> str | None:
    """A SMILES string (e.g. a dataset's) in the same canonical form as `canonical_smiles`; None if unparsable."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    return Chem.MolToSmiles(mol, isomericSmiles=isomeric)


@dataclass(frozen=True)
class ChemistryResult:
    """What one bond route makes of one molecule (small and picklable: no RDKit objects)."""

    route: str
    valid: bool
    reason: str  # "" when valid
    smiles: str | None  # largest fragment's canonical SMILES when valid
    connected: bool  # the route's bond graph is one fragment
    num_fragments: int  # of the bond graph; 0 when the route produced none


def assess_chemistry(perception: Perception, isomeric: bool = False) -> ChemistryResult:
    """Validity, SMILES and connectivity of one perceived molecule. Never raises."""
    graph = perception.mol if perception.mol is not None else perception.graph
    fragments = num_fragments(graph) if graph is not None and graph.GetNumAtoms() else 0
    smiles = None
    if perception.valid:
        try:
            smiles = canonical_smiles(largest_fragment(perception.mol), isomeric=isomeric)
        except Exception as error:  # a sanitised molecule whose fragment RDKit cannot write
            return ChemistryResult(perception.route, False, f"smiles: {error}", None, fragments == 1, fragments)
    return ChemistryResult(perception.route, perception.valid, perception.reason, smiles, fragments == 1, fragments)


def uniqueness(valid_smiles: list[str]) -> float:
    """Distinct SMILES / valid SMILES (0 when there is no valid molecule)."""
    return len(set(valid_smiles)) / len(valid_smiles) if valid_smiles else 0.0


def novelty(unique_smiles: Iterable[str], reference_smiles: set[str]) -> float:
    """Fraction of the unique SMILES absent from the reference set (0 when there is none)."""
    unique = set(unique_smiles)
    return len(unique - reference_smiles) / len(unique) if unique else 0.0


def reason_category(reason: str) -> str:
    """A reason with atom indices and counts replaced by '#', for tallying failures by kind."""
    return re.sub(r"(?<![A-Za-z])\d+(\.\d+)?", "#", reason)[:120]


def summarize_chemistry(results: list[ChemistryResult], reference_smiles: set[str] | None = None,
                        top_reasons: int = 5) -> dict:
    """Set figures of one route (fractions in [0, 1]) plus the most common failure reasons.

    results: one ChemistryResult per molecule, all of the same route.
    reference_smiles: canonical SMILES of the training split (same `isomeric` setting) for novelty.
    """
    n = len(results)
    valid = [r.smiles for r in results if r.valid]
    unique = set(valid)
    out = {
        "num_molecules": n,
        "validity": len(valid) / n if n else 0.0,
        "connected": sum(r.connected for r in results) / n if n else 0.0,
        "valid_and_connected": sum(r.valid and r.connected for r in results) / n if n else 0.0,
        "uniqueness": uniqueness(valid),
        "valid_and_unique": len(unique) / n if n else 0.0,
    }
    if reference_smiles is not None:
        out["novelty"] = novelty(unique, reference_smiles)
        out["novelty_over_valid"] = len(unique - reference_smiles) / len(valid) if valid else 0.0  # ADiT
    reasons = Counter(reason_category(r.reason) for r in results if not r.valid)
    out["invalid_reasons"] = dict(reasons.most_common(top_reasons))
    return out
