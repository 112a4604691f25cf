"""Samplers on a 1-D Gaussian problem whose probability-flow ODE is solved in closed form.

Data x1 ~ N(mu, s^2), noise x0 ~ N(0, 1), path x_t = t x1 + (1 - t) x0. Then
    E[x1 | x_t] = mu + t s^2 (x_t - t mu) / sigma_t^2,   sigma_t^2 = t^2 s^2 + (1 - t)^2,
and the flow maps x0 to x(1) = mu + s x0 exactly; its velocity is
    v(x, t) = mu + (sigma_t' / sigma_t) (x - t mu),   sigma_t' / sigma_t = (t s^2 - (1 - t)) / sigma_t^2.
The integrators are tested on that velocity; the x-prediction route is tested away from t = 1, where
(x1_hat - x_t) / (1 - t) is 0/0 and the clamp takes over (as in the official code).
"""
import pytest
import torch

from core.samplers import (classifier_free_guidance, guidance_scale_at, integrate, sample_adaptive,
                           velocity_field)
from core.timesteps import sampling_grid

MU, S = 2.0, 0.5


def exact_x_prediction(x, t):
    tb = t.view(-1, *([1] * (x.dim() - 1)))
    variance = tb ** 2 * S ** 2 + (1 - tb) ** 2
    return MU + tb * S ** 2 * (x - tb * MU) / variance


def exact_velocity(x, t):
    tb = t.view(-1, *([1] * (x.dim() - 1)))
    variance = tb ** 2 * S ** 2 + (1 - tb) ** 2
    return MU + (tb * S ** 2 - (1 - tb)) / variance * (x - tb * MU)


def test_velocity_from_exact_x_prediction_matches_exact_velocity():
    x = torch.linspace(-3, 3, 7, dtype=torch.float64).view(7, 1, 1)
    velocity = velocity_field(exact_x_prediction, min_remaining_time=1e-6)
    for t in (0.0, 0.3, 0.9, 0.999):
        tt = torch.full((7,), t, dtype=torch.float64)
        assert torch.allclose(velocity(x, tt), exact_velocity(x, tt), atol=1e-8)


def final_error(solver, steps, shift=1.0):
    x0 = torch.linspace(-2, 2, 9, dtype=torch.float64).view(9, 1, 1)
    x1 = integrate(exact_velocity, x0, solver, steps, shift, rtol=1e-8, atol=1e-8)
    return float((x1 - (MU + S * x0)).abs().max())


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_error_falls_with_steps(solver):
    errors = [final_error(solver, n) for n in (5, 20, 80)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < (2e-2 if solver == "euler" else 1e-4)


def test_heun_is_second_order():
    coarse, fine = final_error("heun", 20), final_error("heun", 40)
    assert 3.0 < coarse / fine < 5.0  # halving the step divides the error by ~4


def test_euler_is_first_order():
    coarse, fine = final_error("euler", 40), final_error("euler", 80)
    assert 1.6 < coarse / fine < 2.4


def test_shifted_grid_still_converges():
    assert final_error("heun", 50, shift=0.5) < 1e-4


def test_adaptive_solver_accuracy_and_evaluations():
    x0 = torch.linspace(-2, 2, 9, dtype=torch.float64).view(9, 1, 1)
    x1, evaluations = sample_adaptive(exact_velocity, x0, "dopri5", 1e-7, 1e-7, sampling_grid(1, 1.0))
    assert float((x1 - (MU + S * x0)).abs().max()) < 1e-5
    assert evaluations > 6


def test_unknown_solver():
    with pytest.raises(ValueError, match="unknown solver"):
        integrate(lambda x, t: x, torch.zeros(1, 1, 1), "rk4", 4, 1.0, 1e-3, 1e-3)


def test_guidance_interval():
    t = torch.tensor([0.0, 0.05, 0.1, 0.5, 0.99, 1.0])
    assert guidance_scale_at(t, 3.0, (0.1, 1.0)).tolist() == [1.0, 1.0, 1.0, 3.0, 3.0, 1.0]
    assert guidance_scale_at(t, 3.0, (0.0, 1.0)).tolist() == [3.0, 3.0, 3.0, 3.0, 3.0, 1.0]


def test_classifier_free_guidance_mix():
    def denoise(x, t, labels):  # conditional prediction = labels, unconditional (label 9) = 0
        return torch.where(labels.view(-1, 1, 1) == 9, torch.zeros_like(x), labels.view(-1, 1, 1).float() + 0 * x)
    labels, null = torch.tensor([1, 2]), torch.tensor([9, 9])
    guided = classifier_free_guidance(denoise, labels, null, 3.0, (0.1, 1.0))
    x = torch.zeros(2, 1, 1)
    assert guided(x, torch.tensor([0.5, 0.5])).flatten().tolist() == [3.0, 6.0]  # u + w (c - u)
    assert guided(x, torch.tensor([0.05, 0.05])).flatten().tolist() == [1.0, 2.0]  # outside: conditional
    plain = classifier_free_guidance(denoise, labels, null, 1.0, (0.1, 1.0))
    assert plain(x, torch.tensor([0.5, 0.5])).flatten().tolist() == [1.0, 2.0]
