"""Training in stages (used by core/train.py).

A recipe names its stages (`recipe.STAGES`: UNITE has one, `joint`; two_stage/ldetok `tokenizer` then
`generator`; aligntok four). Each stage gets its share of `trainer.max_steps` (`recipe.stage_fractions`)
and of `trainer.time_limit_minutes`, a fresh optimiser over the parameters it trains and its own LR
schedule; the global step and the data order run on across stages. When a stage starts, the parts it
freezes take their EMA weights, so the frozen tokenizer of stage 2 is the one stage 1 evaluates, and
its live and EMA copies stay bit-identical while frozen.

Checkpoints of multi-stage recipes name their stage (`step_000000500-tokenizer.pt`) and store it with the
step inside the stage, so `trainer.resume=auto` (or a path, e.g. another run's tokenizer) continues the
right stage; the last checkpoint of a stage is where the next one starts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from core.ema import copy_buffers


@dataclass(frozen=True)
class Stage:
    name: str
    index: int
    steps: int                # optimiser steps of this stage
    seconds: float | None     # its share of trainer.time_limit_minutes (None = no limit)
    checkpoint_tag: str | None  # in checkpoint names; None for single-stage recipes (step_*.pt as before)


def plan_stages(recipe, max_steps: int, time_limit_seconds: float | None) -> list[Stage]:
    split = recipe.stage_steps(max_steps)
    empty = [name for name, steps in split if steps < 1]
    if empty:
        raise ValueError(f"trainer.max_steps={max_steps} leaves stage(s) {empty} without a step "
                         f"(recipe.stage_fractions={recipe.stage_fractions}); raise trainer.max_steps")
    several = len(split) > 1
    return [Stage(name, index, steps,
                  None if time_limit_seconds is None else time_limit_seconds * recipe.stage_fractions[name],
                  name if several else None)
            for index, (name, steps) in enumerate(split)]


def stage_of_checkpoint(state: dict, stages: list[Stage]) -> tuple[Stage, int]:
    """(the stage a checkpoint was written in, steps done in it); checkpoints from before stages existed
    belong to the single stage of their recipe."""
    name = state.get("stage", stages[0].name)
    by_name = {stage.name: stage for stage in stages}
    if name not in by_name:
        raise ValueError(f"the checkpoint was written in stage {name!r}, which this recipe does not have "
                         f"({[s.name for s in stages]})")
    return by_name[name], int(state.get("stage_step", state["step"]))


@torch.no_grad()
def start_stage(recipe, ema_model: torch.nn.Module, name: str, modality, dataset, batch_size: int,
                device: torch.device, seed: int) -> None:
    """A stage starts (not resumes), after recipe.set_stage(name): the parts it freezes take their EMA
    weights; the recipe prepares (staged recipes measure their latent statistics) on training batches in
    file order, of the global batch size, with the data side's random draws (flips, rotations) and its own
    seeded and the global RNG left untouched, so every process, any split of the batch and a resumed run do
    the same; the EMA copy takes the buffers."""
    for live, shadow in zip(recipe.parameters(), ema_model.parameters()):
        if not live.requires_grad:
            live.copy_(shadow)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=modality.collate)  # lazy: read as consumed
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        recipe.prepare_stage(name, (modality.batch_to(batch, device) for batch in loader))
    copy_buffers(recipe, ema_model)  # by name (core/ema.py: e3nn's copies name their constants differently)
