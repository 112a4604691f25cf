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
