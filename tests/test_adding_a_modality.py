"""docs/adding-a-modality.md, proven: a modality defined only in tests/ trains through core.train.train.

The config goes in through Hydra's ConfigStore (the same as a file configs/modality/point_sets.yaml),
composed with Hydra's compose API like `python -m core.train modality=point_sets` would be.
"""
import json

from toy_modality.point_sets import TARGET, register_point_sets


def test_a_new_modality_trains_without_touching_core(tmp_path, compose_config):
    from core.train import train
    register_point_sets()
    cfg = compose_config(["modality=point_sets", f"trainer.out_dir={tmp_path}", "trainer.device=cpu",
                          "trainer.max_steps=60", "trainer.batch_size=32", "trainer.log_every=10",
                          "trainer.lr_schedule.warmup=5", "trainer.lr=1e-3", "trainer.checkpoint_every=1000",
                          "trainer.eval_batches=1", "trainer.eval_batch_size=32", "model.depth=2", "model.width=64",
                          "sampler.num_samples=12", "sampler.batch_size=12", "sampler.num_steps=10"])
    assert cfg.modality._target_ == TARGET
    summary = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [row["rec_loss"] for row in rows if "rec_loss" in row]
    assert len(losses) == 6
    print("rec_loss every 10 steps:", [round(v, 4) for v in losses])
    assert losses[-1] < 0.5 * losses[0], losses  # the reconstruction loss fell
    assert summary["steps"] == 60 and summary["reconstruction/point_rmse"] > 0
    assert "generation/mean_radius_error" in summary and (tmp_path / "samples" / "points.json").is_file()
