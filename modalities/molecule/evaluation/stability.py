"""Atom and molecule stability, exactly as EDM defines them (Hoogeboom et al. 2022, `qm9/analyze.py`).

For one molecule: bond orders come from interatomic distances through EDM's tables
(`bond_tables.bond_order_matrix`), every pair of atoms considered, no charges. An atom is stable when
the sum of its bond orders is one of the valences EDM allows for its element; a molecule is stable when
all its atoms are.

Pooling over a set (EDM's choice, followed here for the headline figure):
    atom stability     = (stable atoms over all molecules) / (atoms over all molecules)   -- pooled;
    molecule stability = stable molecules / molecules.
`per_molecule_atom_stability` (mean over molecules of each molecule's stable-atom fraction) is reported
next to it because some later papers average per molecule; on QM9 the two differ in the second decimal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modalities.molecule.evaluation.bond_tables import ALLOWED_VALENCES, SYMBOLS, bond_order_matrix


@dataclass(frozen=True)
class StabilityResult:
    """EDM stability of one molecule."""

    molecule_stable: bool
    num_stable_atoms: int
    num_atoms: int
    unstable_atoms: tuple[int, ...]  # indices of atoms whose bond-order sum is not allowed


def atom_valences(atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """[N] int64 sum of EDM bond orders of each atom. atomic_numbers [N] int, positions [N, 3] Å."""
    return bond_order_matrix(atomic_numbers, positions).sum(axis=1)


def atom_stability_mask(atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """[N] bool, True where the atom's bond-order sum is one of EDM's allowed valences for its element.

    Elements EDM has no valence for (and atomic number 0, used for an unreadable element) are unstable.
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    valences = atom_valences(z, positions)
    allowed = [ALLOWED_VALENCES.get(SYMBOLS[int(zi)] if 0 < zi < len(SYMBOLS) else "", ()) for zi in z]
    return np.array([int(v) in ok for v, ok in zip(valences, allowed)], dtype=bool)


def check_stability(atomic_numbers: np.ndarray, positions: np.ndarray) -> StabilityResult:
    """EDM stability of one molecule. atomic_numbers [N] int, positions [N, 3] Å (finite).

    An empty molecule (N = 0) is counted unstable with zero atoms, as it can only come from a broken
    sampler; EDM would call it stable (all of its zero atoms are), which would reward the failure.
    """
    stable = atom_stability_mask(atomic_numbers, positions)
    n = int(stable.size)
    return StabilityResult(
        molecule_stable=bool(n > 0 and stable.all()),
        num_stable_atoms=int(stable.sum()),
        num_atoms=n,
        unstable_atoms=tuple(int(i) for i in np.flatnonzero(~stable)),
    )


@dataclass(frozen=True)
class StabilitySummary:
    """Stability of a set of molecules, pooled as EDM pools it (fractions in [0, 1])."""

    atom_stability: float  # pooled over atoms (EDM)
    per_molecule_atom_stability: float  # mean over molecules of their stable-atom fraction
    molecule_stability: float
    num_molecules: int
    num_atoms: int


def summarize_stability(results: list[StabilityResult]) -> StabilitySummary:
    """Pool per-molecule results into set figures; molecules with zero atoms count as unstable."""
    num_atoms = sum(r.num_atoms for r in results)
    num_molecules = len(results)
    fractions = [r.num_stable_atoms / r.num_atoms if r.num_atoms else 0.0 for r in results]
    return StabilitySummary(
        atom_stability=sum(r.num_stable_atoms for r in results) / num_atoms if num_atoms else 0.0,
        per_molecule_atom_stability=float(np.mean(fractions)) if fractions else 0.0,
        molecule_stability=sum(r.molecule_stable for r in results) / num_molecules if num_molecules else 0.0,
        num_molecules=num_molecules,
        num_atoms=num_atoms,
    )
