"""The real-GEOM `rdkit_folder` loader, on a tiny rdkit_folder the test builds (summary + pickles)."""
import gzip
import json
import pickle

import numpy as np
import pytest

pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402
from rdkit.Chem import rdDistGeom  # noqa: E402

from modalities.molecule.data.geom_build import main as build_main  # noqa: E402
from modalities.molecule.data.geom_cache import build_cache, failure_messages, load_cached  # noqa: E402
from modalities.molecule.data.geom_conformers import Conformer, Failure  # noqa: E402
from modalities.molecule.data.geom_rdkit_folder import (GeomFolderMissing, lowest_energy_conformer,  # noqa: E402
                                                        pickle_paths_for, rdkit_folder, read_summary)

SPLIT = ["CCO", "Oc1ccccc1", "CC#N", "CCCl", "C[NH3+]"]


def _geom_pickle(smiles: str, energies: list[float]) -> dict:
    """A GEOM-style record: one rd_mol (explicit H, one conformer) per conformer, with its totalenergy."""
    conformers = []
    for seed, energy in enumerate(energies):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        rdDistGeom.EmbedMolecule(mol, randomSeed=seed)
        conformers.append({"rd_mol": mol, "totalenergy": energy, "boltzmannweight": 0.5, "geom_id": seed})
    return {"smiles": smiles, "charge": 0, "uniqueconfs": len(energies), "conformers": conformers}


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "rdkit_folder"
    (root / "drugs").mkdir(parents=True)
    (root / "drugs" / "ethanol.pickle").write_bytes(pickle.dumps(_geom_pickle("CCO", [-154.9, -155.1, -155.0])))
    (root / "drugs" / "phenol.pickle").write_bytes(b"\x80\x04not a pickle at all")
    (root / "drugs" / "methylammonium.pickle").write_bytes(pickle.dumps(_geom_pickle("C[NH3+]", [-95.0])))
    summary = {
        "OCC": {"pickle_path": "drugs/ethanol.pickle", "charge": 0},  # GEOM's key is not RDKit-canonical
        "Oc1ccccc1": {"pickle_path": "drugs/phenol.pickle", "charge": 0},
        "CC#N": {"charge": 0},  # listed without conformers
        "C[NH3+]": {"pickle_path": "drugs/methylammonium.pickle", "charge": 1},
    }
    (root / "summary_drugs.json").write_text(json.dumps(summary))
    return root


def test_split_smiles_find_their_pickles_exactly_or_canonically(folder):
    paths = pickle_paths_for(SPLIT, folder)
    assert paths[0].endswith("drugs/ethanol.pickle")  # "CCO" found through the canonical form of "OCC"
    assert paths[1].endswith("drugs/phenol.pickle")
    assert paths[2] is None and paths[3] is None
    assert paths[4].endswith("drugs/methylammonium.pickle")


def test_lowest_energy_conformer_is_taken(folder):
    record = pickle.loads((folder / "drugs" / "ethanol.pickle").read_bytes())
    result = lowest_energy_conformer(folder / "drugs" / "ethanol.pickle", "GEOM-Drugs test #0 (CCO)")
    assert isinstance(result, Conformer)
    assert result.energy == -155.1
    np.testing.assert_allclose(result.positions, record["conformers"][1]["rd_mol"].GetConformer().GetPositions(),
                               atol=1e-6)
    assert result.atomic_numbers.tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]


def test_malformed_pickle_is_one_failure_naming_the_file(folder, tmp_path):
    result = lowest_energy_conformer(folder / "drugs" / "phenol.pickle", "GEOM-Drugs test #1 (Oc1ccccc1)")
    assert isinstance(result, Failure) and result.reason == "pickle"
    assert "GEOM-Drugs test #1 (Oc1ccccc1)" in result.message and "phenol.pickle" in result.message
    (tmp_path / "empty.pickle").write_bytes(pickle.dumps({"conformers": [{"rd_mol": None}]}))
    assert lowest_energy_conformer(tmp_path / "empty.pickle", "x").reason == "no_conformer"
    (tmp_path / "list.pickle").write_bytes(pickle.dumps([1, 2]))
    assert lowest_energy_conformer(tmp_path / "list.pickle", "x").reason == "pickle"


def test_cache_from_the_folder_keeps_good_molecules_and_counts_the_rest(folder, tmp_path):
    summary = build_cache("rdkit_folder", "test", SPLIT, limit=None, workers=0, shard_size=10, cache_dir=tmp_path,
                          pickle_paths=pickle_paths_for(SPLIT, folder))
    assert summary["molecules"] == 2
    assert summary["failures"] == {"pickle": 1, "not_in_summary": 2}
    data = load_cached("rdkit_folder", "test", None, tmp_path)
    assert sorted(data.smiles) == ["CCO", "C[NH3+]"]
    charged = data.smiles.index("C[NH3+]")
    assert int(data.molecule(charged)[1].sum()) == 1
    messages = {f["smiles"]: f["message"] for f in failure_messages("rdkit_folder", "test", tmp_path)}
    assert "phenol.pickle" in messages["Oc1ccccc1"] and "summary_drugs.json" in messages["CCCl"]


def test_folder_is_found_through_config_or_environment(folder, tmp_path, monkeypatch):
    monkeypatch.delenv("UNITE_GEOM_RDKIT_FOLDER", raising=False)
    with pytest.raises(GeomFolderMissing, match="UNITE_GEOM_RDKIT_FOLDER"):
        rdkit_folder(None)
    with pytest.raises(GeomFolderMissing, match="no summary_drugs.json"):
        rdkit_folder(tmp_path)
    monkeypatch.setenv("UNITE_GEOM_RDKIT_FOLDER", str(folder))
    assert rdkit_folder(None) == folder


def test_malformed_summary_names_the_file(tmp_path):
    (tmp_path / "summary_drugs.json").write_text("{not json")
    with pytest.raises(ValueError, match="summary_drugs.json: not a readable JSON file"):
        read_summary(tmp_path)


def test_command_line_reads_the_folder(folder, tmp_path):
    with gzip.open(tmp_path / "test.smi.gz", "wt") as handle:
        handle.write("\n".join(SPLIT) + "\n")
    report = build_main(["--split", "test", "--source", "rdkit_folder", "--rdkit-folder", str(folder),
                         "--smiles-root", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--workers", "0"])
    assert report["coordinates"].startswith("GEOM-CREST") and report["molecules"] == 2
