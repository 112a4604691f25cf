"""End-to-end evaluation: metrics objects, `evaluate_molecules`, and the command line."""
import json

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from modalities.molecule.evaluation.bond_lengths import BOND_RULE, BOND_TYPES, pooled_bond_lengths
from modalities.molecule.evaluation.bond_perception import ROUTES
from modalities.molecule.evaluate import Reference, evaluate_molecules, main, markdown_table
from modalities.molecule.evaluation.fcd import statistics_from_smiles
from modalities.molecule.evaluation.files import MoleculeRecord, write_xyz
from modalities.molecule.evaluation.metrics import (MoleculeMetrics, MoleculeStability, MoleculeValidity, assess_molecules,
                                         molecules_from_padded)
from modalities.molecule.evaluation.sample_writer import headline

SMILES = ["CCO", "CC(=O)O", "c1ccccc1", "CC#N", "OCC(N)C=O", "C1CC1", "CCO", "NC(=O)C"]


def embedded(smiles: str, seed: int = 0):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    return (torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()]),
            torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float32))


@pytest.fixture(scope="module")
def molecules():
    return [embedded(s) for s in SMILES]


@pytest.fixture(scope="module")
def toy_reference():
    train = {"CCO", "C1CC1"}
    test = ["CCO", "CCN", "CC(=O)O", "CCC", "OCCO", "C#N", "CC(C)O", "NC=O", "COC", "CC=O"]
    return Reference("toy/split", {route: train for route in ROUTES}, train, 2, statistics_from_smiles(test), 10)


def test_evaluate_molecules_with_reference(molecules, toy_reference):
    result = evaluate_molecules(molecules, toy_reference, workers=0)
    assert result["num_molecules"] == 8 and result["reference"]["name"] == "toy/split"
    assert result["problems"] == []
    for route in ROUTES:
        figures = result["routes"][route]
        assert figures["validity"] == 1.0 and figures["connected"] == 1.0
        assert figures["uniqueness"] == pytest.approx(7 / 8)  # CCO twice
        assert figures["novelty"] == pytest.approx(5 / 7)  # CCO and C1CC1 are in the training set
        assert np.isfinite(figures["fcd"]) and figures["fcd"] > 0
    table = markdown_table(result)
    for route in ROUTES:
        assert f"| {route} | 8 | toy/split |" in table
    assert "| edm (stability) | 8 | toy/split |" in table


def test_one_bad_molecule_does_not_stop_the_rest(molecules):
    z, x = molecules[0]
    nan = x.clone()
    nan[1, 2] = float("nan")
    overlap = x.clone()
    overlap[2] = overlap[1] + 0.01
    bad = [(z, nan), (z, overlap), MoleculeRecord(z, x, source="f.xyz:9", problem="unknown element 'Q' at line 11"),
           (torch.zeros(0, dtype=torch.long), torch.zeros(0, 3))]
    result = evaluate_molecules(molecules + bad, reference=None, fcd=False)
    assert result["num_molecules"] == 12
    for route in ROUTES:
        assert result["routes"][route]["validity"] == pytest.approx(8 / 12)
    reasons = [p["reason"] for p in result["problems"]]
    assert [p["index"] for p in result["problems"]] == [8, 9, 10, 11]
    assert "non-finite" in reasons[0] and "overlap" in reasons[1] and reasons[3] == "no atoms"
    assert result["problems"][2]["source"] == "f.xyz:9"
    assert result["stability"]["molecule_stability"] <= 8 / 12


def test_parallel_and_serial_agree():
    from modalities.molecule.data.qm9 import load_qm9
    data = load_qm9()
    mols = [data.molecule(i) for i in range(0, 40_000, 100)]  # 400 molecules
    assert assess_molecules(mols, workers=2) == assess_molecules(mols, workers=0)


def test_metrics_accumulate_over_padded_batches(molecules):
    n = max(len(z) for z, _ in molecules)
    numbers = torch.zeros(len(molecules), n, dtype=torch.long)
    positions = torch.zeros(len(molecules), n, 3)
    mask = torch.zeros(len(molecules), n, dtype=torch.bool)
    for i, (z, x) in enumerate(molecules):
        numbers[i, :len(z)], positions[i, :len(z)], mask[i, :len(z)] = z, x, True
    unpadded = molecules_from_padded(numbers, positions, mask)
    stability, validity, whole = MoleculeStability(), MoleculeValidity("xyz2mol"), MoleculeMetrics()
    for metric in (stability, validity, whole):
        metric.update(unpadded[:3])
        metric.update(unpadded[3:])
    assert stability.compute()["num_molecules"] == 8
    assert validity.compute()["xyz2mol/uniqueness"] == pytest.approx(7 / 8)
    assert whole.compute()["atom_stability"] == stability.compute()["atom_stability"]
    assert len(validity.smiles["xyz2mol"]) == 8
    validity.reset()
    assert validity.smiles["xyz2mol"] == [] and validity.compute()["num_molecules"] == 0


