import pytest
import torch

from core.layers import FourierTimestepEmbedder, TimestepEmbedder
from core.modality import LatentLayout, Observation
from core.rope import RotaryEmbedding, apply_rotary
from small_models import small_ge


def make_ge(**overrides):
    torch.manual_seed(0)
    ge = small_ge(**overrides)
    for p in ge.parameters():  # leave the zero init so outputs depend on inputs
        torch.nn.init.normal_(p, std=0.1)
    return ge.eval()


def test_zero_init_output_is_the_latent_norm_bias():
    ge = small_ge(depth=2, num_classes=0, class_dropout=0.0)
    x = torch.randn(2, 5, 6)
    out = ge.denoise(x, torch.rand(2), None, LatentLayout(mask=torch.ones(2, 5, dtype=torch.bool)))
    assert torch.allclose(out, ge.latent_norm.bias.expand_as(out))


def test_final_layer_init_std_sets_the_output_weights_and_the_first_gradients():
    def first_gradient(std):
        torch.manual_seed(0)
        ge = small_ge(depth=2, width=64, latent_channels=8, num_classes=0, class_dropout=0.0,
                      final_layer_init_std=std)
        out = ge.denoise(torch.randn(4, 5, 8), torch.rand(4), None, LatentLayout(mask=torch.ones(4, 5, dtype=torch.bool)))
        (out - torch.randn_like(out)).square().mean().backward()
        return ge.final_layer.linear.weight, out.detach()
    weight, out = first_gradient(0.0)
    zero_grad = weight.grad.norm()
    weight, out = first_gradient(0.02)
    assert abs(float(weight.detach().std()) - 0.02) < 0.002 and float(out.std()) > 0.5  # z is no longer constant
    # LayerNorm at its all-zero input scales gradients by 1/sqrt(eps) ~ 316; at a small normal init by
    # 1/std(pre-norm output) ~ 1/(0.02 sqrt(64)) ~ 6: the zero init's first gradient is ~35x larger here
    assert zero_grad > 20 * weight.grad.norm()
    with pytest.raises(ValueError, match="final_layer_init_std"):
        make_ge(final_layer_init_std=-1.0)


def test_denoise_shapes_and_padding_does_not_leak():
    ge = make_ge()
    x = torch.randn(2, 7, 6)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    t, labels = torch.rand(2), torch.tensor([1, 2])
    out = ge.denoise(x, t, labels, LatentLayout(mask=mask))
    assert out.shape == (2, 7, 6)
    x2 = x.clone()
    x2[1, 4:] = 1000.0  # change only padding of sample 1
    out2 = ge.denoise(x2, t, labels, LatentLayout(mask=mask))
    assert torch.allclose(out[1, :4], out2[1, :4], atol=1e-5)


def test_set_denoiser_is_permutation_equivariant():
    ge = make_ge()
    x = torch.randn(1, 6, 6)
    layout = LatentLayout(mask=torch.ones(1, 6, dtype=torch.bool))
    perm = torch.randperm(6)
    out = ge.denoise(x, torch.tensor([0.3]), torch.tensor([1]), layout)
    out_perm = ge.denoise(x[:, perm], torch.tensor([0.3]), torch.tensor([1]), layout)
    assert torch.allclose(out[:, perm], out_perm, atol=1e-5)


def test_tokenize_uses_observation_and_null_class():
    ge = make_ge(in_context_tokens=4, in_context_start=1)
    obs_tokens = torch.randn(2, 5, 32)
    mask = torch.ones(2, 5, dtype=torch.bool)
    observation = Observation(obs_tokens, mask, None, latent_hints=torch.randn(2, 5, 32),
                              layout=LatentLayout(mask=mask))
    torch.manual_seed(1)
    z1 = ge.tokenize(observation)
    torch.manual_seed(1)
    z2 = ge.tokenize(Observation(obs_tokens + 1, mask, None, observation.latent_hints, observation.layout))
    assert z1.shape == (2, 5, 6) and not torch.allclose(z1, z2)


def test_class_condition_changes_prediction_and_dropout_only_in_training():
    ge = make_ge(in_context_tokens=2, in_context_start=1, class_dropout=1.0)
    x, t = torch.randn(2, 4, 6), torch.rand(2)
    layout = LatentLayout(mask=torch.ones(2, 4, dtype=torch.bool))
    a = ge.denoise(x, t, torch.tensor([0, 0]), layout)
    b = ge.denoise(x, t, torch.tensor([3, 3]), layout)
    null = ge.denoise(x, t, ge.y_embedder.null_labels(2, "cpu"), layout)
    assert not torch.allclose(a, b)
    ge.train()  # dropout 1.0: every label becomes the null class
    assert torch.allclose(ge.denoise(x, t, torch.tensor([0, 0]), layout), null, atol=1e-6)


