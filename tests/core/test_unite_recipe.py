"""The joint UNITE step on the toy point-set modality: its random draws, loss forms, ablation switches,
the optimiser split, and generate()."""
import pytest
import torch

from core.optim import build_optimizer, muon_eligible
from core.recipes.unite import JointDraws
from core.transport import velocity_loss, x_prediction_loss


def generative_loss_of(recipe, batch, draws):
    observation = recipe.embedder(batch)
    z = recipe.encoder.tokenize(observation, draws.tokenize_noise, draws.tokenize_t)
    return recipe.generative_loss(z.detach(), batch.labels, observation.layout, draws)


def test_draws_have_the_documented_shapes_and_ranges(toy_recipe):
    recipe, batch = toy_recipe("recipe.flow_draws_per_sample=3", "recipe.decoder_noise_t_min=0.7")
    mask = recipe.embedder(batch).layout.mask
    torch.manual_seed(0)
    draws = recipe.draw(mask.repeat(500, 1), torch.float32)  # 3000 samples
    assert draws.tokenize_noise.shape == draws.decoder_eps.shape == (3000, 12, 8)
    assert draws.flow_x0.shape == (3, 3000, 12, 8) and draws.flow_t.shape == draws.class_drop.shape == (3, 3000)
    assert 0 <= float(draws.tokenize_t.min()) and float(draws.tokenize_t.max()) < 0.01
    assert 0.7 <= float(draws.decoder_t.min()) and float(draws.decoder_t.max()) < 1.0  # t ~ U(0.7, 1)
    assert abs(float(draws.decoder_t.mean()) - 0.85) < 0.01
    assert abs(float(draws.decoder_replace.float().mean()) - 0.5) < 0.03
    assert abs(float(draws.class_drop.float().mean()) - 0.1) < 0.02
    # logit-normal(0, 1) then shift 0.5: the median moves from 0.5 to 0.5 * 0.5 / (1 - 0.5 * 0.5) = 1/3
    assert abs(float(draws.flow_t.median()) - 1 / 3) < 0.02


def test_per_sample_streams_do_not_depend_on_the_batch(toy_recipe):
    recipe, batch = toy_recipe()
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 9:] = False  # a shorter sample: its padding gets zeros, its real tokens its own numbers
    draws = recipe.draw(mask, torch.float32, seeds=[11, 22, 33])
    alone = recipe.draw(mask[1:2, :9], torch.float32, seeds=[22])
    for name in ("tokenize_noise", "decoder_eps"):
        assert torch.equal(getattr(draws, name)[1, :9], getattr(alone, name)[0])
        assert torch.equal(getattr(draws, name)[1, 9:], torch.zeros(3, 8))
    assert torch.equal(draws.flow_x0[:, 1, :9], alone.flow_x0[:, 0]) and torch.equal(draws.flow_t[:, 1], alone.flow_t[:, 0])
    assert not torch.equal(draws.tokenize_noise[0], draws.tokenize_noise[2])
    with pytest.raises(ValueError, match="2 noise-stream seeds for a batch of 3"):
        recipe.draw(mask, torch.float32, seeds=[1, 2])


def test_generative_loss_sums_draws_and_chunking_does_not_change_it(toy_recipe):
    recipe, batch = toy_recipe("recipe.flow_draws_per_sample=5", "recipe.flow_chunk_size=5")
    mask = recipe.embedder(batch).layout.mask
    draws = recipe.draw(mask, torch.float32, seeds=list(range(6)))
    whole = generative_loss_of(recipe, batch, draws)
    for chunk in (1, 2, 3):
        recipe.flow_chunk_size = chunk
        assert torch.allclose(generative_loss_of(recipe, batch, draws), whole, rtol=1e-5)
    # sum over draws of each draw's batch mean = K x the mean over draws
    recipe.gen_loss_over_draws = "mean"
    assert torch.allclose(generative_loss_of(recipe, batch, draws) * 5, whole, rtol=1e-5)
    # one draw by hand: the velocity MSE of the clamped x-prediction
    recipe.flow_draws_per_sample, recipe.gen_loss_over_draws = 1, "sum"
    one = JointDraws(**{**vars(draws), "flow_t": draws.flow_t[:1], "flow_x0": draws.flow_x0[:1],
                        "class_drop": draws.class_drop[:1]})
    observation = recipe.embedder(batch)
    z = recipe.encoder.tokenize(observation, one.tokenize_noise, one.tokenize_t).detach()
    t, x0 = one.flow_t[0], one.flow_x0[0]
    x1_hat = recipe.denoiser.denoise(t[:, None, None] * z + (1 - t[:, None, None]) * x0, t, batch.labels,
                                     observation.layout, one.class_drop[0])
    expected = velocity_loss(x1_hat, x0, z, t, 0.05).mean()
    assert torch.allclose(recipe.generative_loss(z, batch.labels, observation.layout, one), expected, rtol=1e-5)
    recipe.gen_loss_form = "x"
    assert torch.allclose(recipe.generative_loss(z, batch.labels, observation.layout, one),
                          x_prediction_loss(x1_hat, z).mean(), rtol=1e-5)


