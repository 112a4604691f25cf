"""Our `experiment=imagenet256_unite_b` model reproduces the official UNITE code layer by layer.

tests/fixtures/official_parity.pt holds the official code's outputs (built by benchmarks/official_parity.py
from a checkout of ShivamDuggal4/UNITE-tokenization-generation @2389f2c): seeds for its weights and inputs,
the random draws of one training step, and its outputs. Here our model at the same small size gets the
mapped weights and reproduces every output in float64. The official code computes its RMSNorms and time
embedding in float32, so agreement is ~1e-7, well inside the 1e-5 asked for.
"""
from pathlib import Path

import pytest
import torch

from benchmarks import official_parity as parity
from core.build import build_modality, build_recipe

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official_parity.pt"
COMPONENTS = ("ge_block", "time_embedding", "tokenize", "denoise", "decoder", "joint_loss", "lr_schedule")


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def our_side(fixture, compose_config, tmp_path_factory):
    """(our outputs, our parameters that received no official weight, the composed config)."""
    root = parity.class_folders(tmp_path_factory.mktemp("classes"), fixture["sizes"]["num_classes"])
    cfg = compose_config(parity.OUR_OVERRIDES + [f"modality.data_root={root}"])
    recipe = parity.build_ours(cfg)
    unmapped = parity.load_mapped(recipe, parity.official_weights(fixture))
    outputs = parity.our_outputs(recipe, parity.seeded_inputs(fixture["input_seed"]), fixture["draws"],
                                 fixture["lr_steps"], cfg.trainer.max_steps, dict(cfg.trainer.lr_schedule))
    return outputs, unmapped, cfg


@pytest.mark.parametrize("component", COMPONENTS)
def test_reproduces_the_official_output(fixture, our_side, component):
    (absolute, relative), = parity.differences(our_side[0], {component: fixture["outputs"][component]}).values()
    print(f"{component}: max |ours - official| = {absolute:.2e} ({relative:.2e} of max(1, max |official|))")
    assert relative <= parity.TOLERANCE


def test_every_weight_has_its_counterpart(fixture, our_side):
    assert our_side[1] == []  # each of our parameters (and the Fourier frequencies) got an official value
    assert parity.SIZES == fixture["sizes"]


def test_the_parity_check_is_sensitive(fixture, our_side, monkeypatch, compose_config, tmp_path):
    """Without the RoPE pair permutation of the mapping, the tokenize pass misses by far."""
    monkeypatch.setattr(parity, "rope_pair_order", lambda head_dim: torch.arange(head_dim))
    root = parity.class_folders(tmp_path, fixture["sizes"]["num_classes"])
    recipe = parity.build_ours(compose_config(parity.OUR_OVERRIDES + [f"modality.data_root={root}"]))
    parity.load_mapped(recipe, parity.official_weights(fixture))
    inputs = parity.seeded_inputs(fixture["input_seed"])
    outputs = parity.our_outputs(recipe, inputs, fixture["draws"], fixture["lr_steps"], 1, {
        "name": "official", "unit": "steps", "warmup": 1, "hold_until": 1, "decay_end": 1, "final_ratio": 1.0})
    (_, relative), = parity.differences(outputs, {"tokenize": fixture["outputs"]["tokenize"]}).values()
    assert relative > 1e-3


def test_unite_b_parameter_count(fixture, compose_config, tmp_path):
    """UNITE-B with the official options: the official 217,643,616 trainable parameters minus the two
    tensors its code builds but never reads (the time embedder's special_time_emb, a second extra row
    of the label table), 768 values each."""
    official = fixture["official_unite_b"]
    assert official["trainable"] == 217_643_616 and sum(official["unused"].values()) == 1536
    root = parity.class_folders(tmp_path, 1000)
    cfg = compose_config(["experiment=imagenet256_unite_b", f"modality.data_root={root}",
                          "modality.evaluation.fid=false"])
    with torch.device("meta"):
        recipe = build_recipe(cfg, build_modality(cfg))
    ours = sum(p.numel() for p in recipe.parameters() if p.requires_grad)
    assert ours == 217_643_616 - 1536 == 217_642_080
