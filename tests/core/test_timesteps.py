import torch

import pytest

from core.timesteps import sample_timesteps, sampling_grid, shift_timesteps


def test_shift_closed_form_and_fixed_points():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    alpha = 0.5
    assert torch.allclose(shift_timesteps(t, alpha), alpha * t / (1 + (alpha - 1) * t))
    assert shift_timesteps(torch.tensor([0.0, 1.0]), 0.5).tolist() == [0.0, 1.0]
    assert torch.allclose(shift_timesteps(t, 1.0), t)
    assert float(shift_timesteps(torch.tensor(0.5), 0.5)) == pytest.approx(1 / 3)  # toward noise


def test_shift_inverse():
    t = torch.rand(100, dtype=torch.float64)
    assert torch.allclose(shift_timesteps(shift_timesteps(t, 0.5), 2.0), t)


def test_logit_normal_median_and_range():
    torch.manual_seed(0)
    t = sample_timesteps(20000, "logit_normal", 1.0)
    assert 0 < float(t.min()) and float(t.max()) < 1
    assert abs(float(t.median()) - 0.5) < 0.01
    shifted = sample_timesteps(20000, "logit_normal", 0.5)
    assert abs(float(shifted.median()) - 1 / 3) < 0.01  # the median maps through the shift


def test_uniform_and_bad_names():
    torch.manual_seed(0)
    assert abs(float(sample_timesteps(20000, "uniform", 1.0).mean()) - 0.5) < 0.01
    with pytest.raises(ValueError, match="unknown timestep distribution"):
        sample_timesteps(3, "cosine", 1.0)
    with pytest.raises(ValueError, match="alpha"):
        shift_timesteps(torch.rand(2), 0.0)


def test_sampling_grid():
    grid = sampling_grid(4, 1.0)
    assert torch.allclose(grid, torch.tensor([0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    shifted = sampling_grid(50, 0.5)
    assert shifted[0] == 0 and shifted[-1] == 1 and bool((shifted.diff() > 0).all())
