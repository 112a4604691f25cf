"""core/analysis/parameters.py: every GE parameter gets the role its module says; entropy rows of trained
against initial weights."""
import copy
import math

import pytest
import torch

from core.analysis.parameters import ROLES, parameter_roles, role_summary, weight_entropy_rows
from small_models import small_ge


def test_roles_of_the_generative_encoder():
    encoder = small_ge(in_context_tokens=2, in_context_start=1)
    roles = parameter_roles(encoder)
    assert set(roles) == {name for name, _ in encoder.named_parameters()}
    assert set(roles.values()) <= set(ROLES)
    expected = {"blocks.0.attn.qkv.weight": "attention", "blocks.0.attn.proj.bias": "attention",
                "blocks.0.attn.q_norm.weight": "normalisation", "blocks.1.mlp.gate_and_value.weight": "mlp",
                "blocks.1.mlp.out.weight": "mlp", "blocks.2.adaLN_modulation.1.weight": "modulation",
                "final_layer.adaLN_modulation.1.bias": "modulation", "t_embedder.mlp.0.weight": "conditioning",
                "y_embedder.table.weight": "conditioning", "latent_norm.weight": "normalisation",
                "latent_in.weight": "other", "final_layer.linear.weight": "other", "in_context_pos": "other"}
    assert {name: roles[name] for name in expected} == expected


def test_entropy_rows_trained_against_initial():
    torch.manual_seed(0)
    initial = small_ge()
    trained = copy.deepcopy(initial)
    with torch.no_grad():
        trained.blocks[0].attn.qkv.weight.mul_(2.0)  # a rescaled tensor: same histogram, relative change 1
        modulation = trained.blocks[0].adaLN_modulation[1].weight
        modulation.copy_(torch.linspace(-1, 1, modulation.numel()).view_as(modulation))
    rows = {r["name"]: r for r in weight_entropy_rows(trained, initial, bins=16)}
    qkv = rows["blocks.0.attn.qkv.weight"]
    assert math.isclose(qkv["entropy_trained_bits"], qkv["entropy_initial_bits"], rel_tol=1e-12)
    assert math.isclose(qkv["relative_change"], 1.0, rel_tol=1e-12)
    modulation = rows["blocks.0.adaLN_modulation.1.weight"]  # zero-initialised (adaLN-zero), then uniform values
    assert modulation["entropy_initial_bits"] == 0.0
    assert math.isclose(modulation["entropy_trained_bits"], 4.0, rel_tol=1e-3)  # linspace over 16 bins: uniform
    assert modulation["relative_change"] == float("inf")
    assert rows["blocks.1.attn.qkv.weight"]["relative_change"] == 0.0
    summary = {s["role"]: s for s in role_summary(list(rows.values()))}
    assert sum(s["parameters"] for s in summary.values()) == sum(p.numel() for p in trained.parameters())
    assert summary["modulation"]["entropy_change_bits"] > 0


def test_a_different_architecture_is_refused_by_name():
    with pytest.raises(ValueError, match="blocks.2"):
        weight_entropy_rows(small_ge(depth=3), small_ge(depth=2))
