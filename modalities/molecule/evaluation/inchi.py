"""InChI of 3-D atoms after OpenBabel's bond perception: the identity behind the published match protocol.

ADiT counts a reconstruction as matched when pymatgen's `MoleculeMatcher().get_rmsd(pred, target)` is
finite (`src/eval/molecule_reconstruction.py`; the RMSD tolerance plays no part). That is finite exactly
when pymatgen's `InchiMolAtomMapper` finds the same InChI for both molecules, each computed as follows
(pymatgen `io/babel.py` `BabelMolAdaptor`, `core/molecule_matcher.py` `_inchi_labels`):
    atoms and coordinates into an OBMol, `ConnectTheDots()` + `PerceiveBondOrders()` (total charge 0);
    OpenBabel's InChI writer with the InChI option "DoNotAddH" -- every H must be an explicit atom.
We do the same without pymatgen: an XYZ block read by OpenBabel runs the same two perception steps.

What the string holds, and so what a match needs: the same formula (all atoms, every fragment), the same
connectivity (covalent radii, so lenient about lengths), the same H attachment up to InChI's mobile-H
normalisation, charges, and stereo layers (/b double bonds, /t /m tetrahedral) assigned from the 3-D
coordinates. Bond orders are not part of InChI. A mirror image of a chiral molecule differs in /m and does
not match; the mirror image of an achiral molecule is the same molecule and matches. (pymatgen also fails
on the rare pair whose equivalent-atom classes disagree after equal InChIs; we count such a pair as matched.)
"""
from __future__ import annotations

import numpy as np

from modalities.molecule.evaluation.bond_perception import input_problem, openbabel_module, xyz_block

_CONVERSION = {}


def _inchi_conversion():
    """One XYZ -> InChI converter per process, with pymatgen's option (building one costs ~1 ms)."""
    if "xyz->inchi" not in _CONVERSION:
        ob = openbabel_module()
        conversion = ob.OBConversion()
        conversion.SetInAndOutFormats("xyz", "inchi")
        conversion.AddOption("X", ob.OBConversion.OUTOPTIONS, "DoNotAddH")
        _CONVERSION["xyz->inchi"] = conversion
    return _CONVERSION["xyz->inchi"]


def openbabel_inchi(atomic_numbers: np.ndarray, positions: np.ndarray, charge: int = 0) -> str | None:
    """InChI string ("InChI=1S/...") of one molecule after OpenBabel bond perception; None when the atoms
    cannot be a molecule (`input_problem`: no atoms, unknown element, NaN, overlap) or OpenBabel writes
    nothing. atomic_numbers [N] int, positions [N, 3] Å, charge: total formal charge. Never raises."""
    z = np.asarray(atomic_numbers, dtype=np.int64)
    x = np.asarray(positions, dtype=np.float64)
    if input_problem(z, x):
        return None
    conversion = _inchi_conversion()
    molecule = openbabel_module().OBMol()
    if not conversion.ReadString(molecule, xyz_block(z, x)):
        return None
    if charge:
        molecule.SetTotalCharge(int(charge))
    inchi = conversion.WriteString(molecule).strip()
    return inchi if inchi.startswith("InChI=") else None


def inchi_match(pred_numbers: np.ndarray, pred_positions: np.ndarray, target_numbers: np.ndarray,
                target_positions: np.ndarray) -> bool | None:
    """True if the two molecules have the same OpenBabel InChI (ADiT's match); None when the target has
    none (left out of a match rate, as an invalid target is); False when only the prediction has none."""
    target = openbabel_inchi(target_numbers, target_positions)
    if target is None:
        return None
    return openbabel_inchi(pred_numbers, pred_positions) == target
