"""Small Generative Encoders for unit tests: every constructor argument spelled once, override any."""
from __future__ import annotations

from core.generative_encoder import GenerativeEncoder

GE_OPTIONS = dict(depth=3, width=32, heads=4, mlp_ratio=2.0, qk_norm=True, latent_channels=6, num_classes=5,
                  class_dropout=0.1, in_context_tokens=0, in_context_start=0, rope_axes=0,
                  tokenize_t_max=0.01, latent_norm_affine=True, final_layer_init_std=0.0,
                  gradient_checkpointing=False, block_norm=False, norm_scale=False,
                  time_embedding="sinusoidal", rope_positions="grid")


def small_ge(**overrides) -> GenerativeEncoder:
    unknown = set(overrides) - set(GE_OPTIONS)
    if unknown:
        raise TypeError(f"small_ge: unknown GenerativeEncoder options {sorted(unknown)}")
    return GenerativeEncoder(**{**GE_OPTIONS, **overrides})