def test_rope_grid_model_requires_positions():
    ge = make_ge(rope_axes=2)
    layout = LatentLayout(mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="positions"):
        ge.denoise(torch.randn(1, 4, 6), torch.rand(1), None, layout)
    grid = torch.stack(torch.meshgrid(torch.arange(2.), torch.arange(2.), indexing="ij"), -1).view(1, 4, 2)
    out = ge.denoise(torch.randn(1, 4, 6), torch.rand(1), None, LatentLayout(layout.mask, positions=grid))
    assert out.shape == (1, 4, 6)


def test_rope_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(head_dim=8, num_axes=2)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq, pk):
        cq, sq = rope(torch.tensor([[pq]], dtype=torch.float32))
        ck, sk = rope(torch.tensor([[pk]], dtype=torch.float32))
        return float((apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum())
    assert score([1, 2], [3, 5]) == pytest.approx(score([4, 0], [6, 3]), abs=1e-5)
    assert score([1, 2], [3, 5]) != pytest.approx(score([1, 2], [3, 6]), abs=1e-3)


def test_bad_sizes():
    with pytest.raises(ValueError, match="latent_channels"):
        make_ge(latent_channels=0)
    with pytest.raises(ValueError, match="in_context_start"):
        make_ge(in_context_tokens=2, in_context_start=9)


def test_gradient_checkpointing_matches():
    ge = make_ge()
    ge_ckpt = make_ge(gradient_checkpointing=True)
    ge.train(), ge_ckpt.train()
    x, t, y = torch.randn(2, 4, 6), torch.rand(2), torch.tensor([1, 2])
    layout = LatentLayout(mask=torch.ones(2, 4, dtype=torch.bool))
    ge.y_embedder.dropout = ge_ckpt.y_embedder.dropout = 0.0
    ge(x, t, y, layout, None, False).sum().backward()
    ge_ckpt(x, t, y, layout, None, False).sum().backward()
    for p, q in zip(ge.parameters(), ge_ckpt.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5)


def test_time_features_at_the_tokenize_end():
    """Pass 1 runs at t ~ U(0, 0.01): DiT's sinusoid of 1000 t already turns there, the official Gaussian
    Fourier features (w ~ N(0, 1)) barely move (the issue's 0.68 vs 0.998)."""
    torch.manual_seed(0)
    sinusoidal, fourier = TimestepEmbedder(8), FourierTimestepEmbedder(8)
    features = {}
    for name, embedder in (("sinusoidal", sinusoidal), ("fourier", fourier)):
        captured = []
        embedder.mlp[0].register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        embedder(torch.tensor([0.0, 0.01]))
        features[name] = torch.nn.functional.cosine_similarity(captured[0][:1], captured[0][1:]).item()
    assert features["sinusoidal"] == pytest.approx(0.675, abs=0.01)
    assert features["fourier"] > 0.995
    assert "frequencies" in fourier.state_dict()  # the random frequencies travel with the checkpoint


def test_block_norm_and_norm_scale():
    plain, official = make_ge(), make_ge(block_norm=True, norm_scale=True)
    extra = sum(p.numel() for p in official.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 3 * 3 * 32 + 32  # three scaled RMSNorms per block, one in the final layer
    # adaLN-zero: a plain block is the identity at init; with block_norm it normalises the residual stream
    torch.manual_seed(0)
    fresh = small_ge(block_norm=True)
    x = 5 * torch.randn(2, 4, 32)
    c = torch.randn(2, 32)
    block_out = fresh.blocks[0](x, c, None, None)
    assert torch.allclose(block_out.pow(2).mean(-1), torch.ones(2, 4), atol=1e-4)
    assert torch.equal(small_ge().blocks[0](x, c, None, None), x)


def test_sequence_rope_numbers_tokens_by_index():
    """Official UNITE: 1-D RoPE over the token index, latents first, then observation tokens; class tokens
    joining later sit at coordinate 0 (identity rotation)."""
    ge = make_ge(rope_axes=2, rope_positions="sequence", in_context_tokens=2, in_context_start=1)
    assert ge.rotary.num_axes == 1
    seen = []
    ge.rotary.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0][0, :, 0].tolist()))
    mask = torch.ones(1, 3, dtype=torch.bool)
    observation = Observation(torch.randn(1, 2, 32), torch.ones(1, 2, dtype=torch.bool), None, None,
                              LatentLayout(mask=mask))
    ge.tokenize(observation)  # no grid positions needed
    assert seen == [[0, 1, 2, 3, 4], [0, 0, 0, 1, 2, 3, 4]]
    with pytest.raises(ValueError, match="rope_positions=sequence.*set"):
        make_ge(rope_axes=0, rope_positions="sequence")
    with pytest.raises(ValueError, match="time_embedding"):
        make_ge(time_embedding="dit")
