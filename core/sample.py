"""Generate from a checkpoint (EMA weights; `weights=raw` for the optimizer's):

    python -m core.sample checkpoint=runs/molecule/<run>/checkpoints/step_000001000.pt num_samples=1000 \
        [out_dir=...] [sampler.solver=heun sampler.num_steps=50 sampler.guidance_scale=...] [device=auto] \
        [+evaluation.fid_reference_images=10000 ...]

The model is rebuilt from the config stored in the checkpoint; the sampler settings are those of
configs/sampler/default.yaml plus any `sampler.*` overrides given here, and `evaluation.*` overrides
replace keys of the run's `modality.evaluation` (figures and files only, never the network). The
modality writes the files (molecules: SDF, XYZ, PNG grid; images: PNGs and a grid).
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from core.build import ConfigError, build_modality, build_recipe
from core.checkpoint import load_checkpoint
from core.distributed import init_world, leave_world
from core.evaluation import generate_and_write


# Config keys added after checkpoints were written, with the value that rebuilds such a checkpoint as
# it was trained (for init-only keys, any value: the checkpoint's weights replace what they build).
# Key: (node the keys go into, None or (config key, value) that the run must have for them to apply).
UNITE = "core.recipes.unite.UniteRecipe"
IMPLIED = {"recipe._target_": UNITE}  # what a config without the key meant (older configs: UNITE)
KEYS_ADDED_LATER = {
    ("model", None): {"final_layer_init_std": 0.0, "block_norm": False, "norm_scale": False,
                      "time_embedding": "sinusoidal", "rope_positions": "grid"},
    ("modality.decoder", ("modality.name", "image")): {"architecture": "rope", "latent_width": None,
                                                        "head": "linear", "conv_head_features": 32},
    ("modality", ("modality.name", "image")): {"preload": False},
    ("modality", ("modality.name", "molecule")): {"geom_drugs": None},
    ("modality.embedder", ("modality.name", "molecule")): {"index_slots": "none"},
    ("recipe", None): {"gen_loss_weighting": "none", "beta_alpha": 2.0, "self_conditioning": 0.0,
                       "x_prediction_skip": "none"},
    ("recipe", ("recipe._target_", UNITE)): {"latent_whitening": "none", "latent_whitening_momentum": 0.01},
}
# Weights that earlier versions of the UNITE recipe built but never used (DDP needs every parameter to get a
# gradient); recipe=ldetok has this one and keeps it.
REMOVED_STATE_KEYS = {UNITE: ("decoder.trunk.mask_token",)}


def config_value(run_cfg: DictConfig, key: str):
    """`key` of a run config, or what its absence meant (IMPLIED)."""
    return OmegaConf.select(run_cfg, key, default=IMPLIED.get(key))


def upgrade_config(run_cfg: DictConfig) -> DictConfig:
    """An older checkpoint's run config in today's form: keys added later get the value that rebuilds it."""
    for (path, condition), added in KEYS_ADDED_LATER.items():
        node = OmegaConf.select(run_cfg, path)
        if node is None or (condition is not None and config_value(run_cfg, condition[0]) != condition[1]):
            continue
        for key, value in added.items():
            if key not in node:
                node[key] = value
    return run_cfg


def upgrade_weights(run_cfg: DictConfig, weights: dict) -> dict:
    """A state dict of the run `run_cfg` without the tensors its recipe no longer builds (REMOVED_STATE_KEYS)."""
    removed = REMOVED_STATE_KEYS.get(config_value(run_cfg, "recipe._target_"), ())
    return {k: v for k, v in weights.items() if k not in removed}


def upgrade_checkpoint(run_cfg: DictConfig, weights: dict) -> tuple[DictConfig, dict]:
    """An older checkpoint's config and weights in today's form (see KEYS_ADDED_LATER, REMOVED_STATE_KEYS)."""
    run_cfg = upgrade_config(run_cfg)
    return run_cfg, upgrade_weights(run_cfg, weights)


def with_evaluation_overrides(run_cfg: DictConfig, overrides: DictConfig) -> DictConfig:
    """The run's config with `overrides` merged into modality.evaluation (unknown keys fail at build)."""
    if not overrides:
        return run_cfg
    if "evaluation" not in run_cfg.modality:
        raise ConfigError(f"evaluation overrides {sorted(overrides)} given, but this checkpoint's modality "
                          f"{run_cfg.modality.name!r} has no modality.evaluation group")
    run_cfg.modality.evaluation = OmegaConf.merge(run_cfg.modality.evaluation, overrides)
    return run_cfg


WEIGHTS = {"ema": "ema", "raw": "model"}  # sample.yaml `weights` -> the checkpoint entry it reads


def load_for_sampling(checkpoint: Path, evaluation_overrides: DictConfig, device: torch.device,
                      weights: str = "ema"):
    """(model on `device`, its modality, the checkpoint's run config, its step) from a step_*.pt file;
    weights: ema (the EMA weights) or raw (the optimizer's weights, for runs too short for their EMA)."""
    if weights not in WEIGHTS:
        raise ConfigError(f"weights={weights!r}: choose one of {sorted(WEIGHTS)}")
    state = load_checkpoint(Path(checkpoint), map_location="cpu")
    run_cfg, state_dict = upgrade_checkpoint(OmegaConf.create(state["config"]), state[WEIGHTS[weights]])
    run_cfg = with_evaluation_overrides(run_cfg, evaluation_overrides)
    if "foundation" in run_cfg.recipe:  # recipe=aligntok: the checkpoint holds the encoder's trained weights,
        run_cfg.recipe.foundation.weights = "random"  # its pretrained file is not needed to rebuild it
    modality = build_modality(run_cfg)
    model = build_recipe(run_cfg, modality)
    model.load_state_dict(state_dict)
    return model.to(device).eval(), modality, run_cfg, state["step"]


def sample(cfg: DictConfig) -> dict:
    if cfg.checkpoint is None:
        raise ValueError("core.sample needs checkpoint=<path to a step_*.pt file>")
    world = init_world(cfg.device)
    model, modality, run_cfg, step = load_for_sampling(cfg.checkpoint, cfg.evaluation, world.device, cfg.weights)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else Path(cfg.checkpoint).parent.parent / f"samples_step{step}"
    summary = generate_and_write(model, modality, cfg.sampler, cfg.num_samples, out_dir, world.device, cfg.seed)
    has_evaluation = "evaluation" in run_cfg.modality  # a modality without the group has none to record
    summary.update(checkpoint=str(cfg.checkpoint), step=step, weights=cfg.weights,
                   evaluation=OmegaConf.to_container(run_cfg.modality.evaluation) if has_evaluation else None)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


@hydra.main(config_path="../configs", config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    summary = sample(cfg)
    leave_world()
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
