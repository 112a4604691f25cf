"""core/analysis/spectra.py against closed forms: entropy of known histograms, PCA spectrum of scaled axes,
effective rank (Roy & Vetterli 2007) of matrices with known singular values, PCA truncation."""
import math

import pytest
import torch

from core.analysis.spectra import (effective_rank, histogram_entropy_bits, pca_basis, pca_spectrum,
                                   truncate_to_components)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_uniform_histogram_over_2_to_the_k_bins_has_k_bits(k):
    bins = 2 ** k
    # values i / (bins - 1): bins equal bins over [0, 1] hold one each (the maximum falls in the last bin)
    values = (torch.arange(bins, dtype=torch.float64) / (bins - 1)).repeat(3)
    assert math.isclose(histogram_entropy_bits(values, bins=bins), k, rel_tol=1e-12)


def test_entropy_of_a_known_unequal_histogram():
    """Bin centres of 4 bins over [0, 1] with counts 1, 2, 3, 2 (the range pinned by 0 and 1 in the end bins):
    H = -sum p log2 p with p = (1, 2, 3, 2) / 8."""
    centres = [0.125, 0.375, 0.625, 0.875]
    values = torch.tensor([0.0] + [centres[1]] * 2 + [centres[2]] * 3 + [centres[3], 1.0], dtype=torch.float64)
    p = torch.tensor([1, 2, 3, 2], dtype=torch.float64) / 8
    assert math.isclose(histogram_entropy_bits(values, bins=4), float(-(p * p.log2()).sum()), rel_tol=1e-12)


def test_two_point_histogram_and_constant_tensor():
    assert math.isclose(histogram_entropy_bits(torch.tensor([0.0, 0.0, 0.0, 1.0]), bins=16),
                        -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert histogram_entropy_bits(torch.ones(10)) == 0.0
    # a fixed bin count: the entropy does not depend on the scale or offset of the tensor
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert math.isclose(histogram_entropy_bits(x, 64), histogram_entropy_bits(3 * x + 5, 64), rel_tol=1e-9)
    with pytest.raises(ValueError, match="bins=0"):
        histogram_entropy_bits(x, 0)


def test_effective_rank_of_equal_singular_values_is_the_rank():
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    for r in (1, 4, 10):
        s = torch.zeros(10, dtype=torch.float64)
        s[:r] = 3.0
        matrix = u[:, :10] @ torch.diag(s) @ v.T
        assert math.isclose(effective_rank(matrix), r, rel_tol=1e-9)
    assert effective_rank(torch.zeros(4, 3)) == 0.0


def test_effective_rank_of_a_low_rank_product_with_known_singular_values():
    """A = U diag(4, 2, 1, 1) V' (rank 4 in a 30 x 12 matrix): p = (4, 2, 1, 1) / 8, erank = exp(H(p))."""
    g = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(30, 4, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(12, 4, generator=g, dtype=torch.float64))
    sigma = torch.tensor([4.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    p = sigma / sigma.sum()
    expected = math.exp(float(-(p * p.log()).sum()))
    assert math.isclose(effective_rank(u @ torch.diag(sigma) @ v.T), expected, rel_tol=1e-9)
    assert 1 < expected < 4
    with pytest.raises(ValueError, match="effective_rank"):
        effective_rank(torch.ones(3))


def test_pca_spectrum_of_scaled_axes():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100_000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    spectrum = pca_spectrum(x)
    assert torch.allclose(spectrum, torch.tensor([9.0, 1.0, 0.25], dtype=torch.float64), rtol=0.02)
    with pytest.raises(ValueError, match="pca_spectrum"):
        pca_spectrum(torch.ones(1, 3))


def test_truncation_keeps_the_top_components():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(500, 4, generator=g, dtype=torch.float64) * torch.tensor([5.0, 2.0, 0.1, 0.01], dtype=torch.float64)
    mean, axes = pca_basis(x)
    assert torch.allclose(truncate_to_components(x, mean, axes, 4), x, atol=1e-10)
    two = truncate_to_components(x, mean, axes, 2)
    # what is lost is the variance of the two small axes: 0.1^2 + 0.01^2 per item, to sampling error
    lost = float((two - x).pow(2).sum(1).mean())
    assert math.isclose(lost, float(pca_spectrum(x)[2:].sum()) * 499 / 500, rel_tol=1e-9)
    assert math.isclose(lost, 0.1 ** 2 + 0.01 ** 2, rel_tol=0.2)
    assert torch.allclose(truncate_to_components(x, mean, axes, 0), mean.expand_as(x))
    with pytest.raises(ValueError, match="k=5"):
        truncate_to_components(x, mean, axes, 5)
