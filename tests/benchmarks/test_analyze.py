"""benchmarks/analyze.py on smoke checkpoints: every analysis writes its CSV and PNG with well-formed rows
(never a figure of merit), the initial weights are rebuilt exactly as core/train.py built them, truncation to
every principal component is the plain reconstruction, and bad input is named."""
import csv
import json
import math

import pytest
import torch

from benchmarks import analyze as analysis
from core.checkpoint import load_checkpoint
from core.train import train

SMOKE = ["experiment=molecule_smoke", "trainer.evaluate_at_end=false", "trainer.threads=1"]
OPTIONS = dict(samples=8, times=(0.0, 0.5, 1.0), max_items=64, topk=5, probe_items=(16, 8), weights_name="ema",
               batch_size=4, seed=0)


@pytest.fixture(scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def smoke_checkpoint(compose_config, tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("smoke_run")
    train(compose_config(SMOKE + ["trainer.max_steps=4", "trainer.checkpoint_every=4", f"trainer.out_dir={out}"]))
    return out / "checkpoints" / "step_000000004.pt"


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_every_analysis_writes_its_files(smoke_checkpoint, tmp_path):
    out = tmp_path / "analysis"
    summary = analysis.analyze(smoke_checkpoint, list(analysis.ANALYSES), out, **OPTIONS)
    for name in analysis.ANALYSES:
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.png").stat().st_size > 5000, name
    depth, channels = 2, 8  # molecule_smoke: model.depth=2, GE-tiny's latent_channels=8
    alignment = _rows(out / "alignment.csv")
    assert sorted((float(r["t"]), int(r["layer"])) for r in alignment) == \
        sorted((t, layer) for t in OPTIONS["times"] for layer in range(depth))
    for row in alignment:
        assert 0.0 <= float(row["cka"]) <= 1.0 + 1e-9 and -1.0 <= float(row["cosine"]) <= 1.0
        assert int(row["items"]) == 64  # 8 molecules hold more than 64 atoms: a subset of 64 tokens
    roles = {r["role"] for r in _rows(out / "weights_roles.csv")}
    assert {"normalisation", "modulation", "attention", "mlp"} <= roles
    spectrum = _rows(out / "spectrum.csv")
    assert len(spectrum) == channels and math.isclose(float(spectrum[-1]["cumulative_share"]), 1.0, rel_tol=1e-9)
    assert 1.0 <= summary["spectrum"]["effective_rank"] <= channels
    truncation = _rows(out / "truncation.csv")
    assert [int(r["components"]) for r in truncation] == list(range(channels + 1))
    probe = _rows(out / "probe.csv")
    assert {r["target"] for r in probe} >= {"HOMO_LUMO_gap_au", "Dipole_debye"} and len(probe) == 6 * 3
    assert all(int(r["fit_items"]) == 16 and int(r["test_items"]) == 8 for r in probe)
    assert json.loads((out / "summary.json").read_text())["step"] == 4


def test_keeping_every_principal_component_is_the_plain_reconstruction(smoke_checkpoint):
    model, modality, _, _ = analysis.load_run(smoke_checkpoint, "ema")
    batches = analysis.first_batches(modality, "test", 8, 4)
    latents = analysis.clean_latents(model, batches, seed=0)
    rows = analysis.truncation(model, modality, batches, latents)
    plain = [modality.reconstruction_metrics(model.decode(z, layout), batch)
             for batch, (z, layout) in zip(batches, latents)]
    rmsd = torch.cat([p["coordinate_rmsd"] for p in plain]).detach().double().mean()
    assert math.isclose(rows[-1]["coordinate_rmsd"], float(rmsd), rel_tol=1e-5)
    assert rows[-1]["variance_kept"] == pytest.approx(1.0) and rows[0]["variance_kept"] == 0.0


def test_initial_weights_are_those_training_started_from(compose_config, tmp_path, one_thread, monkeypatch):
    """analyze must rebuild, bit for bit, the weights core/train.py built before its first step."""
    import core.train
    built, original = [], core.train.build_recipe

    def recording_build(cfg, modality):
        recipe = original(cfg, modality)
        built.append({name: value.clone() for name, value in recipe.state_dict().items()})
        return recipe
    monkeypatch.setattr(core.train, "build_recipe", recording_build)
    train(compose_config(SMOKE + ["trainer.max_steps=1", "trainer.checkpoint_every=1", f"trainer.out_dir={tmp_path}"]))
    monkeypatch.undo()
    checkpoint = tmp_path / "checkpoints" / "step_000000001.pt"
    model, modality, run_cfg, _ = analysis.load_run(checkpoint, "raw")
    initial = analysis.initial_model(run_cfg, modality)
    assert len(built) == 1 and set(initial.state_dict()) == set(built[0])
    assert all(torch.equal(value, built[0][name]) for name, value in initial.state_dict().items())
    trained = load_checkpoint(checkpoint)["model"]
    assert not all(torch.equal(value, trained[name]) for name, value in initial.state_dict().items())
    rows, _ = analysis.weights(initial, analysis.initial_model(run_cfg, modality))  # initial against itself
    assert all(r["relative_change"] in (0.0, float("inf")) for r in rows)  # inf: a zero-initialised tensor
    assert all(r["entropy_trained_bits"] == r["entropy_initial_bits"] for r in rows)


def test_bad_input_is_named(smoke_checkpoint, tmp_path, monkeypatch):
    with pytest.raises(analysis.AnalysisError, match="does not exist"):
        analysis.analyze(tmp_path / "missing.pt", ["spectrum"], tmp_path / "out", **OPTIONS)
    with pytest.raises(analysis.AnalysisError, match="unknown analyses \\['cka'\\]"):
        analysis.analyze(smoke_checkpoint, ["cka"], tmp_path / "out", **OPTIONS)
    with pytest.raises(analysis.AnalysisError, match="--weights 'best'"):
        analysis.load_run(smoke_checkpoint, "best")
    monkeypatch.setattr("sys.argv", ["analyze", str(smoke_checkpoint), "--times", "1.5"])
    with pytest.raises(SystemExit, match="must lie in \\[0, 1\\]"):
        analysis.main()
    monkeypatch.setattr("sys.argv", ["analyze", str(smoke_checkpoint), "--analyses", "cka"])
    with pytest.raises(SystemExit):  # argparse: invalid choice
        analysis.main()


def test_command_line_through_benchmarks_run(smoke_checkpoint, tmp_path, monkeypatch):
    from benchmarks import run
    monkeypatch.setattr("sys.argv", ["benchmarks.run", "analyze", str(smoke_checkpoint), "--analyses", "spectrum",
                                     "weights", "--samples", "4", "--results-dir", str(tmp_path), "--name", "cli"])
    run.main()
    assert (tmp_path / "cli" / "spectrum.png").is_file() and (tmp_path / "cli" / "weights_roles.csv").is_file()
    assert json.loads((tmp_path / "cli" / "run.json").read_text())["threads"] == 1


def test_an_image_checkpoint_with_class_conditions(compose_config, tmp_path, one_thread):
    """Images: a fixed grid of latents, the denoise pass conditioned on each sample's class, the class probe."""
    from small_models import image_folder
    root = image_folder(tmp_path / "images")
    train(compose_config(["modality=image", "modality.dataset=image_folder", f"modality.data_root={root}",
                          f"modality.cache_dir={tmp_path / 'cache'}", "modality.image_size=8", "modality.patch_size=4",
                          "modality.evaluation.fid=false", "modality.decoder.depth=1", "modality.decoder.width=32",
                          "model.depth=2", "model.width=32", "trainer.batch_size=8", "trainer.max_steps=2",
                          "trainer.checkpoint_every=2", "trainer.evaluate_at_end=false", "trainer.threads=1",
                          f"trainer.out_dir={tmp_path / 'run'}"]))
    out = tmp_path / "analysis"
    analysis.analyze(tmp_path / "run" / "checkpoints" / "step_000000002.pt", list(analysis.ANALYSES), out,
                     **{**OPTIONS, "max_items": 32, "probe_items": (24, 8)})
    alignment = _rows(out / "alignment.csv")
    assert len(alignment) == 3 * 2 and all(int(r["items"]) == 32 for r in alignment)  # 8 images x 4 patches
    probe = _rows(out / "probe.csv")
    assert len(probe) == 1 and probe[0]["target"] == "class" and 0.0 <= float(probe[0]["accuracy"]) <= 1.0
    assert float(probe[0]["chance"]) == 0.5  # two classes, 4 test images each
    assert "psnr" in _rows(out / "truncation.csv")[0]
