"""Kill training with SIGKILL at random moments, resume each time, and compare with an uninterrupted run.

    python -m benchmarks.fault_injection --kills 20 [--max-steps 60] [--seed 0]

Every kill lands at a random time after the run has made progress (possibly mid-checkpoint write). After
each kill: every complete checkpoint must load (zero corrupt files), and the run resumes with
`trainer.resume=auto`. At the end the final parameters must equal, bit for bit on CPU, those of an
uninterrupted run with the same seed. Writes benchmarks/results/fault_injection.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def train_command(out_dir: Path, max_steps: int, resume: bool) -> list[str]:
    return [sys.executable, "-m", "core.train", "experiment=molecule_smoke", f"trainer.out_dir={out_dir}",
            f"trainer.max_steps={max_steps}", "trainer.checkpoint_every=1", "trainer.keep_checkpoints=2",
            "trainer.evaluate_at_end=false", "trainer.device=cpu", f"trainer.resume={'auto' if resume else 'none'}",
            f"hydra.run.dir={out_dir}/hydra"]


def environment() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def checkpoint_steps(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("step_*.pt"))


def corrupt_checkpoints(folder: Path) -> list[str]:
    from core.checkpoint import CheckpointError, load_checkpoint
    bad = []
    for path in sorted(folder.glob("step_*.pt")):
        try:
            load_checkpoint(path)
        except CheckpointError as error:
            bad.append(str(error))
    return bad


def final_parameters(out_dir: Path, step: int) -> dict[str, torch.Tensor]:
    from core.checkpoint import checkpoint_path, load_checkpoint
    return load_checkpoint(checkpoint_path(out_dir / "checkpoints", step))["model"]


def run_with_kills(out_dir: Path, max_steps: int, kills: int, rng: random.Random, log=print) -> dict:
    """Run to max_steps, SIGKILLing `kills` times; returns counts of kills, resumes and corrupt files."""
    survived, corrupt, resumes = 0, [], 0
    while True:
        resume = (out_dir / "checkpoints").exists()
        resumes += int(resume)
        process = subprocess.Popen(train_command(out_dir, max_steps, resume), cwd=ROOT, env=environment(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        if survived < kills:
            before = checkpoint_steps(out_dir / "checkpoints")
            # wait for at least one new step (progress), then kill after a random extra delay
            deadline = time.monotonic() + 300
            while process.poll() is None and time.monotonic() < deadline:
                steps = checkpoint_steps(out_dir / "checkpoints")
                if steps and (not before or steps[-1] > before[-1]):
                    break
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.6))
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                survived += 1
                bad = corrupt_checkpoints(out_dir / "checkpoints")
                corrupt += bad
                log(f"kill {survived}: checkpoints {checkpoint_steps(out_dir / 'checkpoints')}, corrupt {len(bad)}")
                continue
        _, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"training exited with {process.returncode}:\n{stderr.decode()[-3000:]}")
        steps = checkpoint_steps(out_dir / "checkpoints")
        if steps and steps[-1] >= max_steps:
            return {"kills": survived, "resumes": resumes, "corrupt_checkpoints": len(corrupt),
                    "corrupt_messages": corrupt}


def compare(reference: dict, candidate: dict) -> float:
    if reference.keys() != candidate.keys():
        raise AssertionError("parameter names differ")
    return max(float((reference[k].double() - candidate[k].double()).abs().max()) if reference[k].numel() else 0.0
               for k in reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        reference_dir, faulty_dir = Path(tmp) / "reference", Path(tmp) / "faulty"
        run_with_kills(reference_dir, args.max_steps, 0, rng)
        outcome = run_with_kills(faulty_dir, args.max_steps, args.kills, rng)
        difference = compare(final_parameters(reference_dir, args.max_steps),
                             final_parameters(faulty_dir, args.max_steps))
    result = {**outcome, "max_abs_parameter_difference": difference, "bit_exact": difference == 0.0,
              "max_steps": args.max_steps, "seed": args.seed, "wall_seconds": round(time.monotonic() - start, 1),
              "torch": torch.__version__, "device": "cpu", "config": "experiment=molecule_smoke, checkpoint every step"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fault_injection.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
