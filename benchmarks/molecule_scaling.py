"""Generation quality against molecule visits (optimizer steps x batch) for the default design and the field's
convergence aids, with a public EDM reproduction on the same axis (issue 20):

    python -m benchmarks.run molecule_scaling [--designs default self_conditioning ...]
        [--budgets 4000 16000 64000 256000] [--batch 64] [--parallel 2] [--generate 1000] [--reconstruct 250]
        [--name molecule_scaling] [--work-dir DIR] [-- override ...]

Each design is one `core.train modality=molecule` run (one torch thread) of max(budgets) / batch steps that
checkpoints at every budget (`trainer.checkpoint_steps`); each checkpoint's EMA weights generate `--generate`
molecules for the full harness (stability, validity under every bond route, bond-length W1, FCD). One run per
design, not one per budget: the LR schedule spans the longest budget, so an early budget is read off a run
whose learning rate has not decayed yet (final_ratio 0.5 keeps that gap small). The training CPU minutes of
every point are recorded beside its visits, so designs of different cost (width) compare at equal compute too.

Visits to atom stability 90 %: a straight line through the last three points in (log10 visits, logit atom
stability), solved for 90 %; beyond the largest budget it is an extrapolation and marked as one.
Writes benchmarks/results/<name>/: scaling.csv, table.md, one PNG per metric against visits, run.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks.molecule_curve import (RESULTS, ROOT, evaluate_checkpoint, machine_record, parse_design_from,
                                       plot_curves, run_in_batches, training_minutes)

# name -> (what it is, overrides of `python -m core.train modality=molecule`)
DESIGNS: dict[str, tuple[str, list[str]]] = {
    "default": ("the default molecule design", []),
    "self_conditioning": ("self-conditioning with p = 0.5 (ADiT)", ["recipe.self_conditioning=0.5"]),
    "truncated_snr": ("x-prediction loss weighted by SNR(t) clamped to [0.05, 1.5] (EQGAT-diff)",
                      ["recipe.gen_loss_form=x", "recipe.gen_loss_weighting=truncated_snr"]),
    "beta_time": ("timesteps ~ Beta(2, 1), towards the data end, no shift (SemlaFlow)",
                  ["recipe.timestep_distribution=beta", "recipe.timestep_shift=1.0"]),
    "whitening": ("the generator on running-whitened latents, statistics stored (UAE-3D)",
                  ["recipe.latent_whitening=running"]),
    "wide": ("GE width 192 instead of 128 (more compute per visit: compare at equal minutes too)",
             ["model.width=192", "model.heads=6"]),
}
# A public EDM reproduction on QM9 at batch 256 (issue 20): epochs of the 100,000-molecule EDM train split.
EDM_REPRODUCTION = {"epochs": (100, 200, 400, 500), "atom_stability": (0.738, 0.849, 0.893, 0.902),
                    "molecule_stability": (0.002, 0.058, 0.150, 0.194)}
QM9_TRAIN_MOLECULES = 100_000
RUN_OVERRIDES = ["modality=molecule", "trainer.evaluate_at_end=false", "trainer.threads=1",
                 "trainer.keep_checkpoints=1000", "trainer.checkpoint_every=1000000000"]
PLOTTED = ["generation/stability/atom_stability", "generation/stability/molecule_stability",
           "generation/xyz2mol/validity", "generation/bond_w1/C-C", "generation/bond_w1/C-H", "generation/xyz2mol/fcd"]
TARGET_ATOM_STABILITY = 0.9


def budget_steps(budgets: list[int], batch: int) -> list[int]:
    """Optimizer steps of each visit budget; every budget must be a positive multiple of the batch."""
    steps = []
    for visits in budgets:
        if visits < batch or visits % batch:
            raise SystemExit(f"--budgets: {visits} visits is not a positive multiple of --batch {batch}")
        steps.append(visits // batch)
    if steps != sorted(set(steps)):
        raise SystemExit(f"--budgets must increase strictly, got {budgets}")
    return steps


def visits_to_reach(visits: list[float], values: list[float], target: float) -> tuple[float | None, bool]:
    """(visits at which the line through the last three (log10 visits, logit value) points reaches `target`,
    whether that lies beyond the largest measured budget). (None, True) when the line does not rise."""
    points = [(math.log10(v), math.log(y / (1 - y))) for v, y in zip(visits, values) if 0 < y < 1][-3:]
    if any(y >= target for y in values):
        first = min(v for v, y in zip(visits, values) if y >= target)
        return float(first), False
    if len(points) < 2:
        return None, True
    x, y = np.array(points).T
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        return None, True
    logit_target = math.log(target / (1 - target))
    return float(10 ** ((logit_target - intercept) / slope)), True


def train_design(name: str, overrides: list[str], out_dir: Path, steps: list[int], batch: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "core.train", *RUN_OVERRIDES, *overrides, f"trainer.batch_size={batch}",
               f"trainer.max_steps={steps[-1]}", f"trainer.checkpoint_steps=[{','.join(map(str, steps))}]",
               f"trainer.out_dir={out_dir}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "command.txt").write_text(" ".join(command) + "\n")
    log = open(out_dir / "train.log", "w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def evaluate_design(name: str, run_dir: Path, steps: list[int], batch: int, reconstruct: int, generate: int,
                    seed: int, reference: str | None) -> list[dict]:
    rows = []
    for step in steps:
        checkpoint = run_dir / "checkpoints" / f"step_{step:09d}.pt"
        row = evaluate_checkpoint(checkpoint, reconstruct, generate, seed, reference)
        row.update(design=name, visits=step * batch, minutes=round(training_minutes(run_dir, step), 2))
        rows.append(row)
        print(f"[{name}] {row['visits']} visits ({row['minutes']} CPU min): atom stability "
              f"{row['generation/stability/atom_stability']:.3f}", flush=True)
    return rows


def _evaluate_design_job(args) -> list[dict]:
    return evaluate_design(*args)


def fits(rows: list[dict]) -> dict[str, dict]:
    """Per design: visits (and CPU minutes, scaled linearly from its last point) to atom stability 90 %."""
    out = {}
    for design in dict.fromkeys(r["design"] for r in rows):
        own = sorted((r for r in rows if r["design"] == design), key=lambda r: r["visits"])
        visits, extrapolated = visits_to_reach([r["visits"] for r in own],
                                               [r["generation/stability/atom_stability"] for r in own],
                                               TARGET_ATOM_STABILITY)
        minutes = None if visits is None else visits * own[-1]["minutes"] / own[-1]["visits"]
        out[design] = {"visits_to_90": visits, "cpu_minutes_to_90": minutes, "extrapolated": extrapolated}
    return out


def _cell(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict], fitted: dict[str, dict], descriptions: dict[str, str]) -> str:
    columns = [("visits", "visits"), ("minutes", "CPU min"), ("generation/stability/atom_stability", "atom stable"),
               ("generation/stability/molecule_stability", "mol. stable"), ("generation/xyz2mol/validity",
                                                                            "valid (xyz2mol)"),
               ("generation/bond_w1/C-C", "C–C W1 Å"), ("generation/bond_w1/C-H", "C–H W1 Å"),
               ("generation/xyz2mol/fcd", "FCD (xyz2mol)")]
    lines = ["| design | " + " | ".join(h for _, h in columns) + " |", "|---|" + "---|" * len(columns)]
    for r in rows:
        lines.append(f"| {r['design']} | " + " | ".join(_cell(r.get(k)) for k, _ in columns) + " |")
    lines += ["", "| design | visits to atom stability 90 % | CPU minutes (1 thread) | |", "|---|---|---|---|"]
    for design, fit in fitted.items():
        note = "extrapolated (last three points, logit vs log visits)" if fit["extrapolated"] else "measured"
        visits = "never (no rise)" if fit["visits_to_90"] is None else f"{fit['visits_to_90']:.3g}"
        minutes = "–" if fit["cpu_minutes_to_90"] is None else f"{fit['cpu_minutes_to_90']:.3g}"
        lines.append(f"| {design} | {visits} | {minutes} | {note} |")
    edm = ", ".join(f"{e} epochs = {e * QM9_TRAIN_MOLECULES:.0e} visits: {100 * a:.1f} / {100 * m:.1f} %"
                    for e, a, m in zip(*EDM_REPRODUCTION.values()))
    lines += ["", f"EDM reproduction (batch 256, atom / molecule stability): {edm}.", ""]
    lines += [f"- **{name}**: {text}" for name, text in descriptions.items()]
    return "\n".join(lines)


def plot(rows: list[dict], out_dir: Path) -> list[str]:
    def edm_reproduction(axis, key: str) -> None:
        metric = key.rsplit("/", 1)[1]
        if metric in EDM_REPRODUCTION:
            visits = [e * QM9_TRAIN_MOLECULES for e in EDM_REPRODUCTION["epochs"]]
            axis.plot(visits, EDM_REPRODUCTION[metric], "k--", marker="s", label="EDM reproduction (batch 256)")
    return plot_curves(rows, out_dir, PLOTTED, "visits", "molecule visits (steps x batch)", True, edm_reproduction)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS))
    parser.add_argument("--budgets", nargs="+", type=int, default=[4000, 16000, 64000, 256000],
                        help="molecule visits (steps x batch), log-spaced")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=2, help="designs trained at once (one thread each)")
    parser.add_argument("--reconstruct", type=int, default=250)
    parser.add_argument("--generate", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default="qm9", help="novelty/FCD reference; 'none' for neither")
    parser.add_argument("--name", default="molecule_scaling")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--work-dir", default=None, help="where runs go (default: a temporary folder); a design "
                        "whose run there wrote summary.json is evaluated again without training")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides shared by every design")
    args = parser.parse_args()
    designs = [parse_design_from(DESIGNS, text) for text in args.designs]
    steps = budget_steps(args.budgets, args.batch)
    reference = None if args.reference == "none" else args.reference
    record = {"designs": {n: {"description": d, "overrides": o} for n, d, o in designs}, "budgets": args.budgets,
              "batch": args.batch, "parallel": args.parallel, "shared_overrides": args.overrides,
              "generate": args.generate, **machine_record()}
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="molecule_scaling_"))
    print(f"molecule_scaling: runs in {work}", flush=True)
    jobs = [(name, [*args.overrides, *overrides], work / name) for name, _, overrides in designs]
    trained = [job for job in jobs if (job[2] / "summary.json").is_file()]
    started = time.monotonic()
    run_in_batches([job for job in jobs if job not in trained], args.parallel,
                   lambda job: train_design(*job, steps, args.batch))
    record["training_wall_minutes"] = (time.monotonic() - started) / 60
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=get_context("spawn")) as pool:
        per_design = pool.map(_evaluate_design_job, [(name, run_dir, steps, args.batch, args.reconstruct,
                                                      args.generate, args.seed, reference) for name, _, run_dir in jobs])
        rows = [row for design_rows in per_design for row in design_rows]
    record["load_average_at_end"] = os.getloadavg()
    out_dir = Path(args.results_dir) / args.name
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["design", "visits", "minutes", "step"] + sorted({k for r in rows for k in r} - {"design", "visits",
                                                                                            "minutes", "step"})
    with open(out_dir / "scaling.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    fitted = fits(rows)
    table = markdown(rows, fitted, {name: f"{text} (`{' '.join(o) or 'defaults'}`)" for name, text, o in designs})
    (out_dir / "table.md").write_text(f"# {args.name}\n\nOne run per design at batch {args.batch}, one thread, "
                                      f"checkpoints at {args.budgets} visits (EMA weights); {args.generate} "
                                      f"generated molecules per point, default sampler. Machine: run.json.\n\n"
                                      f"{table}\n")
    record.update(plots=plot(rows, out_dir), fits=fitted)
    (out_dir / "run.json").write_text(json.dumps(record, indent=2))
    print(table)


if __name__ == "__main__":
    main()
