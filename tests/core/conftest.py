"""A UNITE-style recipe on the toy point-set modality, for the recipe tests of this folder."""
import pytest
import torch

from core.build import build_modality, build_recipe
from toy_modality.point_sets import register_point_sets

TOY = ["modality=point_sets", "model.depth=2", "model.width=32", "model.heads=4", "trainer.out_dir=unused"]


@pytest.fixture(scope="module")
def toy_recipe(compose_config):
    """toy_recipe(*overrides) -> (recipe in train mode, a batch of 6 point sets), seeded; `recipe=...` picks
    the recipe (UNITE by default)."""
    register_point_sets()

    def build(*overrides):
        cfg = compose_config(TOY + list(overrides))
        modality = build_modality(cfg)
        torch.manual_seed(0)
        recipe = build_recipe(cfg, modality).train()
        for name, parameter in recipe.named_parameters():  # leave the zero inits: outputs depend on inputs
            if "final_layer" in name or "adaLN" in name:
                torch.nn.init.normal_(parameter, std=0.05)
        items = [modality.dataset("train")[i] for i in range(6)]
        return recipe, modality.collate(items)
    return build
