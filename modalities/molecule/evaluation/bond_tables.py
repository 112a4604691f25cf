"""EDM's bond-length tables, margins and allowed valences, as data plus one pure function.

Figures are those of EDM's official code (Hoogeboom et al. 2022, `qm9/bond_analyze.py`), which took the
typical lengths from wiredchemist.com and chemistry-reference.com. Lengths are in picometres (pm);
`bond_order` takes Ångström, like every coordinate in this project.

Rule (EDM): with d the distance in pm and L1/L2/L3 the typical single/double/triple lengths of the pair,
    d < L1 + 10  -> bonded, order 1;
    and, if the pair has a double length, d < L2 + 5 -> order 2;
    and, if the pair has a triple length, d < L3 + 3 -> order 3.
All comparisons are strict. EDM tuned the margins to maximise the stability of QM9's own molecules.
A pair without a single-bond length never bonds (EDM's `check_exists=True` behaviour; for QM9's
elements every pair has one).
"""
from __future__ import annotations

import numpy as np

# Z = 1..118; index 0 is a placeholder so that SYMBOLS[z] is the symbol of atomic number z.
SYMBOLS = ("X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As "
           "Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb "
           "Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk "
           "Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og").split()
ATOMIC_NUMBER = {symbol: z for z, symbol in enumerate(SYMBOLS) if z > 0}

MARGIN_SINGLE_PM = 10  # EDM's margin1
MARGIN_DOUBLE_PM = 5  # EDM's margin2
MARGIN_TRIPLE_PM = 3  # EDM's margin3

# Typical single-bond lengths (pm). Each pair is listed once; the tables are symmetric.
SINGLE_BOND_PM: dict[tuple[str, str], int] = {
    ("H", "H"): 74, ("H", "C"): 109, ("H", "N"): 101, ("H", "O"): 96, ("H", "F"): 92, ("H", "B"): 119,
    ("H", "Si"): 148, ("H", "P"): 144, ("H", "As"): 152, ("H", "S"): 134, ("H", "Cl"): 127,
    ("H", "Br"): 141, ("H", "I"): 161,
    ("C", "C"): 154, ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135, ("C", "Si"): 185,
    ("C", "P"): 184, ("C", "S"): 182, ("C", "Cl"): 177, ("C", "Br"): 194, ("C", "I"): 214,
    ("N", "N"): 145, ("N", "O"): 140, ("N", "F"): 136, ("N", "Cl"): 175, ("N", "Br"): 214,
    ("N", "S"): 168, ("N", "I"): 222, ("N", "P"): 177,
    ("O", "O"): 148, ("O", "F"): 142, ("O", "Br"): 172, ("O", "S"): 151, ("O", "P"): 163,
    ("O", "Si"): 163, ("O", "Cl"): 164, ("O", "I"): 194,
    ("F", "F"): 142, ("F", "S"): 158, ("F", "Si"): 160, ("F", "Cl"): 166, ("F", "Br"): 178,
    ("F", "P"): 156, ("F", "I"): 187,
    ("B", "Cl"): 175,
    ("Si", "Si"): 233, ("Si", "S"): 200, ("Si", "Cl"): 202, ("Si", "Br"): 215, ("Si", "I"): 243,
    ("Cl", "Cl"): 199, ("Cl", "P"): 203, ("Cl", "S"): 207, ("Cl", "Br"): 214,
    ("S", "S"): 204, ("S", "Br"): 225, ("S", "P"): 210, ("S", "I"): 234,
    ("Br", "Br"): 228, ("Br", "P"): 222,
    ("P", "P"): 221,
    ("I", "I"): 266,
}

