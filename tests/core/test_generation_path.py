"""The generation path with an ideal denoiser: given the exact posterior mean E[x1 | x_t] of a set of K
training latents, the recipe's sampler (sampling grid, time shift, velocity from the x-prediction, Euler
from t = 0 to 1) must land on those latents and cover them all. A sampler that ran backwards, a sign or
shift error in the velocity, or a time convention swapped between training and sampling fails here --
the reduced form of the memorisation proof (issue 20), without any training."""
import math

import pytest
import torch

from core.build import build_modality, build_recipe
from core.modality import LatentLayout

K, SLOTS = 6, 5


def posterior_mean(latents: torch.Tensor):
    """x1_hat(x_t, t) = sum_k w_k z_k, w = softmax(-|x_t - t z_k|^2 / (2 (1 - t)^2)): the ideal x-prediction
    on the linear path x_t = t x1 + (1 - t) x0 when x1 is uniform over `latents` [K, N, C]."""
    def denoise(x, t, labels, layout, drop=None, self_condition=None):
        tb = t.view(-1, 1, 1, 1)
        squared = ((x[:, None] - tb * latents[None]) ** 2).sum((-1, -2))  # [B, K]
        variance = (1 - t).clamp_min(1e-4).view(-1, 1) ** 2
        weights = torch.softmax(-squared / (2 * variance), dim=1)
        return torch.einsum("bk,knc->bnc", weights, latents)
    return denoise


@pytest.fixture
def recipe(compose_config, tmp_path, monkeypatch):
    cfg = compose_config(["experiment=molecule_smoke", f"trainer.out_dir={tmp_path}"])
    recipe = build_recipe(cfg, build_modality(cfg)).eval()
    torch.manual_seed(0)
    latents = torch.nn.functional.layer_norm(torch.randn(K, SLOTS, recipe.denoiser.latent_channels), (recipe.denoiser.latent_channels,))
    monkeypatch.setattr(recipe.denoiser, "denoise", posterior_mean(latents))
    monkeypatch.setattr(recipe.embedder, "generation_layout",
                        lambda n, device, generator=None: LatentLayout(mask=torch.ones(n, SLOTS, dtype=torch.bool)))
    return recipe, latents


def nearest(z: torch.Tensor, latents: torch.Tensor):
    distances = ((z[:, None] - latents[None]) ** 2).mean((-1, -2)).sqrt()  # RMS per channel, [B, K]
    return distances.min(1)


@pytest.mark.parametrize("solver,steps", [("euler", 50), ("heun", 20)])
def test_the_sampler_lands_on_the_training_latents(recipe, solver, steps):
    recipe, latents = recipe
    z, _ = recipe.sample_latents(300, None, solver=solver, num_steps=steps, shift=None, guidance_scale=1.0,
                                 guidance_interval=(0.1, 1.0), rtol=1e-4, atol=1e-4, device=torch.device("cpu"))
    distance, which = nearest(z, latents)
    assert (distance < 0.05).float().mean() > 0.97, distance.quantile(torch.tensor([0.5, 0.9]))
    counts = torch.bincount(which, minlength=K)
    assert counts.min() > 300 / K / 3  # every training latent is generated, none dominates


def test_a_sampler_run_backwards_does_not(recipe, monkeypatch):
    """The same check fails when the grid runs from data to noise: it is sensitive to the time direction."""
    import core.samplers as samplers
    recipe, latents = recipe
    original = samplers.sampling_grid
    monkeypatch.setattr(samplers, "sampling_grid", lambda *args, **kwargs: original(*args, **kwargs).flip(0))
    z, _ = recipe.sample_latents(100, None, solver="euler", num_steps=50, shift=None, guidance_scale=1.0,
                                 guidance_interval=(0.1, 1.0), rtol=1e-4, atol=1e-4, device=torch.device("cpu"))
    distance, _ = nearest(z, latents)
    assert not (distance < 0.05).float().mean() > 0.97
    assert math.isfinite(float(distance.mean()))
