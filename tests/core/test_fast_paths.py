"""Every fast path gives the plain eager path's result: same outputs / loss to float tolerance for a fixed
batch and seed. The plain variants are benchmarks/hot_paths.py's (what the code did before each change)."""
import pytest
import torch

from benchmarks.hot_paths import PLAIN_CHANGES, chunked_swiglu, old_generate, per_row_rotary, plain_path
from core.compilation import compile_blocks, transformer_blocks
from core.layers import SwiGLU
from core.modality import LatentLayout, Observation
from core.packing import pack_tokens, set_packing
from core.rope import RotaryEmbedding
from modalities.image.embedder import PatchEmbedder
from small_models import TINY_IMAGE, small_ge, tiny_image_recipe


def test_swiglu_halves_equal_the_chunked_product():
    torch.manual_seed(0)
    mlp = SwiGLU(32, 4.0)
    x = torch.randn(3, 7, 32, requires_grad=True)
    fast = mlp(x)
    fast_grads = torch.autograd.grad(fast.square().sum(), [x, mlp.gate_and_value.weight])
    plain = chunked_swiglu(mlp, x)
    plain_grads = torch.autograd.grad(plain.square().sum(), [x, mlp.gate_and_value.weight])
    assert torch.allclose(fast, plain, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast_grads, plain_grads))


def test_rotary_tables_of_shared_coordinates_are_one_row_and_equal_per_row_tables():
    rope = RotaryEmbedding(16, 2)
    coords = torch.rand(1, 9, 2).expand(5, -1, -1)
    cos, sin = rope(coords)
    assert cos.shape == (1, 1, 9, 16)
    cos_rows, sin_rows = per_row_rotary(rope, coords)
    assert cos_rows.shape == (5, 1, 9, 16)
    assert torch.equal(cos.expand_as(cos_rows), cos_rows) and torch.equal(sin.expand_as(sin_rows), sin_rows)


def test_layout_repeat_keeps_shared_rows_as_views():
    positions = torch.rand(1, 4, 2).expand(3, -1, -1)
    layout = LatentLayout(torch.ones(3, 4, dtype=torch.bool), positions, padded=False).repeat(2)
    assert layout.positions.stride(0) == 0 and layout.positions.shape == (6, 4, 2) and not layout.padded
    assert torch.equal(layout.positions, positions.contiguous().repeat(2, 1, 1))


@pytest.mark.parametrize("extra", [[], ["model.rope_positions=grid", "modality.decoder.architecture=rope",
                                        "modality.decoder.latent_width=null", "model.in_context_tokens=0"]],
                         ids=["official_options", "our_cpu_options"])
def test_the_fast_step_has_the_plain_steps_loss_and_gradients(compose_config, tmp_path, extra):
    """No SDPA mask without padding, SwiGLU halves, shared RoPE rows: same loss and gradients as before."""
    recipe, batch = tiny_image_recipe(compose_config, tmp_path, *extra)
    seeds = list(range(TINY_IMAGE["batch"]))
    results = []
    for changes in (PLAIN_CHANGES, ()):
        recipe.zero_grad(set_to_none=True)
        with plain_path(changes, PatchEmbedder):
            loss, _ = recipe(batch, seeds)
            loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in recipe.parameters() if p.grad is not None]))
    (plain_loss, plain_grads), (fast_loss, fast_grads) = results
    assert torch.allclose(plain_loss, fast_loss, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(plain_grads, fast_grads))


def test_the_sampler_gives_the_old_samplers_images(compose_config, tmp_path):
    recipe, _ = tiny_image_recipe(compose_config, tmp_path)
    recipe.eval()
    labels = torch.tensor([1, 2, 3])
    torch.manual_seed(5)
    old = old_generate(recipe, 3, labels, 4, 2.0, torch.device("cpu"))
    torch.manual_seed(5)
    new = recipe.generate(3, labels, solver="euler", num_steps=4, shift=None, guidance_scale=2.0,
                          guidance_interval=(0.1, 1.0), rtol=1e-4, atol=1e-4, device=torch.device("cpu"))[0]
    assert torch.allclose(old, new, atol=1e-5)


