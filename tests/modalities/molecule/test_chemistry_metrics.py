"""Validity, fragments, canonical SMILES, uniqueness, novelty."""
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from modalities.molecule.evaluation.bond_perception import perceive
from modalities.molecule.evaluation.chemistry_metrics import (ChemistryResult, assess_chemistry, canonical_smiles,
                                                   canonicalize_smiles, largest_fragment, novelty, num_fragments,
                                                   reason_category, summarize_chemistry, uniqueness)


def embedded(smiles: str, seed: int = 0):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def test_canonical_smiles_drops_hydrogens_and_is_order_independent():
    a = Chem.AddHs(Chem.MolFromSmiles("OCC"))
    b = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    assert canonical_smiles(a) == canonical_smiles(b) == "CCO"
    assert canonicalize_smiles("C(O)C") == "CCO" and canonicalize_smiles("not a smiles") is None


def test_hydrogen_defining_imine_stereo_is_removed_too():
    # xyz2mol and OpenBabel set double-bond stereo; a kept N-H would give "[H]/N=C/C" instead of "CC=N".
    mol = Chem.AddHs(Chem.MolFromSmiles("[H]/N=C/C", sanitize=True), explicitOnly=False)
    assert canonical_smiles(mol) == "CC=N"
    z, x = embedded("CC(=N)OC")
    assert canonical_smiles(perceive("xyz2mol", z, x).mol) == canonicalize_smiles("CC(=N)OC")


def test_stereo_from_3d_separates_mirror_images_only_when_asked():
    z, x = embedded("FC(Cl)(Br)[H]")
    mirror = x * np.array([-1.0, 1.0, 1.0])
    left, right = perceive("xyz2mol", z, x).mol, perceive("xyz2mol", z, mirror).mol
    assert canonical_smiles(left) == canonical_smiles(right) == "FC(Cl)Br"
    iso_left, iso_right = canonical_smiles(left, isomeric=True), canonical_smiles(right, isomeric=True)
    assert iso_left != iso_right and {iso_left, iso_right} == {"F[C@H](Cl)Br", "F[C@@H](Cl)Br"}


def test_fragments_and_largest_fragment():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO.C"))
    assert num_fragments(mol) == 2
    assert canonical_smiles(largest_fragment(mol)) == "CCO"


def test_multi_fragment_molecule_is_valid_but_not_connected():
    za, xa = embedded("CCO")
    zb, xb = embedded("C")
    result = assess_chemistry(perceive("edm", np.r_[za, zb], np.r_[xa, xb + 6.0]))
    assert result.valid and not result.connected and result.num_fragments == 2 and result.smiles == "CCO"


def test_invalid_molecule_keeps_connectivity_and_reason():
    # Pentavalent carbon: C with 5 H at 1.09 A is bonded 5 times by EDM's table; sanitisation fails.
    directions = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], dtype=float)
    result = assess_chemistry(perceive("edm", np.array([6, 1, 1, 1, 1, 1]), np.vstack([np.zeros(3), 1.09 * directions])))
    assert not result.valid and "valence" in result.reason and result.connected and result.smiles is None


def test_uniqueness_and_novelty():
    assert uniqueness(["C", "C", "CC", "CCO"]) == 0.75
    assert uniqueness([]) == 0.0
    assert novelty({"C", "CC", "CCO", "CCN"}, {"C", "CC"}) == 0.5
    assert novelty(set(), {"C"}) == 0.0


def test_summary_follows_edm_definitions():
    results = [ChemistryResult("edm", True, "", "C", True, 1), ChemistryResult("edm", True, "", "C", True, 1),
               ChemistryResult("edm", True, "", "CC", False, 2),
               ChemistryResult("edm", False, "sanitization: Explicit valence for atom # 3 C, 5", None, True, 1)]
    s = summarize_chemistry(results, reference_smiles={"C"})
    assert s["validity"] == 0.75 and s["connected"] == 0.75 and s["valid_and_connected"] == 0.5
    assert s["uniqueness"] == pytest.approx(2 / 3) and s["valid_and_unique"] == 0.5
    assert s["novelty"] == 0.5  # EDM: novel unique / unique
    assert s["novelty_over_valid"] == pytest.approx(1 / 3)  # ADiT: novel unique / valid
    assert s["invalid_reasons"] == {"sanitization: Explicit valence for atom # # C, #": 1}


def test_reason_category_keeps_route_names():
    assert reason_category("xyz2mol: atom 12 has 5 bonds") == "xyz2mol: atom # has # bonds"
