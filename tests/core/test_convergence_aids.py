"""The generator's convergence aids (issue 20), each a recipe switch, against its formula or its contract:
Beta(alpha, 1) timesteps (SemlaFlow), the truncated-SNR loss weight (EQGAT-diff), self-conditioning (ADiT)."""
import dataclasses

import pytest
import torch

from core.timesteps import sample_beta_towards_data, sample_timesteps
from core.transport import truncated_snr_weight
from test_unite_recipe import generative_loss_of


def test_beta_timesteps_follow_beta_alpha_1():
    t = sample_beta_towards_data(200_000, 2.0, generator=torch.Generator().manual_seed(0))
    assert float(t.mean()) == pytest.approx(2 / 3, abs=3e-3)  # E = alpha / (alpha + 1)
    assert float((t < 0.5).float().mean()) == pytest.approx(0.25, abs=3e-3)  # CDF t^alpha
    assert torch.equal(sample_timesteps(10, "beta", 1.0, None, torch.Generator().manual_seed(1), beta_alpha=2.0),
                       sample_beta_towards_data(10, 2.0, None, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="unknown timestep distribution 'gamma'"):
        sample_timesteps(3, "gamma", 1.0)
    with pytest.raises(ValueError, match="beta_alpha must be > 0"):
        sample_beta_towards_data(3, 0.0)


def test_truncated_snr_weight_is_the_clamped_snr():
    t = torch.tensor([0.0, 0.1, 0.5, 0.55, 0.9, 1.0])
    expected = [0.05, 0.05, 1.0, (0.55 / 0.45) ** 2, 1.5, 1.5]  # SNR = t^2 / (1 - t)^2 in [0.05, 1.5]
    assert truncated_snr_weight(t).tolist() == pytest.approx(expected, rel=1e-6)


def test_loss_weighting_multiplies_each_draw(toy_recipe):
    recipe, batch = toy_recipe("recipe.gen_loss_form=x", "recipe.flow_draws_per_sample=1")
    draws = recipe.draw(recipe.embedder(batch).layout.mask, torch.float32, seeds=list(range(6)))
    draws.flow_t.fill_(0.5)  # weight 1
    plain = generative_loss_of(recipe, batch, draws)
    recipe.gen_loss_weighting = "truncated_snr"
    assert torch.allclose(generative_loss_of(recipe, batch, draws), plain)
    draws.flow_t.fill_(0.9)  # weight 1.5
    weighted = generative_loss_of(recipe, batch, draws)
    recipe.gen_loss_weighting = "none"
    assert torch.allclose(weighted, 1.5 * generative_loss_of(recipe, batch, draws))


def test_self_conditioning_starts_as_no_input_and_learns(toy_recipe):
    """The map starts at zero, so the first loss equals the plain recipe's on the same draws; its weight gets a
    gradient once the denoiser's output is nonzero, and the draws choose about p of the samples."""
    plain, batch = toy_recipe()
    conditioned, _ = toy_recipe("recipe.self_conditioning=0.5")
    assert plain.denoiser.self_condition_in is None
    mask = plain.embedder(batch).layout.mask
    draws = conditioned.draw(mask, torch.float32, seeds=list(range(6)))
    assert draws.self_condition.shape == draws.class_drop.shape
    assert plain.draw(mask, torch.float32, seeds=list(range(6))).self_condition is None
    conditioned.load_state_dict(plain.state_dict(), strict=False)
    without = dataclasses.replace(draws, self_condition=None)
    assert torch.allclose(generative_loss_of(conditioned, batch, draws), generative_loss_of(plain, batch, without))
    with torch.no_grad():  # a denoiser whose first prediction is not zero
        conditioned.denoiser.final_layer.linear.weight.normal_(0, 0.1)
    draws.self_condition.fill_(True)
    generative_loss_of(conditioned, batch, draws).backward()
    assert float(conditioned.denoiser.self_condition_in.weight.grad.abs().sum()) > 0
    many = conditioned.draw(mask.repeat(500, 1), torch.float32)
    assert float(many.self_condition.float().mean()) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="recipe.self_conditioning=1.0"):
        toy_recipe("recipe.self_conditioning=1.0")


def test_sampling_feeds_each_prediction_into_the_next_step(toy_recipe, monkeypatch):
    recipe, _ = toy_recipe("recipe.self_conditioning=0.5")
    recipe.eval()
    seen, outputs = [], []
    real = recipe.denoiser.denoise

    def recording(x, t, labels, layout, class_drop=None, self_condition=None):
        seen.append(self_condition.clone())
        outputs.append(real(x, t, labels, layout, class_drop, self_condition))
        return outputs[-1]
    monkeypatch.setattr(recipe.denoiser, "denoise", recording)
    recipe.generate(3, None, solver="euler", num_steps=3, shift=None, guidance_scale=1.0, guidance_interval=(0.0, 1.0),
                    rtol=1e-4, atol=1e-4, device=torch.device("cpu"))
    assert len(seen) == 3 and torch.equal(seen[0], torch.zeros_like(seen[0]))
    assert torch.allclose(seen[1], outputs[0].float()) and torch.allclose(seen[2], outputs[1].float())


def test_edm_skip_coefficients_minimise_the_target_variance():
    from core.transport import edm_skip_coefficients
    t = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0], dtype=torch.float64)
    c_skip, c_out = edm_skip_coefficients(t)
    assert c_skip.tolist() == pytest.approx([0.0, 0.25 / (0.0625 + 0.5625), 1.0, 0.9 / (0.81 + 0.01), 1.0])
    # F's target (x1 - c_skip x_t) / c_out has unit variance for unit-variance x1 and noise: (1 - c t)^2 + c^2 (1 - t)^2 = c_out^2
    inner = t[1:4]
    assert ((1 - c_skip[1:4] * inner) ** 2 + c_skip[1:4] ** 2 * (1 - inner) ** 2).tolist() == pytest.approx((c_out[1:4] ** 2).tolist())
    # and c_skip is the minimiser: a nudge either way raises the variance
    for nudge in (-1e-3, 1e-3):
        c = c_skip[1:4] + nudge
        assert torch.all((1 - c * inner) ** 2 + c ** 2 * (1 - inner) ** 2 > c_out[1:4] ** 2)
    assert c_out[0] == 1.0 and c_out[-1] == 0.0


def test_the_skip_leans_on_x_t_at_the_data_end_only(toy_recipe):
    recipe, batch = toy_recipe("recipe.x_prediction_skip=edm")
    layout = recipe.embedder(batch).layout
    x = torch.randn(*layout.mask.shape, recipe.denoiser.latent_channels)
    for t_value in (0.0, 1.0, 0.6):
        t = torch.full((x.shape[0],), t_value)
        raw = recipe.denoiser.denoise(x, t, None, layout, None, None)
        skipped = recipe.predict_clean(x, t, None, layout, None, None)
        if t_value == 0.0:
            assert torch.allclose(skipped, raw)
        elif t_value == 1.0:
            assert torch.allclose(skipped, x)
        else:
            assert torch.allclose(skipped, 0.6 / 0.52 * x + 0.4 / 0.52 ** 0.5 * raw, atol=1e-5)  # D = 0.6^2 + 0.4^2


def test_unknown_skip_is_named(toy_recipe):
    with pytest.raises(ValueError, match="recipe.x_prediction_skip='karras'"):
        toy_recipe("recipe.x_prediction_skip=karras")