def test_decoder_noise_switches(toy_recipe):
    recipe, batch = toy_recipe()
    z = torch.randn(6, 12, 8)
    draws = recipe.draw(torch.ones(6, 12, dtype=torch.bool), torch.float32, seeds=list(range(6)))
    replaced = draws.decoder_replace
    t = draws.decoder_t[:, None, None]
    expected = torch.where(replaced[:, None, None], t * z + (1 - t) * draws.decoder_eps, z)
    assert torch.allclose(recipe.corrupt_for_decoder(z, draws), expected)
    recipe.decoder_noise = "additive"
    assert torch.allclose(recipe.corrupt_for_decoder(z, draws), z + 0.7 * draws.decoder_eps)
    recipe.decoder_noise = "none"
    assert torch.equal(recipe.corrupt_for_decoder(z, draws), z)


def test_every_parameter_learns_under_every_switch(toy_recipe):
    """DDP without find_unused_parameters needs a gradient for every parameter (this is what broke it)."""
    for overrides in ([], ["recipe.share_weights=false"], ["recipe.detach_target=false"],
                      ["recipe.gen_loss_form=x", "recipe.timestep_distribution=uniform"],
                      ["recipe.decoder_noise=additive"], ["recipe.decoder_noise=none"],
                      ["model.block_norm=true", "model.norm_scale=true", "model.time_embedding=fourier",
                       "model.in_context_tokens=2", "model.in_context_start=1"]):
        recipe, batch = toy_recipe(*overrides)
        loss, _ = recipe(batch)
        loss.backward()
        silent = [n for n, p in recipe.named_parameters() if p.requires_grad and p.grad is None]
        assert not silent, (overrides, silent)


def test_ablation_switches_change_what_trains(toy_recipe):
    recipe, batch = toy_recipe("recipe.share_weights=false")
    assert recipe.denoiser is not recipe.encoder
    draws = recipe.draw(recipe.embedder(batch).layout.mask, torch.float32, seeds=list(range(6)))
    gen = generative_loss_of(recipe, batch, draws)
    gen.backward()
    assert recipe.encoder.latent_in.weight.grad is None  # pass 2 runs on the separate denoiser only
    assert recipe.separate_denoiser.latent_in.weight.grad.abs().sum() > 0

    for detach, reaches in ((True, False), (False, True)):
        recipe, batch = toy_recipe(f"recipe.detach_target={str(detach).lower()}")
        observation = recipe.embedder(batch)
        draws = recipe.draw(observation.layout.mask, torch.float32, seeds=list(range(6)))
        z = recipe.encoder.tokenize(observation, draws.tokenize_noise, draws.tokenize_t)
        target = z.detach() if recipe.detach_target else z
        recipe.generative_loss(target, batch.labels, observation.layout, draws).backward()
        # the observation embedder is reached by the denoising loss only through an undetached target
        assert (recipe.embedder.embed[0].weight.grad is not None) == reaches


def test_muon_split(toy_recipe):
    recipe, _ = toy_recipe("modality.decoder.width=32")
    names = {n: p for n, p in recipe.named_parameters()}
    official = {n for n, p in names.items() if muon_eligible(n, p, "official")}
    io_adamw = {n for n, p in names.items() if muon_eligible(n, p, "io_adamw")}
    # official UNITE: the time MLP, the label table and every latent input map go to Muon ...
    for name in ("encoder.t_embedder.mlp.0.weight", "encoder.y_embedder.table.weight", "encoder.latent_in.weight",
                 "decoder.trunk.latent_in.weight", "decoder.head.weight", "encoder.blocks.0.attn.qkv.weight"):
        assert name in official, name
    # ... only the final layer (and the patch embedding) and non-2-D tensors stay on AdamW
    assert not any("final_layer" in n or names[n].dim() != 2 for n in official)
    assert io_adamw == {n for n in official if not any(part in n for part in (
        "embed", "latent_in", "head", "table", "to_latent_hints"))}
    optimizer = build_optimizer(recipe, "muon", 1e-3, 0.0, (0.9, 0.999), 1e-6, 0.95, "official")
    muon, adamw = optimizer.optimizers
    assert sum(len(g["params"]) for g in muon.param_groups) == len(official)
    assert sum(len(g["params"]) for g in adamw.param_groups) == len(names) - len(official)


def test_generate_uses_the_training_shift_unless_given(toy_recipe, monkeypatch):
    recipe, _ = toy_recipe()
    recipe.eval()
    grids = []
    import core.recipes.base as base
    real_integrate = base.integrate
    monkeypatch.setattr(base, "integrate", lambda v, x0, solver, steps, shift, rtol, atol, endpoint_correction:
                        grids.append(shift) or real_integrate(v, x0, solver, steps, shift, rtol, atol))
    options = dict(solver="euler", num_steps=3, guidance_scale=2.0, guidance_interval=(0.1, 1.0), rtol=1e-4,
                   atol=1e-4, device=torch.device("cpu"))
    points, layout, z = recipe.generate(4, torch.tensor([0, 1, 2, 0]), shift=None, **options)
    assert points.shape == (4, 12, 2) and z.shape == (4, 12, 8) and layout.mask.all()
    recipe.generate(2, None, shift=1.0, **options)  # unconditional: the null class
    assert grids == [recipe.timestep_shift, 1.0]