def padded_batch(seed=0):
    """A GE with padding: 3 sets of 5, 2 and 4 real tokens (of 5), observation tokens and hints."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    observation = Observation(torch.randn(3, 5, 32, generator=g), mask, None, torch.randn(3, 5, 32, generator=g),
                              LatentLayout(mask=mask))
    return observation, torch.randn(3, 5, 6, generator=g), mask


@pytest.mark.parametrize("mode", ["tokens", "block_diagonal"])
def test_packed_sequences_equal_padding_on_every_real_token(mode):
    torch.manual_seed(0)
    ge = small_ge()
    for name, parameter in ge.named_parameters():
        if "final_layer" in name or "adaLN" in name:
            torch.nn.init.normal_(parameter, std=0.05)
    observation, x_t, mask = padded_batch()
    t, labels = torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0, 1, 5])
    padded = (ge.tokenize(observation, x_t, t), ge.denoise(x_t, t, labels, observation.layout, torch.zeros(3).bool()))
    set_packing(ge, mode)
    packed = (ge.tokenize(observation, x_t, t), ge.denoise(x_t, t, labels, observation.layout, torch.zeros(3).bool()))
    for a, b in zip(padded, packed):
        assert torch.allclose(a[mask], b[mask], atol=1e-5)
    packing = pack_tokens(mask, mode)
    assert packing.sample.tolist() == [0] * 5 + [1] * 2 + [2] * 4
    assert torch.equal(packing.unpack(packing.pack(x_t))[mask], x_t[mask])


@pytest.mark.parametrize("recipe_name", ["unite", "ldetok"])
def test_packed_molecule_step_has_the_padded_loss(compose_config, tmp_path, recipe_name):
    """l-DeTok (its tokenizer stage): the atoms it hides are padding to the encoder, packed away too."""
    from core.build import build_modality, build_recipe
    cfg = compose_config(["experiment=molecule_smoke", f"recipe={recipe_name}", f"trainer.out_dir={tmp_path}"])
    modality = build_modality(cfg)
    torch.manual_seed(0)
    recipe = build_recipe(cfg, modality)
    recipe.set_stage(recipe.stages[0])
    recipe.train()
    data = modality.dataset("train")
    batch = modality.collate([data[i] for i in range(6)])
    assert not recipe.embedder(batch).layout.mask.all()  # the batch has padding
    losses = {}
    for mode in ("none", "tokens", "block_diagonal"):
        set_packing(recipe, mode)
        torch.manual_seed(1)
        losses[mode] = float(recipe(batch, list(range(6)))[0].detach())
    assert losses["tokens"] == pytest.approx(losses["none"], rel=1e-5)
    assert losses["block_diagonal"] == pytest.approx(losses["none"], rel=1e-5)


def test_compiled_blocks_give_the_eager_outputs_and_keep_checkpoint_keys():
    torch.manual_seed(0)
    ge = small_ge(depth=1, width=16, heads=2)
    for name, parameter in ge.named_parameters():
        if "adaLN" in name or "final_layer" in name:
            torch.nn.init.normal_(parameter, std=0.05)
    keys = list(ge.state_dict())
    layout = LatentLayout(mask=torch.ones(2, 4, dtype=torch.bool), padded=False)
    x, t = torch.randn(2, 4, 6), torch.tensor([0.3, 0.7])
    eager = ge.denoise(x, t, None, layout)
    assert compile_blocks(ge) == len(transformer_blocks(ge)) == 1
    assert torch.allclose(ge.denoise(x, t, None, layout), eager, atol=1e-5)
    assert list(ge.state_dict()) == keys


def test_auto_packing_packs_on_cpus_only_and_never_with_in_context_tokens():
    from core.packing import auto_packing, resolve_packing
    plain, in_context = small_ge(), small_ge()
    in_context.in_context_tokens = 4
    assert auto_packing(torch.device("cpu"), plain)[0] == "tokens"
    assert auto_packing(torch.device("cpu"), in_context)[0] == "none"
    assert auto_packing(torch.device("cuda"), plain)[0] == "none"  # not measured on GPUs yet
    assert resolve_packing("block_diagonal", torch.device("cpu"), plain) == ("block_diagonal", "")
