"""recipe.latent_whitening=running (UAE-3D): the running per-channel statistics against their formula, the
generator's target and samples in whitened space, checkpoints that keep the statistics."""
import pytest
import torch

from core.sample import load_for_sampling
from core.train import train
from omegaconf import OmegaConf


def test_running_statistics_follow_the_ema_of_the_real_tokens(toy_recipe):
    recipe, _ = toy_recipe("recipe.latent_whitening=running", "recipe.latent_whitening_momentum=0.25")
    channels = recipe.latent_mean.numel()
    first = torch.randn(2, 3, channels)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    first[~mask] = 1e6  # padding must not count
    recipe.update_latent_statistics(first, mask)
    real = first[mask]
    assert torch.allclose(recipe.latent_mean, real.mean(0)) and torch.allclose(recipe.latent_std, real.std(0, unbiased=False))
    second = torch.randn(2, 3, channels) * 3 + 1
    recipe.update_latent_statistics(second, torch.ones(2, 3, dtype=torch.bool))
    flat = second.reshape(-1, channels)
    assert torch.allclose(recipe.latent_mean, 0.75 * real.mean(0) + 0.25 * flat.mean(0), atol=1e-6)
    assert torch.allclose(recipe.latent_std, 0.75 * real.std(0, unbiased=False) + 0.25 * flat.std(0, unbiased=False), atol=1e-6)
    z = torch.randn(4, 3, channels)
    assert torch.allclose(recipe.unwhiten(recipe.whiten(z)), z, atol=1e-5)


def test_the_generator_learns_whitened_latents(toy_recipe, monkeypatch):
    recipe, batch = toy_recipe("recipe.latent_whitening=running")
    seen = {}
    original = recipe.generative_loss

    def spy(target, *args):
        seen["target"] = target
        return original(target, *args)
    monkeypatch.setattr(recipe, "generative_loss", spy)
    recipe(batch, seeds=list(range(6)))
    mask = recipe.embedder(batch).layout.mask
    real = seen["target"][mask]  # the first step whitens by the batch's own statistics: mean 0, std 1 exactly
    assert int(recipe.latent_statistics_steps) == 1
    assert torch.allclose(real.mean(0), torch.zeros(real.shape[-1]), atol=1e-5)
    assert torch.allclose(real.std(0, unbiased=False), torch.ones(real.shape[-1]), atol=1e-4)


def test_unknown_whitening_and_a_momentum_outside_0_1_are_named(toy_recipe):
    with pytest.raises(ValueError, match="recipe.latent_whitening='pca'"):
        toy_recipe("recipe.latent_whitening=pca")
    with pytest.raises(ValueError, match="recipe.latent_whitening_momentum=0.0"):
        toy_recipe("recipe.latent_whitening=running", "recipe.latent_whitening_momentum=0.0")


def test_a_whitened_run_keeps_its_statistics_and_samples_unwhitened(compose_config, tmp_path):
    cfg = compose_config(["experiment=molecule_smoke", "recipe.latent_whitening=running", "trainer.max_steps=3",
                          "trainer.evaluate_at_end=false", f"trainer.out_dir={tmp_path}"])
    train(cfg)
    checkpoint = sorted((tmp_path / "checkpoints").glob("step_*.pt"))[-1]
    model, _, _, _ = load_for_sampling(checkpoint, OmegaConf.create({}), torch.device("cpu"))
    assert int(model.latent_statistics_steps) == 3 and not torch.equal(model.latent_std, torch.ones_like(model.latent_std))
    options = dict(solver="euler", num_steps=3, shift=None, guidance_scale=1.0, guidance_interval=(0.0, 1.0),
                   rtol=1e-4, atol=1e-4, device=torch.device("cpu"))
    torch.manual_seed(0)
    whitened, _ = model.sample_latents(4, None, **options)
    torch.manual_seed(0)
    _, _, z = model.generate(4, None, **options)
    assert torch.allclose(z, model.unwhiten(whitened), atol=1e-5)
