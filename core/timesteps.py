"""Timestep samplers and the timestep shift, as pure functions (t = 0 noise, t = 1 data)."""
from __future__ import annotations

import torch


def shift_timesteps(t: torch.Tensor, alpha: float) -> torch.Tensor:
    """t' = alpha t / (1 + (alpha - 1) t).

    alpha < 1 moves mass toward t = 0 (noise); alpha = 1 is the identity; 0 and 1 are fixed points.
    UNITE uses alpha = 0.5 during training and along the sampling grid.
    """
    if alpha <= 0:
        raise ValueError(f"timestep shift alpha must be > 0, got {alpha}")
    return alpha * t / (1 + (alpha - 1) * t)


def sample_logit_normal(n: int, mean: float, std: float, device=None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """t = sigmoid(mean + std * N(0, 1)); [n]."""
    return torch.sigmoid(mean + std * torch.randn(n, device=device, generator=generator))


def sample_uniform(n: int, low: float, high: float, device=None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """t ~ U(low, high); [n]."""
    return low + (high - low) * torch.rand(n, device=device, generator=generator)


def sample_beta_towards_data(n: int, alpha: float, device=None,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """t ~ Beta(alpha, 1), density alpha t^(alpha - 1): alpha > 1 weights the data end (SemlaFlow: alpha = 2).
    Drawn by the inverse CDF, t = u^(1 / alpha), so a generator makes it reproducible; [n]."""
    if alpha <= 0:
        raise ValueError(f"recipe.beta_alpha must be > 0, got {alpha}")
    return torch.rand(n, device=device, generator=generator) ** (1.0 / alpha)


TIMESTEP_DISTRIBUTIONS = ("logit_normal", "uniform", "beta")


def sample_timesteps(n: int, distribution: str, shift: float, device=None,
                     generator: torch.Generator | None = None, logit_mean: float = 0.0,
                     logit_std: float = 1.0, beta_alpha: float = 2.0) -> torch.Tensor:
    """Training timesteps: 'logit_normal' (official UNITE), 'uniform' (paper text) or 'beta' (Beta(beta_alpha, 1),
    towards the data end: SemlaFlow), then shifted."""
    if distribution == "logit_normal":
        t = sample_logit_normal(n, logit_mean, logit_std, device, generator)
    elif distribution == "uniform":
        t = sample_uniform(n, 0.0, 1.0, device, generator)
    elif distribution == "beta":
        t = sample_beta_towards_data(n, beta_alpha, device, generator)
    else:
        raise ValueError(f"unknown timestep distribution {distribution!r}: choose one of {TIMESTEP_DISTRIBUTIONS}")
    return shift_timesteps(t, shift)


def sampling_grid(num_steps: int, shift: float, device=None) -> torch.Tensor:
    """num_steps + 1 times from 0 (noise) to 1 (data), uniform then shifted like training."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return shift_timesteps(torch.linspace(0, 1, num_steps + 1, device=device, dtype=torch.float64), shift)
