"""The published match protocol: same InChI after OpenBabel bond perception (ADiT / pymatgen MoleculeMatcher)."""
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.spatial.transform import Rotation

from modalities.molecule.evaluation.inchi import inchi_match, openbabel_inchi


def embedded(smiles: str) -> tuple[np.ndarray, np.ndarray]:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    AllChem.MMFFOptimizeMolecule(mol)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def rotated_and_reordered(z: np.ndarray, x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(z))
    return z[order], (x @ Rotation.random(random_state=seed).as_matrix().T + rng.normal(size=3))[order]


def test_inchi_of_known_molecules():
    assert openbabel_inchi(*embedded("CCO")) == "InChI=1S/C2H6O/c1-2-3/h3H,2H2,1H3"
    assert openbabel_inchi(*embedded("COC")) == "InChI=1S/C2H6O/c1-3-2/h1-2H3"


@pytest.mark.parametrize("smiles", ["CCO", "C[C@H](N)C(=O)O", "c1ccncc1", "C/C=C/C#N"])
def test_rotated_and_reordered_copy_matches(smiles):
    z, x = embedded(smiles)
    assert inchi_match(*rotated_and_reordered(z, x), z, x) is True


@pytest.mark.parametrize("a, b", [("CCO", "COC"), ("CCCO", "CC(C)O"), ("CC=O", "C=CO")])
def test_isomers_do_not_match(a, b):
    # same formula, different connectivity (or H placement: acetaldehyde vs its enol tautomer)
    assert inchi_match(*embedded(a), *embedded(b)) is False


def test_mirror_image_matches_only_when_achiral():
    z, x = embedded("C[C@H](N)C(=O)O")  # L-alanine: the mirror image is D-alanine, stereo layer /m differs
    mirror = x * np.array([-1.0, 1.0, 1.0])
    assert inchi_match(z, mirror, z, x) is False
    z, x = embedded("CC(C)O")  # achiral: its mirror image is the same molecule
    assert inchi_match(z, x * np.array([-1.0, 1.0, 1.0]), z, x) is True


def test_lenient_about_lengths_strict_about_hydrogens():
    z, x = embedded("CC(C)=O")
    assert inchi_match(z, 1.1 * x, z, x) is True  # connectivity from covalent radii + 0.45 Å; no bond orders
    assert inchi_match(z[:-1], x[:-1], z, x) is False  # one H missing: a radical, another formula


def test_no_inchi_for_impossible_atoms():
    z, x = embedded("CCO")
    nan = x.copy()
    nan[0] = np.nan
    assert openbabel_inchi(z, nan) is None and openbabel_inchi(z[:0], x[:0]) is None
    assert inchi_match(z, x, z, nan) is None  # target without identity: left out
    assert inchi_match(z, nan, z, x) is False
