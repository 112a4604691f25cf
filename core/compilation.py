"""Optional torch.compile of the transformer blocks (trainer.compile, sampler.compile).

Blocks are compiled one by one in place (`nn.Module.compile`), not the whole model: identical blocks share
one compiled graph (weights are graph inputs), compilation takes seconds per distinct shape instead of
minutes, the modality code around the blocks stays eager, and state-dict keys do not change (checkpoints
load either way). A block is every element of a `blocks` ModuleList: the GE's, the decoder trunks'.
"""
from __future__ import annotations

import torch.nn as nn


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    return [block for name, module in model.named_modules()
            if name.rsplit(".", 1)[-1] == "blocks" and isinstance(module, nn.ModuleList) for block in module]


def compile_blocks(model: nn.Module, **options) -> int:
    """Compile every transformer block of `model` in place; returns how many. options: torch.compile's."""
    blocks = transformer_blocks(model)
    for block in blocks:
        block.compile(**options)
    return len(blocks)
