"""The Generative Encoder's hidden states at its latent-token positions, block by block, in either pass.

Forward hooks on `encoder.blocks`, registered from outside for one call and removed after it, record each
block's output; only the latent positions are kept (the tokenize pass also carries observation tokens after
them, and with in-context class tokens the latents sit after those from block `in_context_start` on).
Packed token layouts (trainer.packing) would flatten the batch, so packing is off while recording.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch

from core.generative_encoder import GenerativeEncoder


@contextmanager
def _unpacked(encoder: GenerativeEncoder):
    """packing = 'none' for the duration (an instance value set by core.packing, else the class default)."""
    had_own = "packing" in vars(encoder)
    previous = encoder.packing
    encoder.packing = "none"
    try:
        yield
    finally:
        if had_own:
            encoder.packing = previous
        else:
            del encoder.packing


def latent_offset(encoder: GenerativeEncoder, block_index: int) -> int:
    """Where the latent tokens start in block `block_index`'s output: after the in-context class tokens from
    block in_context_start on (core/generative_encoder.py), else at 0."""
    if encoder.in_context_tokens and block_index >= encoder.in_context_start:
        return encoder.in_context_tokens
    return 0


@torch.no_grad()
def latent_block_outputs(encoder: GenerativeEncoder, run: Callable[[], torch.Tensor],
                         n_lat: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(per block, its output at the latent positions [B, N_lat, D] in float32; the pass's result
    [B, N_lat, C]) of `run()`, a call of encoder.tokenize(...) or encoder.denoise(...)."""
    outputs: list[torch.Tensor | None] = [None] * len(encoder.blocks)

    def hook_for(index: int):
        offset = latent_offset(encoder, index)

        def hook(_module, _inputs, output):
            outputs[index] = output[:, offset:offset + n_lat].float().clone()
        return hook
    handles = [block.register_forward_hook(hook_for(i)) for i, block in enumerate(encoder.blocks)]
    try:
        with _unpacked(encoder):
            result = run()
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i, o in enumerate(outputs) if o is None]
    if missing:
        raise RuntimeError(f"latent_block_outputs: blocks {missing} of the GE did not run in this pass "
                           "(`run` must call this encoder's tokenize or denoise)")
    return outputs, result.float()
