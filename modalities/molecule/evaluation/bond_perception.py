"""Three routes from 3-D atoms to an RDKit molecule, so that validity can be reported per route.

    edm        EDM's distance table (`bond_tables`), bond orders 1-3, no charges; RDKit then fills
               missing valence with implicit hydrogens, as EDM's `build_molecule` + `SanitizeMol` do.
    xyz2mol    RDKit `rdDetermineBonds` (Kim & Kim's xyz2mol), run as DetermineBonds runs it with its
               defaults: connectivity from covalent radii x 1.3, then bond orders and formal charges that
               fit the total charge. Needs explicit H. Rejects some strained cages (extra cross-ring
               contacts) and recovers zwitterions, sometimes with the charges on other atoms.
    openbabel  OpenBabel's `ConnectTheDots` + `PerceiveBondOrders` on an XYZ block (the route ADiT takes,
               there through pymatgen and a PDB file; here through a MOL block), lenient.

Every route returns a `Perception` and never raises for a bad molecule: the failure becomes `reason`.
Input: atomic numbers [N] int (0 = unreadable element), positions [N, 3] float in Å, total charge (int,
used by xyz2mol and openbabel; EDM has no charges).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds
from rdkit.Geometry import Point3D

from modalities.molecule.evaluation.bond_tables import SYMBOLS, bond_order_matrix

ROUTES = ("edm", "xyz2mol", "openbabel")
MIN_DISTANCE_ANGSTROM = 0.1  # closer atoms are "overlapping": no bond route can make sense of them
XYZ2MOL_MAX_ITERATIONS = 1_000_000  # bound on xyz2mol's bond-order search so a pathological sample cannot hang
_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


@dataclass
class Perception:
    """Result of one bond route on one molecule.

    mol:    sanitised RDKit molecule (explicit H kept, one conformer in Å) when valid, else None.
    graph:  the bonded, unsanitised molecule when the route produced bonds (what an SDF writer can still
            write for an invalid molecule), else None.
    reason: why `mol` is None ("" when valid).
    """

    route: str
    mol: Chem.Mol | None
    graph: Chem.Mol | None
    reason: str

    @property
    def valid(self) -> bool:
        return self.mol is not None


def input_problem(atomic_numbers: np.ndarray, positions: np.ndarray) -> str | None:
    """Why these atoms cannot be a molecule (no atoms, unknown element, NaN, overlap), or None.

    atomic_numbers [N] int, positions [N, 3] float Å. Pure function; checks in order of cost.
    """
    z = np.asarray(atomic_numbers)
    x = np.asarray(positions, dtype=np.float64)
    if z.ndim != 1 or x.shape != (z.shape[0], 3):
        return f"shape mismatch: atomic numbers {tuple(z.shape)}, positions {tuple(x.shape)} (want [N], [N, 3])"
    if z.shape[0] == 0:
        return "no atoms"
    bad = np.flatnonzero((z < 1) | (z >= len(SYMBOLS)))
    if bad.size:
        return f"unknown element at atom {int(bad[0])} (atomic number {int(z[bad[0]])})"
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        return f"non-finite coordinates at atom {int(bad[0])}: {x[bad[0]].tolist()}"
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    if d[i, j] < MIN_DISTANCE_ANGSTROM:
        return f"atoms {min(i, j)} and {max(i, j)} overlap ({d[i, j]:.3f} Å < {MIN_DISTANCE_ANGSTROM} Å)"
    return None


def _with_conformer(mol: Chem.RWMol, positions: np.ndarray) -> Chem.RWMol:
    conf = Chem.Conformer(mol.GetNumAtoms())
    for i, (px, py, pz) in enumerate(np.asarray(positions, dtype=np.float64)):
        conf.SetAtomPosition(i, Point3D(px, py, pz))
    conf.Set3D(True)
    mol.AddConformer(conf, assignId=True)
    return mol


def _sanitised(route: str, graph: Chem.Mol) -> Perception:
    mol = Chem.Mol(graph)
    try:
        with rdBase.BlockLogs():
            Chem.SanitizeMol(mol)
    except Exception as error:  # RDKit raises several exception types; all mean "not a valid molecule"
        return Perception(route, None, graph, f"sanitization: {error}")
    return Perception(route, mol, graph, "")


def xyz_block(atomic_numbers: np.ndarray, positions: np.ndarray, comment: str = "") -> str:
    """An XYZ-format string (Å) of one molecule."""
    lines = [str(len(atomic_numbers)), comment.replace("\n", " ")]
    lines += [f"{SYMBOLS[int(z)]} {x:.6f} {y:.6f} {w:.6f}"
              for z, (x, y, w) in zip(atomic_numbers, np.asarray(positions, dtype=np.float64))]
    return "\n".join(lines) + "\n"


def perceive_edm(atomic_numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> Perception:
    """EDM table bonds (orders 1-3, every pair), atoms without charges; `charge` is ignored, as in EDM."""
    problem = input_problem(atomic_numbers, positions)
    if problem:
        return Perception("edm", None, None, problem)
    order = bond_order_matrix(atomic_numbers, positions)  # [N, N]
    mol = Chem.RWMol()
    for z in atomic_numbers:
        mol.AddAtom(Chem.Atom(int(z)))
    for i, j in zip(*np.nonzero(np.triu(order))):
        mol.AddBond(int(i), int(j), _BOND_TYPES[int(order[i, j])])
    return _sanitised("edm", _with_conformer(mol, positions).GetMol())


def perceive_xyz2mol(atomic_numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> Perception:
    """RDKit DetermineConnectivity + DetermineBondOrders (= DetermineBonds with its defaults), in two steps
    so the connectivity survives a failed bond-order search."""
    problem = input_problem(atomic_numbers, positions)
    if problem:
        return Perception("xyz2mol", None, None, problem)
    mol = Chem.RWMol()
    for z in atomic_numbers:
        mol.AddAtom(Chem.Atom(int(z)))
    mol = _with_conformer(mol, positions)
    graph = None
    try:
        with rdBase.BlockLogs():
            rdDetermineBonds.DetermineConnectivity(mol)
            graph = Chem.Mol(mol)  # single bonds only: connectivity stays known when bond orders fail
            rdDetermineBonds.DetermineBondOrders(mol, charge=int(charge), maxIterations=XYZ2MOL_MAX_ITERATIONS)
    except Exception as error:  # ValueError for "no valid assignment", RuntimeError for the iteration cap
        message = str(error).strip() or type(error).__name__
        return Perception("xyz2mol", None, graph, f"xyz2mol: {message}")
    return _sanitised("xyz2mol", mol.GetMol())


def perceive_openbabel(atomic_numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> Perception:
    """OpenBabel bond perception on an XYZ block, handed to RDKit as a MOL block."""
    problem = input_problem(atomic_numbers, positions)
    if problem:
        return Perception("openbabel", None, None, problem)
    conversion = _openbabel_conversion()
    obmol = openbabel_module().OBMol()
    if not conversion.ReadString(obmol, xyz_block(atomic_numbers, positions)):
        return Perception("openbabel", None, None, "openbabel: could not read the XYZ block")
    if charge:
        obmol.SetTotalCharge(int(charge))
    block = conversion.WriteString(obmol)
    with rdBase.BlockLogs():
        graph = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False)
    if graph is None:
        return Perception("openbabel", None, None, "openbabel: RDKit could not read OpenBabel's MOL block")
    if graph.GetNumAtoms() != len(atomic_numbers):
        return Perception("openbabel", None, None, "openbabel: atom count changed in conversion")
    conformer = graph.GetConformer()  # the MOL block rounds to 1e-4 Å: restore the input coordinates
    for i, (px, py, pz) in enumerate(np.asarray(positions, dtype=np.float64)):
        conformer.SetAtomPosition(i, Point3D(px, py, pz))
    return _sanitised("openbabel", graph)


_OB = {}


def openbabel_module():
    """The openbabel module, imported on first use so the other routes work without the wheel."""
    if "module" not in _OB:
        try:
            from openbabel import openbabel
        except ImportError as error:
            raise ImportError("the 'openbabel' bond route needs `python -m pip install openbabel-wheel`") from error
        openbabel.obErrorLog.StopLogging()  # OpenBabel prints to stderr for every odd molecule
        _OB["module"] = openbabel
    return _OB["module"]


def _openbabel_conversion():
    if "conversion" not in _OB:
        conversion = openbabel_module().OBConversion()
        conversion.SetInAndOutFormats("xyz", "mol")
        _OB["conversion"] = conversion
    return _OB["conversion"]


_PERCEIVERS = {"edm": perceive_edm, "xyz2mol": perceive_xyz2mol, "openbabel": perceive_openbabel}


def perceive(route: str, atomic_numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> Perception:
    """Run bond route `route` ('edm', 'xyz2mol' or 'openbabel') on one molecule."""
    if route not in _PERCEIVERS:
        raise ValueError(f"unknown bond route {route!r}: choose one of {ROUTES}")
    return _PERCEIVERS[route](np.asarray(atomic_numbers, dtype=np.int64), np.asarray(positions), int(charge))