DOUBLE_BOND_PM: dict[tuple[str, str], int] = {
    ("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("C", "S"): 160,
    ("N", "N"): 125, ("N", "O"): 121,
    ("O", "O"): 121, ("O", "P"): 150,
    ("P", "S"): 186,
}

TRIPLE_BOND_PM: dict[tuple[str, str], int] = {
    ("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113,
    ("N", "N"): 110,
}

# Number of bonds (sum of bond orders) EDM accepts for a stable atom. EDM allows no formal charges:
# S is 4 only, N is 3 only (so NH4+ or a nitro N is "unstable" by construction).
ALLOWED_VALENCES: dict[str, tuple[int, ...]] = {
    "H": (1,), "C": (4,), "N": (3,), "O": (2,), "F": (1,), "B": (3,), "Al": (3,), "Si": (4,),
    "P": (3, 5), "S": (4,), "Cl": (1,), "As": (3,), "Br": (1,), "I": (1,), "Hg": (1, 2), "Bi": (3, 5),
}


def _lookup(table: dict[tuple[str, str], int], a: str, b: str) -> int | None:
    return table.get((a, b), table.get((b, a)))


def as_symbol(element: str | int) -> str:
    """'C' -> 'C'; 6 -> 'C'. Raises ValueError for an atomic number outside 1..118."""
    if isinstance(element, str):
        return element
    z = int(element)
    if not 0 < z < len(SYMBOLS):
        raise ValueError(f"atomic number {z} is outside 1..{len(SYMBOLS) - 1}")
    return SYMBOLS[z]


def bond_order(element_a: str | int, element_b: str | int, distance_angstrom: float) -> int:
    """EDM's bond order (0 none, 1, 2 or 3) of two atoms `distance_angstrom` Å apart.

    Elements are symbols ('C') or atomic numbers (6). A pair missing from the single-bond table gets 0.
    """
    a, b = as_symbol(element_a), as_symbol(element_b)
    d = 100.0 * float(distance_angstrom)  # Å -> pm
    single = _lookup(SINGLE_BOND_PM, a, b)
    if single is None or not d < single + MARGIN_SINGLE_PM:
        return 0
    double = _lookup(DOUBLE_BOND_PM, a, b)
    if double is None or not d < double + MARGIN_DOUBLE_PM:
        return 1
    triple = _lookup(TRIPLE_BOND_PM, a, b)
    if triple is None or not d < triple + MARGIN_TRIPLE_PM:
        return 2
    return 3


def _threshold_matrix(table: dict[tuple[str, str], int], margin: int) -> np.ndarray:
    """[119, 119] float64 thresholds (pm) indexed by atomic numbers; -inf where the pair has no entry."""
    out = np.full((len(SYMBOLS), len(SYMBOLS)), -np.inf)
    for (a, b), length in table.items():
        za, zb = ATOMIC_NUMBER[a], ATOMIC_NUMBER[b]
        out[za, zb] = out[zb, za] = length + margin
    return out


# Built once at import; -inf thresholds make "d < threshold" false, i.e. "no bond of that order".
_SINGLE_THRESHOLD = _threshold_matrix(SINGLE_BOND_PM, MARGIN_SINGLE_PM)
_DOUBLE_THRESHOLD = _threshold_matrix(DOUBLE_BOND_PM, MARGIN_DOUBLE_PM)
_TRIPLE_THRESHOLD = _threshold_matrix(TRIPLE_BOND_PM, MARGIN_TRIPLE_PM)


def bond_order_matrix(atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """All pairwise EDM bond orders of one molecule, vectorised.

    atomic_numbers: [N] int, 1..118.  positions: [N, 3] float, Å.
    Returns [N, N] int64, symmetric, zero diagonal; entry (i, j) equals `bond_order(z_i, z_j, d_ij)`.
    Distances are computed in float64 (EDM used float32; a pair lying within ~1e-5 pm of a threshold
    could differ, which does not happen on QM9).
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    x = np.asarray(positions, dtype=np.float64)
    d = 100.0 * np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))  # [N, N] pm
    pair = (z[:, None], z[None, :])
    single = d < _SINGLE_THRESHOLD[pair]
    double = single & (d < _DOUBLE_THRESHOLD[pair])
    triple = double & (d < _TRIPLE_THRESHOLD[pair])
    order = single.astype(np.int64) + double + triple
    np.fill_diagonal(order, 0)
    return order


def is_allowed_valence(element: str | int, num_bonds: int) -> bool:
    """EDM's stability test for one atom: its bond-order sum is one of the allowed valences.

    An element EDM has no entry for is never stable (EDM itself would raise a KeyError).
    """
    return int(num_bonds) in ALLOWED_VALENCES.get(as_symbol(element), ())
