"""One GEOM-Drugs molecule -> one 3-D conformer made offline with RDKit: ETKDGv3 embedding, MMFF94 relaxation.

Real GEOM coordinates (CREST) cannot be downloaded here, so every figure computed from these molecules
must say "RDKit conformers, not GEOM-CREST". One conformer per molecule, explicit hydrogens (RDKit's
`AddHs`: the SMILES's heavy atoms in SMILES order, then their hydrogens), formal charges kept.

A molecule gives either a `Conformer` or a `Failure` whose reason is one of `FAILURE_REASONS` and whose
message names the item; nothing here raises for a bad molecule, so a malformed SMILES costs one molecule,
not a shard. The sharded cache that calls this is `geom_cache.py`; the command line is `geom_build.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# EDM's GEOM-Drugs vocabulary (16 elements, hydrogens included), EDM's `geom_with_h['atom_decoder']` order.
GEOM_ELEMENTS = ("H", "B", "C", "N", "O", "F", "Al", "Si", "P", "S", "Cl", "As", "Br", "I", "Hg", "Bi")
FAILURE_REASONS = (
    "parse",               # RDKit cannot read the SMILES (syntax, valence, kekulisation)
    "element",             # an element outside GEOM_ELEMENTS
    "embedding",           # ETKDGv3 found no 3-D embedding (twice: seeded, then from random coordinates)
    "mmff_parameters",     # MMFF94 has no parameters for some atom (B, Al, As, Hg, Bi, odd valences)
    "mmff_not_converged",  # MMFF94 still moving after MMFF_MAX_ITERATIONS
    "no_conformer",        # the source molecule has no usable 3-D coordinates
    "pickle",              # a real-GEOM pickle that cannot be read or lacks the expected fields
    "not_in_summary",      # a split SMILES absent from the real GEOM summary_drugs.json
)
EMBED_TIMEOUT_S = 60        # ETKDG gives up on one molecule after this long (large macrocycles)
MMFF_MAX_ITERATIONS = 2000  # RDKit's default of 200 leaves many drug-size molecules unconverged


@dataclass(frozen=True)
class Conformer:
    """One molecule with 3-D coordinates; atom i of every array is atom i of the RDKit molecule."""

    atomic_numbers: np.ndarray  # [n] uint8
    formal_charges: np.ndarray  # [n] int8
    positions: np.ndarray  # [n, 3] float32, Å, as RDKit wrote them (not centred)
    energy: float  # MMFF94 energy, kcal/mol (RDKit conformers) or GEOM's totalenergy, Hartree (rdkit_folder)


@dataclass(frozen=True)
class Failure:
    """Why a molecule gave no conformer; `message` names the item (split, index, SMILES or file)."""

    reason: str  # one of FAILURE_REASONS
    message: str


def outside_vocabulary(mol) -> list[str]:
    """Sorted element symbols of `mol` that GEOM's vocabulary lacks ([] when all are known)."""
    return sorted({atom.GetSymbol() for atom in mol.GetAtoms()} - set(GEOM_ELEMENTS))


def conformer_from_mol(mol, conformer_id: int, energy: float, where: str) -> Conformer | Failure:
    """Conformer `conformer_id` of an RDKit molecule (explicit H) as arrays, or a Failure naming `where`."""
    unknown = outside_vocabulary(mol)
    if unknown:
        return Failure("element", f"{where}: elements {unknown} are outside GEOM's vocabulary {GEOM_ELEMENTS}")
    if mol.GetNumConformers() == 0:
        return Failure("no_conformer", f"{where}: the molecule has no 3-D conformer")
    positions = mol.GetConformer(conformer_id).GetPositions().astype(np.float32)
    if positions.shape != (mol.GetNumAtoms(), 3) or not np.isfinite(positions).all():
        return Failure("no_conformer", f"{where}: the conformer has positions of shape {positions.shape} for "
                                       f"{mol.GetNumAtoms()} atoms, or non-finite ones")
    return Conformer(
        atomic_numbers=np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.uint8),
        formal_charges=np.array([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.int8),
        positions=positions,
        energy=float(energy),
    )


def _said(messages) -> str:
    """RDKit's own complaints, for the failure message ('' when it said nothing)."""
    return f"; RDKit said: {' | '.join(messages)}" if messages else ""


def rdkit_conformer(smiles: str, seed: int, where: str) -> Conformer | Failure:
    """ETKDGv3 embedding (seeded; one retry from random coordinates), then MMFF94 to convergence.

    seed: RDKit's random seed (the molecule's line in its split file, so a rebuild gives the same atoms).
    where: names the item in a failure's message, e.g. "GEOM-Drugs train #12 (CCO)".
    """
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

    from modalities.molecule.evaluation.rdkit_messages import counting_rdkit_messages

    with counting_rdkit_messages() as messages:  # RDKit's complaints go into the failure message, not stderr
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            return Failure("parse", f"{where}: RDKit cannot parse SMILES {smiles!r}{_said(messages)}")
        unknown = outside_vocabulary(mol)
        if unknown:
            return Failure("element", f"{where}: elements {unknown} are outside GEOM's vocabulary {GEOM_ELEMENTS}")
        mol = Chem.AddHs(mol)
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = int(seed)
        params.timeout = EMBED_TIMEOUT_S
        params.numThreads = 1  # parallelism comes from worker processes, one molecule each
        if rdDistGeom.EmbedMolecule(mol, params) < 0:
            params.useRandomCoords = True
            if rdDistGeom.EmbedMolecule(mol, params) < 0:
                return Failure("embedding", f"{where}: ETKDGv3 found no conformer for {smiles!r}{_said(messages)}")
        if not rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
            return Failure("mmff_parameters", f"{where}: MMFF94 lacks parameters for {smiles!r}")
        field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, rdForceFieldHelpers.MMFFGetMoleculeProperties(mol))
        if field.Minimize(maxIts=MMFF_MAX_ITERATIONS) != 0:
            return Failure("mmff_not_converged",
                           f"{where}: MMFF94 did not converge in {MMFF_MAX_ITERATIONS} iterations for {smiles!r}")
        return conformer_from_mol(mol, -1, field.CalcEnergy(), where)
