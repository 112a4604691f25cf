"""The staged recipes (two_stage, ldetok) on the toy point-set modality: what each stage trains, l-DeTok's
hiding and mask token, the latent statistics, and the shared draws."""
import math

import pytest
import torch

from core.linear_probe import fit_and_score
from core.recipes.staged import DetokDraws
from core.stages import plan_stages


@pytest.mark.parametrize("name", ["unite", "two_stage", "ldetok"])
def test_each_stage_trains_exactly_its_parts(toy_recipe, name):
    """Trained parameters get a gradient (DDP needs every one), frozen ones none and stay in eval mode."""
    recipe, batch = toy_recipe(f"recipe={name}")
    for stage in recipe.stages:
        recipe.set_stage(stage)
        recipe.train()
        recipe.zero_grad(set_to_none=True)
        loss, parts = recipe(batch, seeds=list(range(6)))
        loss.backward()
        assert math.isfinite(float(parts["loss"]))
        trained = recipe.STAGES[stage]
        for child_name, child in recipe.named_children():
            for parameter_name, parameter in child.named_parameters(prefix=child_name):
                assert (parameter.grad is not None) == (child_name in trained), (stage, parameter_name)
            assert child.training == (child_name in trained), (stage, child_name)


def test_staged_recipes_split_the_step_budget(toy_recipe):
    recipe, _ = toy_recipe("recipe=two_stage", "recipe.stage_fractions.tokenizer=0.3",
                           "recipe.stage_fractions.generator=0.7")
    assert recipe.stage_steps(101) == [("tokenizer", 30), ("generator", 71)]
    with pytest.raises(ValueError, match="shares must sum to 1"):
        toy_recipe("recipe=two_stage", "recipe.stage_fractions.tokenizer=0.6")


def test_stage_plan_shares_steps_and_time_and_refuses_an_empty_stage(toy_recipe):
    recipe, _ = toy_recipe("recipe=two_stage")
    stages = plan_stages(recipe, 10, 600.0)
    assert [(s.name, s.steps, s.seconds, s.checkpoint_tag) for s in stages] == [
        ("tokenizer", 5, 300.0, "tokenizer"), ("generator", 5, 300.0, "generator")]
    unite, _ = toy_recipe()
    assert [(s.name, s.steps, s.checkpoint_tag) for s in plan_stages(unite, 10, None)] == [("joint", 10, None)]
    with pytest.raises(ValueError, match="without a step"):
        plan_stages(recipe, 1, None)


def test_ldetok_encoder_sees_only_visible_tokens_and_decoder_gets_its_mask_token(toy_recipe):
    recipe, batch = toy_recipe("recipe=ldetok")
    recipe.set_stage("tokenizer")
    observation = recipe.embedder(batch)
    draws = recipe.draw(observation.layout.mask, torch.float32, seeds=list(range(6)))
    assert isinstance(draws, DetokDraws)
    hidden = recipe.hidden_tokens(observation.layout, draws)
    assert hidden.any() and not hidden.all(1).any()
    captured = {}
    original_decoder = recipe.decoder.forward
    recipe.decoder.forward = lambda z, layout: captured.update(z=z, layout=layout) or original_decoder(z, layout)
    recipe(batch, draws=draws)
    # moving the hidden points changes neither the latents of the visible ones nor the decoder's output
    moved = type(batch)(torch.where(hidden.unsqueeze(-1), batch.points + 5.0, batch.points), batch.labels)
    first = captured["z"]
    recipe(moved, draws=draws)
    visible = ~hidden
    assert torch.allclose(captured["z"][visible], first[visible], atol=1e-6)
    assert torch.equal(captured["layout"].hidden, hidden)
    trunk = recipe.decoder.trunk
    changed = captured["z"].clone()
    changed[hidden] = 100.0
    layout = captured["layout"]
    assert torch.allclose(trunk(changed, layout), trunk(captured["z"], layout), atol=1e-6)
    # no corruption at inference: encode() is the plain tokenize pass
    recipe.eval()
    torch.manual_seed(3)
    z, _ = recipe.encode(batch)
    torch.manual_seed(3)
    assert torch.equal(z, recipe.encoder.tokenize(recipe.embedder(batch)))


