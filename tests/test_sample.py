"""core.sample rebuilds the model from a checkpoint's stored config and writes samples with EMA weights."""
import json

import pytest

from core.build import ConfigError
from core.checkpoint import list_checkpoints
from core.sample import sample
from core.train import train


@pytest.fixture(scope="module")
def checkpoint(compose_config, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(compose_config(["experiment=molecule_smoke", "trainer.max_steps=3", "trainer.evaluate_at_end=false",
                          f"trainer.out_dir={run}"]))
    return list_checkpoints(run / "checkpoints")[-1]


def test_sample_from_checkpoint_writes_files(compose_config, checkpoint, tmp_path):
    cfg = compose_config([f"checkpoint={checkpoint}", "num_samples=5", f"out_dir={tmp_path / 'samples'}",
                          "sampler.solver=heun", "sampler.num_steps=3"], config_name="sample")
    summary = sample(cfg)
    assert summary["samples"] == 5 and summary["solver"] == "heun" and summary["step"] == 3
    for name in ("samples.xyz", "samples.sdf", "summary.json"):
        assert (tmp_path / "samples" / name).is_file()
    assert (tmp_path / "samples" / "samples.xyz").read_text().count("generated") == 5
    assert json.loads((tmp_path / "samples" / "summary.json").read_text())["checkpoint"] == str(checkpoint)


def test_sample_needs_a_checkpoint(compose_config):
    with pytest.raises(ValueError, match="checkpoint="):
        sample(compose_config([], config_name="sample"))


def test_evaluation_overrides_replace_the_runs_evaluation_keys(compose_config, checkpoint, tmp_path):
    cfg = compose_config([f"checkpoint={checkpoint}", "num_samples=2", f"out_dir={tmp_path}", "sampler.num_steps=2",
                          "+evaluation.workers=1"], config_name="sample")
    assert sample(cfg)["evaluation"] == {"reference": None, "fcd": False, "workers": 1}


def test_unknown_evaluation_override_names_the_group(compose_config, checkpoint, tmp_path):
    cfg = compose_config([f"checkpoint={checkpoint}", f"out_dir={tmp_path}", "+evaluation.fdc=true"],
                         config_name="sample")
    with pytest.raises(ConfigError, match=r"modality.*evaluation.*fdc"):
        sample(cfg)


def test_guidance_sweep_evaluates_every_scale_from_one_checkpoint(checkpoint, tmp_path, monkeypatch):
    from benchmarks import guidance_sweep
    monkeypatch.setattr("sys.argv", ["guidance_sweep", str(checkpoint), "sampler.num_steps=2", "--name", "sweep",
                                     "--num-samples", "3", "--results-dir", str(tmp_path), "--scales", "1.0", "2.5"])
    report = guidance_sweep.main()
    assert [row["guidance_scale"] for row in report["rows"]] == [1.0, 2.5]
    assert all(row["samples"] == 3 for row in report["rows"]) and "guidance_scale" not in report["sampler"]
    assert json.loads((tmp_path / "sweep.json").read_text())["step"] == 3


def test_a_checkpoint_older_than_later_model_keys_still_samples(compose_config, checkpoint, tmp_path):
    """Written before final_layer_init_std and the official-UNITE switches existed, with the DecoderTrunk's
    unused mask token: it rebuilds as it was trained."""
    import torch
    state = torch.load(checkpoint, weights_only=True)
    for key in ("final_layer_init_std", "block_norm", "norm_scale", "time_embedding", "rope_positions"):
        del state["config"]["model"][key]
    state["ema"]["decoder.trunk.mask_token"] = torch.zeros(1, 1, 64)
    old = tmp_path / "checkpoints" / "step_000000003.pt"
    old.parent.mkdir()
    torch.save(state, old)
    cfg = compose_config([f"checkpoint={old}", "num_samples=2", f"out_dir={tmp_path / 'out'}", "sampler.num_steps=2"],
                         config_name="sample")
    assert sample(cfg)["samples"] == 2


def test_upgrade_fills_image_decoder_keys_of_image_runs_only():
    from omegaconf import OmegaConf

    from core.sample import upgrade_checkpoint
    old = OmegaConf.create({"model": {"width": 8}, "modality": {"name": "image", "decoder": {"depth": 2}}})
    cfg, weights = upgrade_checkpoint(old, {"decoder.trunk.mask_token": 0, "encoder.latent_in.weight": 1})
    assert cfg.modality.decoder.architecture == "rope" and cfg.modality.decoder.head == "linear"
    assert cfg.model.time_embedding == "sinusoidal" and weights == {"encoder.latent_in.weight": 1}
    assert cfg.modality.preload is False
    molecule = OmegaConf.create({"model": {}, "modality": {"name": "molecule", "decoder": {"depth": 2}}})
    assert "architecture" not in upgrade_checkpoint(molecule, {})[0].modality.decoder
    assert "preload" not in upgrade_checkpoint(molecule, {})[0].modality
