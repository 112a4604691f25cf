"""core/analysis/activations.py: the hooks record each block's latent positions in either pass (the last
block's record, through the GE's head, gives the pass's output), with and without in-context class tokens,
and leave the GE as they found it."""
import pytest
import torch

from core.analysis.activations import latent_block_outputs
from core.modality import LatentLayout, Observation
from small_models import small_ge

B, N_LAT, N_OBS, WIDTH = 3, 5, 7, 32


def _encoder(**options):
    torch.manual_seed(0)
    encoder = small_ge(**options).eval()
    with torch.no_grad():  # leave the zero inits: every block then changes its input
        for name, parameter in encoder.named_parameters():
            if "final_layer" in name or "adaLN" in name:
                parameter.normal_(std=0.05)
    return encoder


def _observation():
    g = torch.Generator().manual_seed(1)
    layout = LatentLayout(mask=torch.ones(B, N_LAT, dtype=torch.bool), padded=False)
    return Observation(tokens=torch.randn(B, N_OBS, WIDTH, generator=g), mask=torch.ones(B, N_OBS, dtype=torch.bool),
                       positions=None, latent_hints=None, layout=layout, padded=False)


def _head(encoder, last_block_latents, t, labels):
    """The GE's output from its last block's latent positions: final adaLN layer and LayerNorm."""
    c = encoder.t_embedder(t) + encoder.y_embedder(labels, B, t.device, force_null=labels is None)
    return encoder.latent_norm(encoder.final_layer(last_block_latents, c))


@pytest.mark.parametrize("options", [{}, {"in_context_tokens": 2, "in_context_start": 1}])
def test_block_outputs_in_both_passes(options):
    encoder = _encoder(**options)
    observation = _observation()
    g = torch.Generator().manual_seed(2)
    noise, t_tok = torch.randn(B, N_LAT, 6, generator=g), torch.full((B,), 0.005)
    blocks, z = latent_block_outputs(encoder, lambda: encoder.tokenize(observation, noise, t_tok), N_LAT)
    assert len(blocks) == 3 and all(b.shape == (B, N_LAT, WIDTH) for b in blocks)
    with torch.no_grad():
        assert torch.allclose(_head(encoder, blocks[-1], t_tok, None), z, atol=1e-5)
        assert torch.allclose(encoder.tokenize(observation, noise, t_tok), z)  # the hooks did not change the pass
    assert not torch.allclose(blocks[0], blocks[1])

    t, labels = torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0, 3, 4])
    x_t = t[:, None, None] * z + (1 - t[:, None, None]) * noise
    drop = torch.zeros(B, dtype=torch.bool)
    blocks, x1_hat = latent_block_outputs(encoder, lambda: encoder.denoise(x_t, t, labels, observation.layout, drop),
                                          N_LAT)
    with torch.no_grad():
        assert torch.allclose(_head(encoder, blocks[-1], t, labels), x1_hat, atol=1e-5)
    assert all(len(block._forward_hooks) == 0 for block in encoder.blocks)  # removed after the call


def test_packing_is_off_while_recording_and_restored():
    encoder = _encoder()
    encoder.packing = "tokens"
    seen = []
    observation = _observation()

    def run():
        seen.append(encoder.packing)
        return encoder.tokenize(observation)
    latent_block_outputs(encoder, run, N_LAT)
    assert seen == ["none"] and encoder.packing == "tokens"


def test_a_pass_that_skips_the_blocks_is_named():
    encoder = _encoder()
    with pytest.raises(RuntimeError, match=r"blocks \[0, 1, 2\]"):
        latent_block_outputs(encoder, lambda: torch.zeros(1), N_LAT)
