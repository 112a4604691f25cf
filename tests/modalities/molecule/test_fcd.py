"""FCD with fcd-torch's ChemNet (offline weights)."""
import functools
import sys

import numpy as np
import pytest

from modalities.molecule.evaluation import fcd as fcd_module
from modalities.molecule.evaluation.fcd import (FCDStatistics, cached_reference_statistics, chemnet_activations, fcd,
                                     frechet_distance, statistics_from_smiles, statistics_of_sets)
from modalities.molecule.evaluation.metrics import FrechetChemNetDistance


@functools.lru_cache(maxsize=1)
def qm9_train_smiles() -> list[str]:
    from modalities.molecule.data.qm9 import load_qm9
    data = load_qm9()
    return [data.smiles[i] for i in data.split_indices("edm")["train"][:1600].tolist()]


@functools.lru_cache(maxsize=1)
def qm9_activations() -> np.ndarray:
    return chemnet_activations(qm9_train_smiles())  # [1600, 512], one ChemNet pass shared by the tests


def test_fcd_of_a_set_with_itself_is_zero():
    stats = FCDStatistics.from_activations(qm9_activations()[:800])
    assert abs(frechet_distance(stats, stats)) < 1e-6


def test_disjoint_qm9_subsets_are_close_and_other_chemistry_is_far():
    a = FCDStatistics.from_activations(qm9_activations()[:800])
    b = FCDStatistics.from_activations(qm9_activations()[800:])
    within = frechet_distance(a, b)
    # Long chains with halogens: nothing like QM9.
    other = statistics_from_smiles(["C" * k + "Cl" for k in range(10, 40)] + ["Br" + "C" * k + "I" for k in range(10, 40)])
    # Two disjoint 800-molecule QM9 samples: FCD 0.86, finite-sample bias (10,000 vs 10,000 gives 0.07:
    # benchmarks/results/qm9_data_figures.md).
    assert 0 < within < 1.5
    assert frechet_distance(a, other) > 20 * within


def test_same_activations_and_distance_as_fcd_torch():
    from fcd_torch import FCD
    from fcd_torch.utils import calculate_frechet_distance
    smiles = qm9_train_smiles()[:50]
    np.testing.assert_allclose(chemnet_activations(smiles), FCD(device="cpu", n_jobs=1).get_predictions(smiles),
                               atol=1e-5)
    rng = np.random.default_rng(0)  # well-conditioned 64-d Gaussians: scipy's sqrtm is exact there
    x, y = rng.normal(size=(400, 64)), rng.normal(size=(400, 64)) @ rng.normal(size=(64, 64)) * 0.3 + 0.1
    a, b = FCDStatistics.from_activations(x), FCDStatistics.from_activations(y)
    assert frechet_distance(a, b) == pytest.approx(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma), rel=1e-8)


def test_metric_from_sums_matches_direct_statistics():
    smiles = qm9_train_smiles()[:200]
    reference = FCDStatistics.from_activations(qm9_activations()[800:])
    metric = FrechetChemNetDistance(reference)
    metric.update(smiles[:100])
    metric.update(smiles[100:])
    assert float(metric.compute()) == pytest.approx(fcd(smiles, reference), rel=1e-6, abs=1e-6)


def test_statistics_of_sets_share_one_chemnet_pass():
    smiles = qm9_train_smiles()[:120]
    sets = statistics_of_sets({"a": smiles[:80], "b": smiles[40:] + smiles[40:60], "tiny": smiles[:1]})
    assert sets["tiny"] is None
    np.testing.assert_allclose(sets["a"].mu, statistics_from_smiles(smiles[:80]).mu, atol=1e-6)
    np.testing.assert_allclose(sets["b"].sigma, statistics_from_smiles(smiles[40:] + smiles[40:60]).sigma, atol=1e-6)


def test_statistics_from_sums_equal_numpy_covariance():
    a = np.random.default_rng(0).normal(size=(50, 512))
    direct = FCDStatistics.from_activations(a)
    summed = FCDStatistics.from_sums(a.sum(0), a.T @ a, 50)
    np.testing.assert_allclose(summed.mu, direct.mu, atol=1e-12)
    np.testing.assert_allclose(summed.sigma, direct.sigma, atol=1e-10)


def test_reference_statistics_are_cached(tmp_path, monkeypatch):
    smiles = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "C#N"]
    first = cached_reference_statistics(smiles, "toy", tmp_path)
    monkeypatch.setattr(fcd_module, "statistics_from_smiles", lambda *a, **k: pytest.fail("recomputed"))
    second = cached_reference_statistics(smiles, "toy", tmp_path)
    np.testing.assert_array_equal(first.mu, second.mu)
    assert len(list((tmp_path / "fcd").glob("toy_*.npz"))) == 1


def test_activations_shape_and_empty_input():
    assert chemnet_activations(["CCO", "C"]).shape == (2, 512)
    assert chemnet_activations([]).shape == (0, 512)
    with pytest.raises(ValueError, match="at least 2"):
        FCDStatistics.from_activations(np.zeros((1, 512)))


def test_missing_fcd_torch_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "fcd_torch", None)
    monkeypatch.setattr(fcd_module, "_CHEMNET", {})
    with pytest.raises(ImportError, match="pip install fcd-torch"):
        fcd_module.chemnet()
