"""GEOM-Drugs evaluation on known molecules: connectivity, largest-fragment validity, EDM's GEOM stability."""
import numpy as np
import pytest

pytest.importorskip("rdkit")
from modalities.molecule.data.geom_conformers import rdkit_conformer  # noqa: E402
from modalities.molecule.evaluation.geom_data_figures import main as figures_main  # noqa: E402
from modalities.molecule.evaluation.geom_metrics import (assess_geom_molecule, assess_geom_route,  # noqa: E402
                                                         summarize_geom)


def _molecule(smiles: str):
    c = rdkit_conformer(smiles, seed=0, where=smiles)
    return c.atomic_numbers.astype(np.int64), c.formal_charges.astype(np.int64), c.positions.astype(np.float64)


def _far(z, q, x, extra_z, extra_x):
    """The molecule plus atoms 20 Å away: a second fragment."""
    return (np.concatenate([z, extra_z]), np.concatenate([q, np.zeros(len(extra_z), dtype=np.int64)]),
            np.concatenate([x, np.asarray(extra_x, dtype=np.float64) + 20.0]))


@pytest.mark.parametrize("route", ["edm", "xyz2mol"])
def test_one_neutral_molecule_is_connected_valid_and_stable(route):
    z, q, x = _molecule("CCO")
    result = assess_geom_route(route, z, q, x)
    assert result.connected and result.valid and result.largest_fragment_valid and result.num_fragments == 1
    assert assess_geom_molecule(z, q, x).molecule_stable  # every atom at its EDM valence


@pytest.mark.parametrize("route", ["edm", "xyz2mol"])
def test_a_distant_water_disconnects_but_keeps_validity(route):
    z, q, x = _far(*_molecule("CCO"), np.array([8, 1, 1]), [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    result = assess_geom_route(route, z, q, x)
    assert not result.connected and result.num_fragments == 2
    assert result.valid and result.largest_fragment_valid


def test_an_invalid_small_fragment_spoils_validity_not_largest_fragment_validity():
    # F-F-F chain (1.42 Å): EDM's table bonds the middle F twice, a valence RDKit refuses
    z, q, x = _far(*_molecule("CCO"), np.array([9, 9, 9]), [[0, 0, 0], [1.42, 0, 0], [2.84, 0, 0]])
    result = assess_geom_route("edm", z, q, x)
    assert not result.valid and result.largest_fragment_valid and not result.connected


def test_formal_charges_make_a_charged_molecule_perceivable():
    z, q, x = _molecule("CC(=O)[O-]")  # acetate: odd electron count without its charge
    assert assess_geom_route("xyz2mol", z, q, x).valid
    assert not assess_geom_route("xyz2mol", z, None, x).valid


def test_edm_geom_stability_counts_a_charged_nitrogen_unstable():
    """EDM's rule has no charges: the N of tetramethylammonium has 4 bonds, not 3."""
    z, q, x = _molecule("C[N+](C)(C)C")
    result = assess_geom_molecule(z, q, x)
    assert not result.molecule_stable and result.num_stable_atoms == result.num_atoms - 1


def test_summary_pools_atoms_and_molecules():
    results = [assess_geom_molecule(*_molecule(s)) for s in ("CCO", "C[N+](C)(C)C")]
    summary = summarize_geom(results)
    atoms = sum(r.num_atoms for r in results)
    assert summary["atom_stability"] == pytest.approx((atoms - 1) / atoms)
    assert summary["molecule_stability"] == 0.5
    assert summary["routes"]["xyz2mol"]["validity"] == 1.0 and summary["routes"]["edm"]["connected"] == 1.0


def test_data_figures_command_labels_its_coordinates(tmp_path):
    from modalities.molecule.data.geom_cache import build_cache
    build_cache("rdkit_conformers", "test", ["CCO", "CC(=O)[O-]", "C1CC"], limit=None, workers=0, shard_size=2,
                cache_dir=tmp_path)
    figures = figures_main(["--split", "test", "--cache-dir", str(tmp_path), "--workers", "0",
                            "--out", str(tmp_path / "out")])
    assert figures["num_molecules"] == 2 and figures["failures_in_shards"]["parse"] == 1
    assert "not GEOM-CREST" in (tmp_path / "out" / "geom_data_test.md").read_text()
