"""core/analysis/regression.py: closed-form ridge recovers a known linear map, R^2 of noise is ~0."""
import math

import pytest
import torch

from core.analysis.regression import fit_ridge, r_squared, ridge_probe


def _data(n=2000, f=6, t=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    # features of unequal scales and offsets: the fit standardises them, the map comes back in their units
    x = torch.randn(n, f, generator=g, dtype=torch.float64) * torch.linspace(0.1, 10.0, f, dtype=torch.float64) + 4.0
    weight = torch.randn(f, t, generator=g, dtype=torch.float64)
    bias = torch.randn(t, generator=g, dtype=torch.float64)
    return x, weight, bias, g


def test_least_squares_recovers_a_known_linear_map():
    x, weight, bias, _ = _data()
    fitted = fit_ridge(x, x @ weight + bias, l2=0.0)
    assert torch.allclose(fitted.weight, weight, atol=1e-9) and torch.allclose(fitted.bias, bias, atol=1e-8)
    r2 = ridge_probe(x[:1500], (x @ weight + bias)[:1500], x[1500:], (x @ weight + bias)[1500:], l2=0.0)
    assert torch.allclose(r2, torch.ones(2, dtype=torch.float64), atol=1e-12)


def test_ridge_is_the_closed_form_on_standardised_features():
    x, weight, bias, g = _data(n=300)
    y = x @ weight + bias + torch.randn(300, 2, generator=g, dtype=torch.float64)
    l2 = 0.1
    fitted = fit_ridge(x, y, l2)
    xs = (x - x.mean(0)) / x.std(0)
    expected = torch.linalg.solve(xs.T @ xs + l2 * 300 * torch.eye(6, dtype=torch.float64), xs.T @ (y - y.mean(0)))
    assert torch.allclose(fitted.weight * x.std(0)[:, None], expected, atol=1e-10)
    assert torch.allclose(fitted(x.mean(0, keepdim=True)), y.mean(0, keepdim=True), atol=1e-10)  # through the means
    # shrinkage: a larger penalty gives a smaller standardised map
    assert float((fit_ridge(x, y, 10.0).weight * x.std(0)[:, None]).norm()) < float(expected.norm())


def test_r_squared_of_noise_is_near_zero_and_of_the_mean_is_zero():
    x, _, _, g = _data()
    noise = torch.randn(2000, generator=g, dtype=torch.float64)
    r2 = float(ridge_probe(x[:1500], noise[:1500], x[1500:], noise[1500:])[0])
    assert -0.03 < r2 < 0.02  # expected about -F / n_train = -0.004: a fitted map of pure noise adds its error
    target = torch.randn(100, 1, generator=g, dtype=torch.float64)
    assert math.isclose(float(r_squared(target.mean().expand(100, 1), target)[0]), 0.0, abs_tol=1e-12)


def test_constant_features_get_zero_weight():
    x, weight, bias, _ = _data(n=200)
    x = torch.cat([x, torch.full((200, 1), 2.5, dtype=torch.float64)], dim=1)
    fitted = fit_ridge(x, x[:, :6] @ weight + bias, l2=0.0)
    assert torch.all(fitted.weight[-1] == 0) and torch.allclose(fitted.weight[:6], weight, atol=1e-9)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="fit_ridge.*same item count"):
        fit_ridge(torch.zeros(10, 2), torch.zeros(9), 1e-3)
    with pytest.raises(ValueError, match="l2=-1"):
        fit_ridge(torch.zeros(10, 2), torch.zeros(10), -1)
    with pytest.raises(ValueError, match="r_squared"):
        r_squared(torch.zeros(5, 2), torch.zeros(5, 1))
