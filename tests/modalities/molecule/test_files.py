"""XYZ/SDF reading and writing: round trips, malformed files (one error naming file and line), bad molecules
(a reason on the record, the rest read normally)."""
import gzip

import numpy as np
import pytest
import torch
from rdkit import Chem

from modalities.molecule.evaluation.files import (MoleculeFileError, MoleculeRecord, molecule_suffix, read_molecules,
                                                  read_sdf, read_xyz, write_sdf, write_xyz)

WATER = "3\nwater\nO 0.0 0.0 0.0\nH 0.9572 0.0 0.0\nH -0.2400 0.9266 0.0\n"
METHANE = ("5\nmethane\nC 0 0 0\nH 0.629 0.629 0.629\nH -0.629 -0.629 0.629\nH -0.629 0.629 -0.629\n"
           "H 0.629 -0.629 -0.629\n")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_multi_molecule_xyz(tmp_path):
    records = read_xyz(write(tmp_path, "two.xyz", WATER + "\n" + METHANE))
    assert [r.name for r in records] == ["water", "methane"]
    assert records[0].atomic_numbers.tolist() == [8, 1, 1] and records[0].positions.shape == (3, 3)
    assert records[0].positions.dtype == torch.float32 and records[1].source.endswith("two.xyz:7")
    assert all(r.problem is None for r in records)


def test_xyz_round_trip(tmp_path):
    z = torch.tensor([6, 8, 1])
    x = torch.tensor([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [-0.5, 0.9, 0.0]])
    write_xyz(tmp_path / "out.xyz", [(z, x, "formyl"), MoleculeRecord(z, x + 1, name="shifted")])
    records = read_xyz(tmp_path / "out.xyz")
    assert [r.name for r in records] == ["formyl", "shifted"]
    torch.testing.assert_close(records[1].positions, x + 1)


@pytest.mark.parametrize("text, line, message", [
    ("three\ncomment\nO 0 0 0\n", 1, "expected an atom count"),
    ("2\nbad coordinate\nO 0 0 0\nH 0.96 zero 0\n", 4, "is not a number"),
    ("3\ntruncated\nO 0 0 0\nH 0.96 0 0\n", 5, "file ends inside a molecule"),
    ("1\nshort line\nO 0 0\n", 3, "expected 'Element x y z'"),
    (WATER + "2\n", 6, "file ends after the atom count"),
    ("", 1, "empty file"),
    ("\n\n", 1, "empty file"),
])
def test_malformed_xyz_names_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, "bad.xyz", text)
    with pytest.raises(MoleculeFileError, match=message) as error:
        read_xyz(path)
    assert f"{path}:{line}:" in str(error.value)


def test_bad_molecules_get_a_reason_and_do_not_stop_the_rest(tmp_path):
    text = (WATER + "2\nunknown element\nXx 0 0 0\nH 1 0 0\n" + "2\nnan\nC 0 0 0\nH nan 0 0\n"
            + "2\noverlap\nC 0 0 0\nH 0.05 0 0\n" + "0\nempty molecule\n" + METHANE)
    records = read_xyz(write(tmp_path, "mixed.xyz", text))
    problems = [r.problem for r in records]
    assert problems[0] is None and problems[-1] is None and len(records) == 6
    assert "unknown element 'Xx' at line 8" in problems[1]
    assert "non-finite coordinates at line 13" in problems[2]
    assert "overlap" in problems[3] and problems[4] == "no atoms"


def molblock(smiles: str) -> str:
    from rdkit.Chem import AllChem
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    mol.SetProp("_Name", smiles)
    return Chem.MolToMolBlock(mol)


def test_read_sdf_keeps_coordinates_and_charge(tmp_path):
    path = write(tmp_path, "two.sdf", molblock("CCO") + "$$$$\n" + molblock("C[NH3+]") + "$$$$\n")
    records = read_sdf(path)
    assert [r.name for r in records] == ["CCO", "C[NH3+]"] and [r.charge for r in records] == [0, 1]
    assert records[0].atomic_numbers.tolist()[:3] == [6, 6, 8] and records[1].source == f"{path}:{len(molblock('CCO').splitlines()) + 2}"


def test_malformed_sdf_names_file_and_line(tmp_path):
    good = molblock("CCO")
    lines = good.splitlines()
    bad_coordinate = lines[:5] + ["    1.0000    abc       0.0000 C   0  0"] + lines[6:]
    path = write(tmp_path, "bad.sdf", good + "$$$$\n" + "\n".join(bad_coordinate) + "\n$$$$\n")
    with pytest.raises(MoleculeFileError, match="is not a number") as error:
        read_sdf(path)
    assert f"{path}:{len(lines) + 1 + 6}:" in str(error.value)

    bad_counts = lines[:3] + ["  x  8  0  0  0  0  0  0  0  0999 V2000"] + lines[4:]
    path = write(tmp_path, "counts.sdf", "\n".join(bad_counts) + "\n$$$$\n")
    with pytest.raises(MoleculeFileError, match="bad counts line") as error:
        read_sdf(path)
    assert f"{path}:4:" in str(error.value)

    path = write(tmp_path, "truncated.sdf", "\n".join(lines[:8]) + "\n")
    with pytest.raises(MoleculeFileError, match="record ends early"):
        read_sdf(path)

    with pytest.raises(MoleculeFileError, match="empty file"):
        read_sdf(write(tmp_path, "empty.sdf", ""))