def test_ldetok_per_sample_draws_cover_real_tokens_only(toy_recipe):
    recipe, _ = toy_recipe("recipe=ldetok")
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 9:] = False
    draws = recipe.draw(mask, torch.float32, seeds=[11, 22, 33])
    alone = recipe.draw(mask[1:2, :9], torch.float32, seeds=[22])
    for name in ("corruption_eps", "mask_scores", "tokenize_noise"):
        assert torch.equal(getattr(draws, name)[1, :9], getattr(alone, name)[0])
        assert not getattr(draws, name)[1, 9:].any()
    for name in ("corruption_tau", "mask_u"):
        assert torch.equal(getattr(draws, name)[1], getattr(alone, name)[0])


def test_generator_stage_standardises_latents_per_channel(toy_recipe):
    recipe, batch = toy_recipe("recipe=two_stage", "recipe.standardization_samples=6")
    recipe.set_stage("generator")
    recipe.eval()
    torch.manual_seed(1)  # pass 1's input noise: the same in both calls
    recipe.prepare_stage("generator", iter([batch, batch]))  # one batch covers the 6 samples asked for
    torch.manual_seed(1)
    z, layout = recipe.encode(batch)
    standardised = recipe.standardize(z)[layout.mask]
    assert torch.allclose(standardised.mean(0), torch.zeros(z.shape[-1]), atol=1e-5)
    assert torch.allclose(standardised.std(0, unbiased=False), torch.ones(z.shape[-1]), atol=1e-4)
    assert torch.allclose(recipe.destandardize(recipe.standardize(z)), z, atol=1e-5)
    points, _, generated = recipe.generate(2, torch.tensor([0, 1]), solver="euler", num_steps=2, shift=None,
                                           guidance_scale=1.0, guidance_interval=(0.1, 1.0), rtol=1e-4, atol=1e-4,
                                           device=torch.device("cpu"))
    assert points.shape == (2, 12, 2) and generated.shape == (2, 12, 8)


def test_logistic_probe_separates_linearly_separable_classes():
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(3, 5, generator=generator)
    labels = torch.arange(300) % 3
    features = centres[labels] + torch.randn(300, 5, generator=generator)
    accuracy = fit_and_score(features[:200], labels[:200], features[200:], labels[200:], 3)
    assert accuracy > 0.9
    shuffled = fit_and_score(features[:200], labels[torch.randperm(200, generator=generator)], features[200:],
                             labels[200:], 3)
    assert shuffled < 0.6


def test_ldetok_hides_image_patches_from_the_encoder(compose_config, tmp_path):
    """Images have no padding, so their attention runs without a mask (LatentLayout.padded=False); the
    patches l-DeTok hides must still be left out of it."""
    from small_models import TINY_IMAGE, tiny_image_recipe
    recipe, batch = tiny_image_recipe(compose_config, tmp_path, "recipe=ldetok", "modality.decoder.architecture=rope",
                                      "modality.decoder.latent_width=null")
    recipe.set_stage("tokenizer")
    observation = recipe.embedder(batch)
    assert not observation.layout.padded
    draws = recipe.draw(observation.layout.mask, torch.float32, seeds=list(range(TINY_IMAGE["batch"])))
    hidden = recipe.hidden_tokens(observation.layout, draws)
    assert hidden.any() and not hidden.all(1).any()
    captured = {}
    original_decoder = recipe.decoder.forward
    recipe.decoder.forward = lambda z, layout: captured.update(z=z) or original_decoder(z, layout)
    recipe(batch, draws=draws)
    first = captured["z"]
    grid = TINY_IMAGE["image_size"] // TINY_IMAGE["patch_size"]
    pixels = hidden.view(-1, 1, grid, grid).repeat_interleave(TINY_IMAGE["patch_size"], 2)
    pixels = pixels.repeat_interleave(TINY_IMAGE["patch_size"], 3)  # [B, 1, H, W]: the hidden patches' pixels
    moved = type(batch)(torch.where(pixels, -batch.images, batch.images), batch.labels)
    recipe(moved, draws=draws)
    visible = ~hidden
    assert torch.allclose(captured["z"][visible], first[visible], atol=1e-5)
