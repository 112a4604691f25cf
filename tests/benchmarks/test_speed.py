"""The speed suite runs on a CPU-only machine in its short mode and writes well-formed results.
Timings are never checked: only that every file, column and number is there and makes sense."""
import csv
import math

from benchmarks.speed import compose_config, run_suite

COLUMNS = {
    "train": ["case", "batch_size", "compute_dtype", "step_s", "samples_per_s", "tokens_per_s", "loader_s_per_batch",
              "loader_share_of_step", "flops_per_step", "achieved_tflops", "mfu", "peak_memory_mb"],
    "sampling": ["case", "solver", "steps", "batch_size", "seconds", "samples_per_s", "nfe", "s_per_nfe"],
    "evaluation": ["what", "items", "seconds", "items_per_s"],
    "flops": ["case", "kind", "flops_per_sample", "flops_per_device_step", "h100_h200_s_per_step_at_40pct_mfu",
              "samples_per_s_at_40pct_mfu"],
}
MACHINE = ["cpu", "cpu_flags", "cpu_native_bf16", "threads", "load_1min", "torch", "commit"]


def test_short_suite_writes_well_formed_results(tmp_path):
    cfg = compose_config("speed", ["speed_suite=short", f"out_dir={tmp_path}", "name=short", "threads=1"])
    results = run_suite(cfg)
    for part, columns in COLUMNS.items():
        with open(tmp_path / f"short_{part}.csv") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == len(results[part]) > 0, part
        for row in rows:
            assert set(columns + MACHINE) <= set(row), (part, set(columns + MACHINE) - set(row))
            for key in columns[1:]:
                if key in ("compute_dtype", "solver", "kind") or row[key] == "":  # mfu is empty off GPUs
                    continue
                value = float(row[key])
                assert math.isfinite(value) and value >= 0, (part, key, row[key])
            assert row["threads"] == "1" and row["torch"]
    sampling = results["sampling"]
    heun = [r for r in sampling if r["solver"] == "heun"]
    assert all(r["nfe"] == 2 * r["steps"] - 1 for r in heun)  # Heun: two evaluations per step, the last (into t = 1) Euler's
    packed = {r["case"]: r for r in results["train"]}
    assert packed["molecule_smoke_packed"]["tokens_per_step"] < packed["molecule_smoke"]["tokens_per_step"]
    assert (tmp_path / "short_train.png").stat().st_size > 0 and (tmp_path / "short_sampling.png").stat().st_size > 0


def test_targets_take_the_best_matching_row_and_say_whether_it_is_met():
    from omegaconf import OmegaConf

    from benchmarks.speed import target_rows
    results = {"sampling": [{"case": "qm9", "batch_size": 500, "samples_per_s": 900.0},
                            {"case": "qm9", "batch_size": 2000, "samples_per_s": 2100.0},
                            {"case": "other", "batch_size": 2000, "samples_per_s": 9999.0}],
               "train": [{"case": "ge_b", "mfu": ""}]}
    targets = OmegaConf.create([
        {"what": "any batch", "part": "sampling", "case": "qm9", "where": None, "metric": "samples_per_s", "at_least": 2000},
        {"what": "batch 500", "part": "sampling", "case": "qm9", "where": {"batch_size": 500}, "metric": "samples_per_s",
         "at_least": 2000},
        {"what": "mfu off GPUs", "part": "train", "case": "ge_b", "where": None, "metric": "mfu", "at_least": 0.4}])
    rows = target_rows(targets, results)
    assert [(r["measured"], r["met"]) for r in rows] == [(2100.0, "yes"), (900.0, "no"), ("not measured", "-")]
    assert rows[1]["case"] == "qm9, batch_size=500"


def test_gpu_suite_composes_and_its_targets_name_its_cases(tmp_path):
    from benchmarks.speed import train_config
    cfg = compose_config("speed", ["speed_suite=gpu"])
    suite = cfg.speed_suite
    names = {part: {case.name for case in suite[part]} for part in ("train", "sampling")}
    assert suite.targets and all(target.case in names[target.part] for target in suite.targets)
    for case in suite.train:
        case_cfg = train_config(case.overrides, tmp_path / case.name, [f"trainer.batch_size={case.batch_size}"])
        assert case_cfg.trainer.batch_size == case.batch_size
    for case in suite.sampling:
        assert train_config(case.overrides, tmp_path / f"sampling_{case.name}").sampler is not None
