"""Molecules padded vs packed (trainer.packing), forward + backward of the default molecule model.

Used by `python -m benchmarks.run hot_paths --paths packing [--molecule-batch 64]`: one recipe, the same
QM9 training batch, the two executions alternating; the loss difference is taken with the same draws.
"""
from __future__ import annotations

import tempfile

import torch

from benchmarks.timing import alternate


def molecule_step(batch_size: int, overrides: list[str] = ()):
    """(recipe in train mode, a batch of the first `batch_size` QM9 training molecules, its mask)."""
    from benchmarks.official_parity import compose
    from core.build import build_modality, build_recipe
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose(["modality=molecule", f"trainer.out_dir={folder}", *overrides])
    modality = build_modality(cfg)
    torch.manual_seed(0)
    recipe = build_recipe(cfg, modality).train()
    data = modality.dataset("train")
    batch = modality.collate([data[i] for i in range(batch_size)])
    return recipe, batch, recipe.embedder(batch).layout.mask


def measure_packing(rounds: int, warmup: int, batch_size: int = 64) -> dict:
    from core.noise_streams import global_positions, stream_seeds
    from core.packing import set_packing
    recipe, batch, mask = molecule_step(batch_size)
    seeds = stream_seeds(0, 0, global_positions(1, 0, 0, batch_size))

    def loss_with(packing: str):
        set_packing(recipe, packing)
        torch.manual_seed(0)  # the embedder's rotation and input corruption
        loss, _ = recipe(batch, seeds)
        return loss

    def run(packing: str):
        def call():
            recipe.zero_grad(set_to_none=True)
            loss_with(packing).backward()
        return call
    with torch.no_grad():
        padded = float(loss_with("none"))
        differences = {mode: abs(float(loss_with(mode)) - padded) for mode in ("tokens", "block_diagonal")}
    result = alternate({"none": run("none"), "tokens": run("tokens"), "block_diagonal": run("block_diagonal")},
                       rounds, warmup)
    set_packing(recipe, "none")
    counts = mask.sum(1).float()
    where = (f"QM9 batch {batch_size}: {int(counts.sum())} atoms in {mask.numel()} padded slots "
             f"({1 - counts.sum() / mask.numel():.0%} padding); plain = padded")
    return [{"path": f"packing ({mode})", "plain_s": result["median"]["none"], "fast_s": result["median"][mode],
             "plain_over_fast": result["ratio_to_first"][mode], "loss_difference": differences[mode],
             "note": f"{where}, fast = trainer.packing={mode}"} for mode in ("tokens", "block_diagonal")]