def test_sdf_unknown_element_is_a_molecule_problem(tmp_path):
    lines = molblock("CCO").splitlines()
    lines[4] = lines[4][:31] + "Qq " + lines[4][34:]
    records = read_sdf(write(tmp_path, "qq.sdf", "\n".join(lines) + "\n$$$$\n" + molblock("CC") + "$$$$\n"))
    assert "unknown element 'Qq' at line 5" in records[0].problem and records[1].problem is None


def test_write_sdf_bonds_from_route_and_atoms_only_fallback(tmp_path):
    z = torch.tensor([6, 8, 1, 1])
    x = torch.tensor([[0.0, 0, 0], [1.21, 0, 0], [-0.55, 0.94, 0], [-0.55, -0.94, 0]])  # formaldehyde
    pentavalent = (torch.tensor([6, 1, 1, 1, 1, 1]),
                   torch.cat([torch.zeros(1, 3), 1.09 * torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]])]))
    nan = (torch.tensor([6, 1]), torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]]))
    path = tmp_path / "out.sdf"
    write_sdf(path, [(z, x, "formaldehyde"), pentavalent, nan, Chem.MolFromSmiles("CC")], route="edm")
    supplier = Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False)
    mols = [supplier[i] for i in (0, 1, 3)]  # record 2 holds "nan" coordinates, which RDKit cannot read
    assert [m.GetNumBonds() for m in mols] == [3, 5, 1]
    assert mols[0].GetBondBetweenAtoms(0, 1).GetBondType() == Chem.BondType.DOUBLE
    assert mols[1].GetProp("invalid_reason").startswith("sanitization") and mols[1].GetProp("bond_route") == "edm"
    assert mols[2].GetProp("bond_route") == "file"
    records = read_sdf(path)  # our reader marks the NaN molecule and reads the others
    assert [r.name for r in records][:2] == ["formaldehyde", "molecule 1"]
    assert [r.problem is None for r in records] == [True, True, False, True]
    assert "non-finite" in records[2].problem


def test_read_molecules_folder_and_unknown_suffix(tmp_path):
    write(tmp_path, "a.xyz", WATER)
    write(tmp_path, "b.sdf", molblock("CC") + "$$$$\n")
    write(tmp_path, "notes.txt", "ignored")
    assert [r.name for r in read_molecules(tmp_path)] == ["water", "CC"]
    with pytest.raises(MoleculeFileError, match="unknown molecule file type"):
        read_molecules(write(tmp_path, "x.pdb", "ATOM"))
    with pytest.raises(FileNotFoundError):
        read_molecules(tmp_path / "missing.xyz")


def test_gzip_files_round_trip_and_are_read_by_suffix(tmp_path):
    z = torch.tensor([8, 1, 1])
    x = torch.tensor([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.24, 0.9266, 0.0]])
    write_xyz(tmp_path / "w.xyz.gz", [(z, x, "water")])
    write_sdf(tmp_path / "w.sdf.gz", [(z, x, "water")])
    assert (tmp_path / "w.xyz.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip magic: really compressed
    for name in ("w.xyz.gz", "w.sdf.gz"):
        records = read_molecules(tmp_path / name)
        assert [r.name for r in records] == ["water"] and records[0].atomic_numbers.tolist() == [8, 1, 1]
        torch.testing.assert_close(records[0].positions, x, atol=1e-4, rtol=0)
    assert gzip.decompress((tmp_path / "w.xyz.gz").read_bytes()).decode() == (
        "3\nwater\nO 0.000000 0.000000 0.000000\nH 0.957200 0.000000 0.000000\nH -0.240000 0.926600 0.000000\n")
    first = (tmp_path / "w.xyz.gz").read_bytes()
    write_xyz(tmp_path / "w.xyz.gz", [(z, x, "water")])
    assert (tmp_path / "w.xyz.gz").read_bytes() == first  # no time stamp: same molecules, same bytes
    assert molecule_suffix("a.SDF.GZ") == ".sdf" and molecule_suffix("a.txt.gz") is None
    write(tmp_path, "plain.xyz", WATER)
    assert [r.name for r in read_molecules(tmp_path)] == ["water", "water", "water"]  # folder: plain and .gz


def test_malformed_gzip_and_errors_inside_gzip_name_the_file(tmp_path):
    broken = tmp_path / "broken.xyz.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(MoleculeFileError, match="not a readable gzip file") as error:
        read_molecules(broken)
    assert str(broken) in str(error.value)
    truncated = tmp_path / "truncated.sdf.gz"
    truncated.write_bytes(gzip.compress((molblock("CCO") + "$$$$\n").encode())[:40])
    with pytest.raises(MoleculeFileError, match="not a readable gzip file") as error:
        read_molecules(truncated)
    assert str(truncated) in str(error.value)
    inside = tmp_path / "bad.xyz.gz"
    inside.write_bytes(gzip.compress(b"2\nbad coordinate\nO 0 0 0\nH 0.96 zero 0\n"))
    with pytest.raises(MoleculeFileError, match="is not a number") as error:
        read_molecules(inside)
    assert f"{inside}:4:" in str(error.value)
