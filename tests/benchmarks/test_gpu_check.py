"""benchmarks/gpu_check.sh, the one script a borrowed GPU machine runs, runs here on the CPU first: the same
preset cases shrunk, bf16 forced (emulated where the CPU lacks it), then the short speed suite. A crash that
a CPU can show is caught here instead of costing GPU minutes (issue 19)."""
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def failure_report(out: Path, result: subprocess.CompletedProcess) -> str:
    """What failed, without the warnings that fill the script's output: its status line, one line per case
    of gpu_check, the failed cases' tracebacks and the speed suite's last lines."""
    def read(name: str) -> str:
        path = out / name
        return path.read_text() if path.is_file() else f"({name} missing)"
    cases = [line for line in read("gpu_check.log").splitlines() if line.endswith(" s)")]
    tracebacks = ""
    report = out / "gpu_check" / "gpu_check.json"
    if report.is_file():
        records = json.loads(report.read_text())
        records = records["records"] if isinstance(records, dict) else records
        tracebacks = "\n".join(r.get("traceback", "") for r in records if not r["passed"])
    return "\n".join([f"exit {result.returncode}", read("status.txt"), *cases, tracebacks[-4000:],
                      "speed suite:", read("speed.log")[-2000:], "stderr:", result.stderr[-1500:]])


def test_the_gpu_script_runs_every_preset_on_the_cpu(tmp_path):
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", "--precisions", "bf16"], cwd=ROOT,
                            env={**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, failure_report(tmp_path, result)
    report = json.loads((tmp_path / "gpu_check" / "gpu_check.json").read_text())
    from benchmarks.gpu_check import CASES, NOT_TINY
    assert sorted(r["case"] for r in report["records"]) == sorted(set(CASES) - set(NOT_TINY))
    assert all(r["passed"] for r in report["records"]), [r for r in report["records"] if not r["passed"]]
    assert (tmp_path / "gpu_check" / "gpu_check.md").is_file() and (tmp_path / "speed" / "speed_gpu.md").is_file()
    assert "gpu_check exit 0, speed suite exit 0" in (tmp_path / "status.txt").read_text()
