import math

import pytest
import torch

from core.transport import (additive_latent_noise, decoder_latent_noise, interpolate, interpolative_latent_noise,
                            mask_ratio, per_sample_mean, random_token_mask, target_velocity, velocity_from_x_prediction,
                            velocity_loss, x_prediction_loss)


def test_linear_path_endpoints_and_midpoint():
    x0, x1 = torch.randn(4, 3, 2), torch.randn(4, 3, 2)
    assert torch.equal(interpolate(x0, x1, torch.zeros(4)), x0)  # t = 0 is noise
    assert torch.equal(interpolate(x0, x1, torch.ones(4)), x1)  # t = 1 is data
    assert torch.allclose(interpolate(x0, x1, torch.full((4,), 0.25)), 0.25 * x1 + 0.75 * x0)


def test_path_velocity_is_time_derivative():
    x0, x1, t, h = torch.randn(3, 5, 2), torch.randn(3, 5, 2), torch.rand(3) * 0.8 + 0.1, 1e-3
    finite_difference = (interpolate(x0, x1, t + h) - interpolate(x0, x1, t - h)) / (2 * h)
    assert torch.allclose(finite_difference, target_velocity(x0, x1), atol=1e-3)


def test_velocity_from_exact_x_prediction_is_path_velocity():
    x0, x1 = torch.randn(6, 4, 3, dtype=torch.float64), torch.randn(6, 4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 0.94, 0.95], dtype=torch.float64)
    v = velocity_from_x_prediction(x1, interpolate(x0, x1, t), t, min_remaining_time=0.05)
    assert torch.allclose(v, x1 - x0)


def test_velocity_clamp_near_data_end():
    x0, x1 = torch.randn(2, 1, 1, dtype=torch.float64), torch.randn(2, 1, 1, dtype=torch.float64)
    t = torch.tensor([0.99, 1.0], dtype=torch.float64)
    x1_hat = x1 + 1.0
    x_t = interpolate(x0, x1, t)
    v = velocity_from_x_prediction(x1_hat, x_t, t, 0.05)
    assert torch.allclose(v, (x1_hat - x_t) / 0.05)


def test_velocity_loss_closed_form():
    x0, x1, x1_hat = torch.randn(3, 4, 2), torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    t = torch.tensor([0.2, 0.5, 0.8])
    expected = ((x1_hat - x1) ** 2).flatten(1).mean(1) / (1 - t) ** 2  # v_hat - v = (x1_hat - x1) / (1 - t)
    assert torch.allclose(velocity_loss(x1_hat, x0, x1, t, 0.05), expected, rtol=1e-5)
    assert torch.allclose(velocity_loss(x1, x0, x1, t, 0.05), torch.zeros(3))
    assert torch.allclose(x_prediction_loss(x1_hat, x1), ((x1_hat - x1) ** 2).flatten(1).mean(1))


def test_masked_mean_ignores_padding():
    values = torch.ones(2, 3, 4)
    values[0, 2] = 100.0  # padding of sample 0
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert torch.allclose(per_sample_mean(values, mask), torch.ones(2))


def test_decoder_noise_formula():
    z, eps = torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(3, 4, 2, dtype=torch.float64)
    replace, t = torch.tensor([True, False, True]), torch.tensor([0.7, 0.2, 0.95], dtype=torch.float64)
    noised = decoder_latent_noise(z, replace, t, eps)
    assert torch.allclose(noised[0], 0.7 * z[0] + 0.3 * eps[0])  # t z + (1 - t) eps: t = 1 is the clean latent
    assert torch.equal(noised[1], z[1])
    assert torch.allclose(noised[2], 0.95 * z[2] + 0.05 * eps[2])
    assert torch.equal(additive_latent_noise(z, 0.7, eps), z + 0.7 * eps)


def test_interpolative_noise_closed_forms_and_moments():
    """l-DeTok: tau = 0 leaves z, tau = 1 gives gamma eps; for z = 0 and tau ~ U(0, 1), E[z'^2] = gamma^2 / 3."""
    z, eps = torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(3, 4, 2, dtype=torch.float64)
    tau = torch.tensor([0.0, 1.0, 0.25], dtype=torch.float64)
    noised = interpolative_latent_noise(z, tau, eps, gamma=3.0)
    assert torch.equal(noised[0], z[0]) and torch.allclose(noised[1], 3.0 * eps[1])
    assert torch.allclose(noised[2], 0.75 * z[2] + 0.25 * 3.0 * eps[2])
    torch.manual_seed(0)
    zeros = torch.zeros(20000, 1, 8)
    noised = interpolative_latent_noise(zeros, torch.rand(20000), torch.randn(zeros.shape), gamma=3.0)
    assert math.isclose(float(noised.pow(2).mean()), 9.0 / 3, rel_tol=0.05)


def test_mask_ratio_distribution_by_sampling():
    """m = max(0, U(-0.1, 0.75)): P(m = 0) = 0.1 / 0.85, E[m] = 0.75^2 / (2 * 0.85), within 5 standard errors."""
    n = 200_000
    m = mask_ratio(torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -0.1, 0.75)
    p_zero = 0.1 / 0.85
    assert abs(float((m == 0).double().mean()) - p_zero) < 5 * math.sqrt(p_zero * (1 - p_zero) / n)
    mean = 0.75 ** 2 / 2 / 0.85
    variance = 0.75 ** 3 / 3 / 0.85 - mean ** 2
    assert abs(float(m.mean()) - mean) < 5 * math.sqrt(variance / n)
    assert float(m.max()) < 0.75


def test_random_token_mask_counts_and_padding():
    real = torch.ones(4, 20, dtype=torch.bool)
    real[:, 15:] = False  # 15 real tokens, 5 of padding
    real[3, 1:] = False  # a one-token sample keeps its token
    scores = torch.rand(4, 20, generator=torch.Generator().manual_seed(0))
    hidden = random_token_mask(real, torch.tensor([0.0, 0.4, 0.75, 0.75]), scores)
    assert not (hidden & ~real).any()  # padding is never hidden
    assert hidden.sum(1).tolist() == [0, 6, 11, 0]  # round(m n_real), and at least one token stays visible
    lowest = scores[1, :15].argsort()[:6]
    assert hidden[1, lowest].all()  # the lowest scores are hidden
