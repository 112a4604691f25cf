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
    assert all(r["nfe"] == 2 * r["steps"] for r in heun)  # Heun: two network evaluations per step
    packed = {r["case"]: r for r in results["train"]}
    assert packed["molecule_smoke_packed"]["tokens_per_step"] < packed["molecule_smoke"]["tokens_per_step"]
    assert (tmp_path / "short_train.png").stat().st_size > 0 and (tmp_path / "short_sampling.png").stat().st_size > 0
