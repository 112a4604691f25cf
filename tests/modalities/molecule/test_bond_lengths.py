"""Bond-length fidelity: the bond rule on hand-made molecules, W1 on known inputs, the cached reference."""
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from modalities.molecule.evaluation.bond_lengths import (BOND_TYPES, bond_length_report, bond_length_w1, bond_lengths,
                                                         bond_type, pooled_bond_lengths)
from known_molecules import benzene

WATER = (np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]))


@pytest.fixture(scope="module")
def molecules():
    out = []
    for seed, smiles in enumerate(["CCO", "CC(=O)NC", "c1ccncc1", "OCC#N", "CC(C)(C)O", "NC(=O)CO", "C1CC1N"]):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=seed)
        AllChem.MMFFOptimizeMolecule(mol)
        out.append((np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()))
    return out


def test_bond_type_names():
    assert [bond_type(a, b) for a, b in [(6, 6), (1, 6), (6, 7), (8, 6), (1, 8), (7, 1), (8, 7), (9, 6)]] == \
        ["C-C", "C-H", "C-N", "C-O", "O-H", "N-H", "N-O", "C-F"]


def test_hand_made_molecules_give_their_bonds():
    lengths = bond_lengths(*WATER)
    assert sorted(lengths) == ["O-H"]  # the H...H pair (1.52 Å) is no bond
    np.testing.assert_allclose(np.sort(lengths["O-H"]), [0.96, np.hypot(0.24, 0.93)])
    lengths = bond_lengths(*benzene(1.39, 1.39))
    assert sorted(lengths) == ["C-C", "C-H"]  # no 1-3 C...C (2.41 Å) or H...H pair
    np.testing.assert_allclose(lengths["C-C"], [1.39] * 6, atol=1e-12)
    np.testing.assert_allclose(lengths["C-H"], [1.087] * 6, atol=1e-12)


def test_shrunk_bonds_still_count_and_stretched_ones_vanish():
    z, x = benzene(1.39, 1.39)
    assert len(bond_lengths(z, 0.8 * x)["C-C"]) == 6  # 1.11 Å: still a bond (below 1.54 + 0.10)
    assert "C-C" not in bond_lengths(z, 1.25 * x)  # 1.74 Å: past the cutoff, no bond


def test_w1_zero_against_itself_and_scale_times_mean_for_a_scaled_copy(molecules):
    reference, used, left_out = pooled_bond_lengths(molecules)
    assert used == len(molecules) and left_out == 0
    assert all(value == 0 for value in bond_length_w1(reference, reference).values())
    scaled, _, _ = pooled_bond_lengths((z, 1.02 * x) for z, x in molecules)
    w1 = bond_length_w1(scaled, reference)
    for kind in BOND_TYPES:  # every bond survives a 2 % stretch, so W1 = 0.02 x mean length exactly
        assert w1[kind] == pytest.approx(0.02 * reference[kind].mean(), rel=1e-9)


def test_missing_types_are_none_and_bad_molecules_are_counted(molecules):
    z, x = molecules[0]
    nan = x.copy()
    nan[0] = np.nan
    lengths, used, left_out = pooled_bond_lengths([WATER, (z, nan), (z[:0], x[:0])])
    assert (used, left_out) == (1, 2)
    reference, _, _ = pooled_bond_lengths(molecules)
    w1 = bond_length_w1(lengths, reference)
    assert w1["O-H"] > 0 and w1["C-C"] is None
    report = bond_length_report(lengths, used, left_out, reference, len(molecules))
    assert report["molecules_left_out"] == 2 and report["bonds_per_molecule"]["O-H"] == 2.0
    assert report["median_angstrom"]["C-H"] is None and report["reference_median_angstrom"]["C-H"] > 1.0
    assert "w1_angstrom" not in bond_length_report(lengths, used, left_out)
