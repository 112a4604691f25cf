"""Build the modality and the recipe (embedder, Generative Encoder, decoder) from a composed config."""
from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

# Config groups that define the network: a checkpoint resumes only under the same values.
# Data-only modality keys (subsets, cache folder) may change between runs.
MODEL_DEFINING_GROUPS = ("model", "recipe", "modality")
DATA_ONLY_MODALITY_KEYS = ("train_subset", "eval_subset", "cache_dir", "data_root", "evaluation", "preload")


class ConfigError(ValueError):
    """A config value or key that cannot build its object; the message names the group and key."""


def _instantiate(node: DictConfig, group: str, **kwargs):
    try:
        return instantiate(node, **kwargs)
    except Exception as error:  # e.g. an unknown or missing key reaches the constructor as a TypeError
        cause = error.__cause__ or error
        raise ConfigError(f"config group '{group}' (_target_: {node.get('_target_')}): "
                          f"{type(cause).__name__}: {cause}") from error


def build_modality(cfg: DictConfig):
    return _instantiate(cfg.modality, "modality")


def _modality_part(build, group: str, *args):
    try:
        return build(*args)
    except (TypeError, KeyError) as error:  # an unknown or missing key of the modality's sub-config
        raise ConfigError(f"config group '{group}': {type(error).__name__}: {error}") from error


def build_recipe(cfg: DictConfig, modality):
    embedder = _modality_part(modality.build_embedder, "modality", cfg.model.width)
    encoder = _instantiate(cfg.model, "model", num_classes=modality.num_classes, rope_axes=modality.rope_axes)
    decoder = _modality_part(modality.build_decoder, "modality", cfg.model.latent_channels)
    return _instantiate(cfg.recipe, "recipe", modality=modality, embedder=embedder, encoder=encoder,
                        decoder=decoder)


def model_defining_config(cfg: DictConfig | dict) -> dict[str, Any]:
    """The part of the config a checkpoint must agree with."""
    container = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    defining = {group: dict(container[group]) for group in MODEL_DEFINING_GROUPS}
    for key in DATA_ONLY_MODALITY_KEYS:
        defining["modality"].pop(key, None)
    return defining
