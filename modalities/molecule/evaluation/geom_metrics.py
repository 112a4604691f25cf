"""Drug-size molecules (GEOM-Drugs): connectivity, largest-fragment validity and EDM's GEOM stability.

Per molecule, pure functions of (atomic numbers [n], formal charges [n] or None, positions [n, 3] Å):
- stability: EDM's GEOM rule. EDM's `check_stability` for `geom` calls `geom_predictor`, which is
  `get_bond_order(..., check_exists=True)` with the same tables, margins and `allowed_bonds` as QM9 (checked
  against EDM's `qm9/bond_analyze.py` and `qm9/analyze.py`), so `stability.check_stability` is that rule.
  It knows no charges: an N+ or O- is "unstable" by construction, which is why EDM reports no molecule
  stability for GEOM (its data row: atom stability 86.5 %).
- per bond route (`edm` table, `xyz2mol` with the molecule's total charge when charges are known):
  connected (the bond graph is one fragment), valid (the whole molecule sanitises), largest-fragment
  valid (MiDi's "validity": the fragment with most atoms sanitises on its own).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem, rdBase

from modalities.molecule.evaluation.bond_perception import perceive
from modalities.molecule.evaluation.chemistry_metrics import largest_fragment, num_fragments
from modalities.molecule.evaluation.stability import check_stability

GEOM_ROUTES = ("edm", "xyz2mol")


@dataclass(frozen=True)
class GeomRouteResult:
    """What one bond route makes of one molecule."""

    route: str
    connected: bool
    valid: bool
    largest_fragment_valid: bool
    num_fragments: int  # 0 when the route produced no bond graph
    reason: str  # why the largest fragment is not valid ("" when it is)


def _sanitises(mol: Chem.Mol) -> str:
    """'' when a copy of `mol` sanitises, else RDKit's reason."""
    try:
        with rdBase.BlockLogs():
            Chem.SanitizeMol(Chem.Mol(mol))
    except Exception as error:  # RDKit raises several types; all mean "not a valid molecule"
        return f"sanitization: {error}"
    return ""


def largest_fragment_atoms(graph: Chem.Mol) -> list[int]:
    """Atom indices of the fragment with most atoms (ties: the first in atom order)."""
    return list(max(Chem.GetMolFrags(graph, asMols=False, sanitizeFrags=False), key=len, default=()))


def assess_geom_route(route: str, atomic_numbers: np.ndarray, formal_charges: np.ndarray | None,
                      positions: np.ndarray) -> GeomRouteResult:
    """Connectivity and validity of one molecule under one route. Never raises for a bad molecule.

    xyz2mol gets the total formal charge (0 without charges); on a molecule in several fragments its largest
    fragment is perceived again alone, with that fragment's own charge."""
    z, x = np.asarray(atomic_numbers, dtype=np.int64), np.asarray(positions, dtype=np.float64)
    q = np.zeros_like(z) if formal_charges is None else np.asarray(formal_charges, dtype=np.int64)
    whole = perceive(route, z, x, int(q.sum()))
    graph = whole.mol if whole.mol is not None else whole.graph
    if graph is None or graph.GetNumAtoms() == 0:
        return GeomRouteResult(route, False, False, False, 0, whole.reason or "no bond graph")
    fragments = num_fragments(graph)
    if fragments == 1:
        return GeomRouteResult(route, True, whole.valid, whole.valid, 1, whole.reason)
    atoms = largest_fragment_atoms(graph)
    if route == "edm":  # the table's bond orders do not depend on the other fragments
        reason = _sanitises(largest_fragment(graph))
    else:
        alone = perceive(route, z[atoms], x[atoms], int(q[atoms].sum()))
        reason = alone.reason if not alone.valid else ""
    return GeomRouteResult(route, False, whole.valid, reason == "", fragments, reason)


@dataclass(frozen=True)
class GeomMoleculeResult:
    """Every GEOM check of one molecule (small and picklable)."""

    num_atoms: int
    num_stable_atoms: int
    molecule_stable: bool
    routes: tuple[GeomRouteResult, ...]


def assess_geom_molecule(atomic_numbers: np.ndarray, formal_charges: np.ndarray | None, positions: np.ndarray,
                         routes: tuple[str, ...] = GEOM_ROUTES) -> GeomMoleculeResult:
    stability = check_stability(np.asarray(atomic_numbers), np.asarray(positions, dtype=np.float64))
    return GeomMoleculeResult(stability.num_atoms, stability.num_stable_atoms, stability.molecule_stable,
                              tuple(assess_geom_route(r, atomic_numbers, formal_charges, positions) for r in routes))


def summarize_geom(results: list[GeomMoleculeResult]) -> dict:
    """Set figures (fractions in [0, 1]): EDM atom stability pooled over atoms, molecule stability, and per
    route connected / valid / largest-fragment valid / valid-and-connected, with the commonest reasons."""
    from collections import Counter

    from modalities.molecule.evaluation.chemistry_metrics import reason_category

    n, atoms = len(results), sum(r.num_atoms for r in results)
    out = {"num_molecules": n,
           "atom_stability": sum(r.num_stable_atoms for r in results) / atoms if atoms else 0.0,
           "molecule_stability": sum(r.molecule_stable for r in results) / n if n else 0.0,
           "routes": {}}
    for k, route in enumerate(results[0].routes if results else ()):
        per = [r.routes[k] for r in results]
        out["routes"][route.route] = {
            "connected": sum(p.connected for p in per) / n,
            "validity": sum(p.valid for p in per) / n,
            "largest_fragment_validity": sum(p.largest_fragment_valid for p in per) / n,
            "valid_and_connected": sum(p.valid and p.connected for p in per) / n,
            "mean_fragments": sum(p.num_fragments for p in per) / n,
            "invalid_reasons": dict(Counter(reason_category(p.reason) for p in per
                                            if not p.largest_fragment_valid).most_common(5)),
        }
    return out