def test_command_line_writes_table_and_json(tmp_path, molecules, capsys):
    write_xyz(tmp_path / "samples.xyz", molecules)
    out = tmp_path / "results.json"
    code = main([str(tmp_path / "samples.xyz"), "--reference", "none", "--no-fcd", "--workers", "1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| openbabel | 8 | none |" in printed and "| edm (stability) | 8 | none |" in printed
    saved = json.loads(out.read_text())
    assert saved["routes"]["edm"]["validity"] == 1.0 and saved["input"].endswith("samples.xyz")


def test_command_line_reports_malformed_file(tmp_path, capsys):
    bad = tmp_path / "bad.xyz"
    bad.write_text("2\ncomment\nC 0 0 0\nH 1.0 oops 0\n")
    assert main([str(bad), "--reference", "none"]) == 2
    assert f"{bad}:4:" in capsys.readouterr().err


def test_bond_lengths_in_result_table_and_headline(molecules):
    arrays = [(z.numpy(), x.numpy()) for z, x in molecules]
    lengths, used, _ = pooled_bond_lengths(arrays)
    reference = Reference("toy/split", {route: set() for route in ROUTES}, set(), 0, None, 8, lengths, used)
    result = evaluate_molecules(molecules, reference, routes=("edm",), fcd=False)
    bonds = result["bond_lengths"]
    assert bonds["rule"] == BOND_RULE and bonds["molecules_used"] == 8 and bonds["molecules_left_out"] == 0
    assert all(bonds["w1_angstrom"][kind] == 0 for kind in ("C-C", "C-H", "C-O", "O-H"))
    assert bonds["median_angstrom"] == bonds["reference_median_angstrom"]
    flat = headline(result)
    assert flat["bond_w1/C-C"] == 0 and 1.4 < flat["bond_median/C-C"] < 1.6 and 1.0 < flat["bond_median/C-H"] < 1.2
    assert set(BOND_TYPES) == {k.split("/")[1] for k in flat if k.startswith("bond_w1/")}
    table = markdown_table(result)
    assert "| W1 (Å) vs toy/split test | 0.0000 |" in table and BOND_RULE in table
    unreferenced = evaluate_molecules(molecules, None, routes=("edm",), fcd=False)
    assert headline(unreferenced)["bond_w1/C-H"] is None and "W1" not in markdown_table(unreferenced)


class TinyQM9:
    """Stands in for load_qm9(): two molecules, one in the test split."""

    smiles = ["O", "C"]

    def split_indices(self, split):
        return {"train": torch.tensor([0]), "test": torch.tensor([1])}

    def molecule(self, i):
        water = (torch.tensor([8, 1, 1]), torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
        methane = (torch.tensor([6, 1, 1, 1, 1]), torch.tensor([[0.0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                                                [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]))
        return (water, methane)[i]


def test_reference_bond_lengths_are_cached_and_the_first_build_says_so(tmp_path, monkeypatch, capsys):
    import modalities.molecule.data.qm9 as qm9
    import modalities.molecule.evaluate as evaluate
    monkeypatch.setattr(qm9, "load_qm9", lambda cache_dir=None: TinyQM9())
    lengths, used = evaluate.qm9_test_bond_lengths("edm", tmp_path)
    assert "building a reference cache (first run only): bond lengths of the edm test split" in capsys.readouterr().err
    assert used == 1 and sorted(lengths) == ["C-H"] and np.allclose(lengths["C-H"], 0.63 * np.sqrt(3))
    assert len(list((tmp_path / "molecule_eval").glob("qm9_edm_test_bond_lengths_*.npz"))) == 1
    monkeypatch.setattr(evaluate, "pooled_bond_lengths", lambda *a: pytest.fail("cache not used"))
    cached, cached_used = evaluate.qm9_test_bond_lengths("edm", tmp_path)
    assert cached_used == 1 and np.array_equal(cached["C-H"], lengths["C-H"])
    assert "building" not in capsys.readouterr().err


def test_command_line_reads_gzip_and_names_a_broken_archive(tmp_path, molecules, capsys):
    write_xyz(tmp_path / "samples.xyz.gz", molecules)
    assert main([str(tmp_path / "samples.xyz.gz"), "--reference", "none", "--no-fcd", "--routes", "edm",
                 "--workers", "1"]) == 0
    assert "| edm | 8 | none |" in capsys.readouterr().out
    broken = tmp_path / "broken.sdf.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    assert main([str(broken), "--reference", "none"]) == 2
    assert f"{broken}: not a readable gzip file" in capsys.readouterr().err
