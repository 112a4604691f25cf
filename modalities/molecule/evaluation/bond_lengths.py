"""Bond-length fidelity: lengths per bond type, and their Wasserstein-1 distance (Å) to a reference set.

The figure that tells at a glance whether generated molecules are physically shaped: stability and validity
only ask whether each length falls inside a window, W1 measures how far the whole distribution sits from
the data's.

Rule (`BOND_RULE`), the same for generated and reference molecules: a bond is an atom pair to which EDM's
table (`bond_tables.bond_order_matrix`) gives an order >= 1, i.e. closer than the typical single-bond length
+ 10 pm; single, double and triple bonds are pooled per element pair. A shrunk bond is still a bond, so W1
sees it. A stretched one past the cutoff is no bond at all: it shows as fewer bonds per molecule, reported
beside W1. Every molecule counts, valid or not -- leaving out the invalid ones would hide the very molecules
whose lengths made them invalid; only atoms that cannot be a molecule (`input_problem`: no atoms, unknown
element, NaN, overlap) are left out, and counted.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np
from scipy.stats import wasserstein_distance

from modalities.molecule.evaluation.bond_perception import input_problem
from modalities.molecule.evaluation.bond_tables import SYMBOLS, bond_order_matrix

BOND_TYPES = ("C-C", "C-H", "C-N", "C-O", "O-H", "N-H")  # QM9's common bonds, the ones reported
HEADLINE_MEDIANS = ("C-C", "C-H")
BOND_RULE = ("EDM bond table order >= 1 (distance < single-bond length + 10 pm), orders pooled; every molecule "
             "without an input problem counts, valid or not")


def bond_type(z_a: int, z_b: int) -> str:
    """'C-H' for (6, 1) or (1, 6): carbon first, hydrogen last, other elements alphabetically between."""
    a, b = sorted((SYMBOLS[int(z_a)], SYMBOLS[int(z_b)]), key=lambda s: (s != "C", s == "H", s))
    return f"{a}-{b}"


def bond_lengths(atomic_numbers: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
    """Lengths (Å, float64) of one molecule's bonds under `BOND_RULE`, by bond type (every type present,
    not only BOND_TYPES). atomic_numbers [N] int, positions [N, 3] Å, both valid (see `input_problem`)."""
    z = np.asarray(atomic_numbers, dtype=np.int64)
    x = np.asarray(positions, dtype=np.float64)
    i, j = np.nonzero(np.triu(bond_order_matrix(z, x)))
    lengths = np.linalg.norm(x[i] - x[j], axis=1)
    out: dict[str, list[float]] = defaultdict(list)
    for a, b, length in zip(z[i], z[j], lengths):
        out[bond_type(a, b)].append(float(length))
    return {kind: np.asarray(values) for kind, values in out.items()}


def pooled_bond_lengths(molecules: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[dict[str, np.ndarray], int, int]:
    """(lengths by bond type over all molecules, molecules used, molecules left out for an input problem).

    molecules: (atomic numbers [n], positions [n, 3] Å) pairs of numpy arrays."""
    pooled: dict[str, list[np.ndarray]] = defaultdict(list)
    used = left_out = 0
    for z, x in molecules:
        if input_problem(z, x):
            left_out += 1
            continue
        used += 1
        for kind, values in bond_lengths(z, x).items():
            pooled[kind].append(values)
    return {kind: np.concatenate(parts) for kind, parts in pooled.items()}, used, left_out


def bond_length_w1(generated: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                   types: Iterable[str] = BOND_TYPES) -> dict[str, float | None]:
    """Wasserstein-1 distance (Å) between the generated and reference lengths of each bond type; None where
    either side has no bond of that type."""
    out = {}
    for kind in types:
        a, b = generated.get(kind, np.zeros(0)), reference.get(kind, np.zeros(0))
        out[kind] = float(wasserstein_distance(a, b)) if len(a) and len(b) else None
    return out


def _medians(lengths: dict[str, np.ndarray]) -> dict[str, float | None]:
    return {kind: float(np.median(lengths[kind])) if len(lengths.get(kind, ())) else None for kind in BOND_TYPES}


def _per_molecule(lengths: dict[str, np.ndarray], molecules: int) -> dict[str, float | None]:
    return {kind: len(lengths.get(kind, ())) / molecules if molecules else None for kind in BOND_TYPES}


def bond_length_report(generated: dict[str, np.ndarray], used: int, left_out: int,
                       reference: dict[str, np.ndarray] | None = None, reference_molecules: int = 0) -> dict:
    """JSON-ready summary: the rule, W1 per type against the reference (when given), medians and bonds per
    molecule of both sets, and how many molecules were used / left out."""
    report = {"rule": BOND_RULE, "molecules_used": used, "molecules_left_out": left_out,
              "median_angstrom": _medians(generated), "bonds_per_molecule": _per_molecule(generated, used)}
    if reference is not None:
        report["w1_angstrom"] = bond_length_w1(generated, reference)
        report["reference_median_angstrom"] = _medians(reference)
        report["reference_bonds_per_molecule"] = _per_molecule(reference, reference_molecules)
    return report
