"""The memorisation check on known inputs: training molecules match themselves, scrambled ones do not."""
import numpy as np
import pytest
from omegaconf import OmegaConf

from benchmarks.memorisation_match import match_report, training_molecules


@pytest.fixture(scope="module")
def training():
    config = OmegaConf.create({"modality": {"split_scheme": "edm", "elements": ["H", "C", "N", "O", "F"],
                                            "train_subset": 16, "cache_dir": None}})
    return training_molecules(config)


def test_training_molecules_match_themselves_and_noise_does_not(training):
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = [(z, x @ rotation.T + 1.5) for z, x in training[:8]]  # rigid motions keep the identity
    report = match_report(moved, training)
    assert report["training_molecules"] == 16 and report["training_match"] == 1.0
    assert report["distinct_training_molecules_reproduced"] == 8  # eight different QM9 molecules
    assert report["atom_stability"] > 0.95 and report["training_match_among_valid"] == 1.0
    scrambled = [(z, rng.normal(scale=1.5, size=x.shape)) for z, x in training[:8]]
    noise = match_report(scrambled, training)
    assert noise["training_match"] == 0.0 and noise["molecule_stability"] == 0.0


def test_rmsd_to_the_training_molecule_with_the_same_atom_list(training):
    rng = np.random.default_rng(1)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation *= np.sign(np.linalg.det(rotation))  # proper: Kabsch aligns rotations, not reflections
    exact = match_report([(z, x @ rotation.T - 2.0) for z, x in training[:4]], training)
    assert exact["same_atom_list_as_a_training_molecule"] == 1.0
    assert exact["same_atom_list_rmsd_quantiles"]["q90"] < 1e-6
    z, x = training[0]
    shifted = x.copy()
    shifted[0] += np.array([0.0, 0.0, 0.5])  # one atom 0.5 A off: RMSD <= 0.5 / sqrt(n) (alignment may lower it)
    one_off = match_report([(z, shifted)], training)["same_atom_list_rmsd_quantiles"]["q50"]
    assert 0.0 < one_off <= 0.5 / np.sqrt(len(z)) + 1e-9
    fluorines = match_report([(np.full_like(z, 9), x)], training)  # no QM9 molecule is all fluorine
    assert fluorines["same_atom_list_as_a_training_molecule"] == 0.0 and fluorines["same_atom_list_rmsd_quantiles"] is None
