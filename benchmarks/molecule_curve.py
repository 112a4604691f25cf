"""Molecule designs side by side at the same CPU budget, evaluated along the way:

    python -m benchmarks.run molecule_curve [--designs frame coordinates ...] [--minutes 20] [--every 5]
        [--parallel 2] [--reconstruct 1000] [--generate 1000] [--name molecule_curve] [--work-dir DIR]
        [-- override ...]

Each design is a `core.train` run of the default molecule config plus its overrides (a name of DESIGNS, or
`name=key=value,key=value` for any other), for the same training minutes at one torch thread each, `--parallel`
runs at a time. A checkpoint is written every `--every` minutes; afterwards each checkpoint's EMA weights
reconstruct the first `--reconstruct` test molecules (EDM split) and generate `--generate` molecules, which the
full harness evaluates (stability, validity under every bond route, uniqueness, novelty, FCD, bond lengths).
Writes under benchmarks/results/<name>/: curve.csv (one row per checkpoint), table.md (the last checkpoint of
each design), one PNG per metric against training minutes, and run.json (machine, load, versions, commit).
Minutes are CPU minutes of the training process (`trainer.time_limit_clock=process`), so designs get equal
budgets even when the machine is shared; wall time is recorded beside them. With --work-dir, a design whose
run there finished (summary.json written) is evaluated again without training (an interrupted invocation's
finished runs are kept; an unfinished one trains from the start).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# name -> (what it is, overrides of the default `python -m core.train modality=molecule`)
DESIGNS: dict[str, tuple[str, list[str]]] = {
    "frame": ("e3nn frame tokens: coordinate token + zero-started map of every irrep of the last layer "
              "(default)", []),
    "coordinates": ("coordinates as token features (ADiT)", ["modality/embedder=coordinates"]),
    "invariant_aligned": ("e3nn invariant tokens, Kabsch-aligned loss (the platform before this change)",
                          ["modality.embedder.tokens=invariant", "modality.loss.coordinate_frame=aligned"]),
    "invariant_permutation": ("e3nn invariant tokens, permutation-aware aligned loss",
                              ["modality.embedder.tokens=invariant", "modality.loss.coordinate_frame=permutation"]),
}
# Fixed for every design: time-limited, evaluated here rather than at the end of the run.
RUN_OVERRIDES = ["trainer.evaluate_at_end=false", "trainer.threads=1", "trainer.keep_checkpoints=1000",
                 "trainer.checkpoint_every=1000000000", "trainer.time_limit_clock=process"]
# Metrics drawn against training minutes (those present in the rows).
PLOTTED = ["reconstruction/coordinate_rmsd_median", "reconstruction/match_rate_inchi_openbabel",
           "reconstruction/match_rate_edm_smiles", "generation/stability/atom_stability",
           "generation/stability/molecule_stability", "generation/xyz2mol/validity",
           "generation/xyz2mol/valid_and_unique", "generation/bond_w1/C-C", "generation/bond_w1/C-H",
           "generation/xyz2mol/fcd"]


def parse_design(text: str) -> tuple[str, str, list[str]]:
    """'frame' (a DESIGNS name) or 'name=key=value,key=value' -> (name, description, overrides)."""
    return parse_design_from(DESIGNS, text)


def parse_design_from(designs: dict[str, tuple[str, list[str]]], text: str) -> tuple[str, str, list[str]]:
    """A name of `designs` or 'name=key=value,key=value' -> (name, description, overrides)."""
    if text in designs:
        return text, *designs[text]
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise SystemExit(f"--designs: {text!r} is neither one of {sorted(designs)} nor 'name=key=value,...'")
    overrides = rest.split(",")
    return name, " ".join(overrides), overrides


def train_design(name: str, overrides: list[str], out_dir: Path, minutes: float, every: float) -> subprocess.Popen:
    command = [sys.executable, "-m", "core.train", *overrides, *RUN_OVERRIDES, f"trainer.out_dir={out_dir}",
               f"trainer.time_limit_minutes={minutes}", f"trainer.checkpoint_every_minutes={every}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "command.txt").write_text(" ".join(command) + "\n")
    log = open(out_dir / "train.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_in_batches(jobs: list, parallel: int, start) -> None:
    """start(job) -> Popen; keeps `parallel` running; fails naming the job whose process failed."""
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            running.append((job, start(job)))
        time.sleep(5)
        for job, process in list(running):
            if process.poll() is not None:
                running.remove((job, process))
                if process.returncode != 0:
                    raise SystemExit(f"design {job[0]!r} failed (exit {process.returncode}); "
                                     f"see {job[2] / 'train.log'}")


def training_minutes(run_dir: Path, step: int) -> float:
    """Training CPU time at `step`, interpolated between the logged rows of metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    points = sorted((r["step"], r["process_seconds"]) for r in rows if "process_seconds" in r)
    steps, seconds = zip(*([(0, 0.0)] + points))
    return float(np.interp(step, steps, seconds)) / 60.0


def evaluate_checkpoint(checkpoint: Path, reconstruct: int, generate: int, seed: int, reference: str | None,
                        weights: str = "ema") -> dict:
    """Reconstruction of the first `reconstruct` test molecules and `generate` evaluated samples, with the
    checkpoint's `weights` (ema | raw, as core.sample)."""
    import torch
    from omegaconf import OmegaConf

    from core.sample import load_for_sampling
    from modalities.molecule.evaluate import evaluate_molecules
    from modalities.molecule.evaluation.sample_writer import headline

    torch.set_num_threads(1)
    model, modality, run_cfg, step = load_for_sampling(checkpoint, OmegaConf.create({}), torch.device("cpu"), weights)
    row: dict = {"step": step, "weights": weights}
    test = modality.dataset("test")
    per_sample: dict[str, list[float]] = {}
    torch.manual_seed(seed)
    for first in range(0, min(reconstruct, len(test)), 250):
        batch = modality.collate([test[i] for i in range(first, min(first + 250, reconstruct, len(test)))])
        prediction, _ = model.reconstruct(batch)
        for key, values in modality.reconstruction_metrics(prediction, batch).items():
            per_sample.setdefault(key, []).extend(values.float().tolist())
    for key, values in per_sample.items():
        values = np.array(values)
        defined = values[~np.isnan(values)]
        row[f"reconstruction/{key}"] = float(defined.mean()) if len(defined) else math.nan
    rmsd = np.array(per_sample["coordinate_rmsd"])
    row["reconstruction/coordinate_rmsd_median"] = float(np.median(rmsd))
    row["reconstruction/samples"] = len(rmsd)

    sampler = run_cfg.sampler
    torch.manual_seed(seed)
    molecules = []
    for first in range(0, generate, 500):
        n = min(500, generate - first)
        prediction, _, _ = model.generate(n, None, solver=sampler.solver, num_steps=sampler.num_steps,
                                          shift=sampler.shift, guidance_scale=1.0, guidance_interval=(0.0, 1.0),
                                          rtol=sampler.rtol, atol=sampler.atol, device=torch.device("cpu"))
        molecules.extend(modality.to_molecules(prediction))
    result = evaluate_molecules(molecules, reference, modality.split_scheme, workers=0, fcd=reference is not None)
    row.update({f"generation/{k}": v for k, v in headline(result).items()})
    row["generation/samples"] = len(molecules)
    return row


def evaluate_design(name: str, run_dir: Path, reconstruct: int, generate: int, seed: int,
                    reference: str | None) -> list[dict]:
    rows = []
    for checkpoint in sorted((run_dir / "checkpoints").glob("step_*.pt")):
        row = evaluate_checkpoint(checkpoint, reconstruct, generate, seed, reference)
        row.update(design=name, minutes=round(training_minutes(run_dir, row["step"]), 2))
        rows.append(row)
        print(f"[{name}] step {row['step']} ({row['minutes']} min): "
              f"RMSD median {row['reconstruction/coordinate_rmsd_median']:.3f} Å", flush=True)
    return rows


def _evaluate_design_job(args) -> list[dict]:
    return evaluate_design(*args)


def read_rows(path: Path) -> list[dict]:
    """curve.csv back into rows: numbers as numbers, empty cells left out."""
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key, value in raw.items():
                if value == "":
                    continue
                try:
                    row[key] = int(value) if key == "step" else float(value)
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


def markdown_table(rows: list[dict], designs: list[tuple[str, str, list[str]]]) -> str:
    last = {}
    for row in rows:
        if row["design"] not in last or row["step"] > last[row["design"]]["step"]:
            last[row["design"]] = row
    columns = [("minutes", "train min"), ("step", "steps"),
               ("reconstruction/coordinate_rmsd_median", "RMSD median Å"),
               ("reconstruction/coordinate_rmsd", "RMSD mean Å"),
               ("reconstruction/match_rate_inchi_openbabel", "match InChI/OpenBabel"),
               ("reconstruction/match_rate_edm_smiles", "match EDM SMILES"),
               ("reconstruction/element_accuracy", "element acc."),
               ("generation/stability/atom_stability", "atom stable"),
               ("generation/stability/molecule_stability", "mol. stable"),
               ("generation/edm/validity", "valid (edm)"),
               ("generation/xyz2mol/validity", "valid (xyz2mol)"),
               ("generation/openbabel/validity", "valid (openbabel)"),
               ("generation/xyz2mol/uniqueness", "unique (xyz2mol)"),
               ("generation/bond_w1/C-C", "C–C W1 Å"), ("generation/bond_w1/C-H", "C–H W1 Å"),
               ("generation/xyz2mol/fcd", "FCD (xyz2mol)")]
    present = [(k, h) for k, h in columns if any(k in r for r in last.values())]
    lines = ["| design | " + " | ".join(h for _, h in present) + " |",
             "|---|" + "---|" * len(present)]
    for name, _, _ in designs:
        if name in last:
            cells = [last[name].get(k, math.nan) for k, _ in present]
            lines.append(f"| {name} | " + " | ".join(_cell(c) for c in cells) + " |")
    lines.append("")
    lines += [f"- **{name}**: {text} (`{' '.join(overrides) or 'defaults'}`)" for name, text, overrides in designs]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def plot_curves(rows: list[dict], out_dir: Path, metrics: list[str] = PLOTTED, x_key: str = "minutes",
                x_label: str = "training CPU minutes (1 thread)", log_x: bool = False, references=None) -> list[str]:
    """One PNG per metric of `metrics` present in `rows`: a line per design against `x_key`; `references(axis,
    key)` may draw published curves on the same axes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key in metrics:
        if not any(key in r for r in rows):
            continue
        figure, axis = plt.subplots(figsize=(5.5, 3.8))
        for design in dict.fromkeys(r["design"] for r in rows):
            points = sorted((r[x_key], r[key]) for r in rows if r["design"] == design and key in r)
            axis.plot(*zip(*points), marker="o", label=design)
        if references is not None:
            references(axis, key)
        if log_x:
            axis.set_xscale("log")
        axis.set_xlabel(x_label)
        axis.set_ylabel(key.split("/", 1)[1])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        name = key.replace("/", "_") + ".png"
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        written.append(name)
    return written


def machine_record() -> dict:
    import torch
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"machine": platform.machine(), "processor": _cpu_model(), "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(), "commit": commit.stdout.strip(),
            "load_average_at_start": os.getloadavg()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", nargs="+", default=["frame", "coordinates", "invariant_aligned"])
    parser.add_argument("--minutes", type=float, default=20.0, help="training minutes per design")
    parser.add_argument("--every", type=float, default=5.0, help="minutes between evaluated checkpoints")
    parser.add_argument("--parallel", type=int, default=2, help="designs trained at once (one thread each)")
    parser.add_argument("--reconstruct", type=int, default=1000)
    parser.add_argument("--generate", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default="qm9", help="novelty/FCD reference; 'none' for neither")
    parser.add_argument("--name", default="molecule_curve")
    parser.add_argument("--results-dir", default=str(RESULTS), help="parent folder of the results")
    parser.add_argument("--work-dir", default=None, help="where runs go (default: a temporary folder)")
    parser.add_argument("--append", action="store_true",
                        help="keep the other designs already in the results folder (one table across invocations)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides shared by every design")
    args = parser.parse_args()
    designs = [parse_design(text) for text in args.designs]
    reference = None if args.reference == "none" else args.reference
    if len({name for name, _, _ in designs}) != len(designs):
        raise SystemExit("--designs: names must be distinct")
    record = {"designs": {n: {"description": d, "overrides": o} for n, d, o in designs}, "minutes": args.minutes,
              "every": args.every, "parallel": args.parallel, "shared_overrides": args.overrides,
              "reconstruct": args.reconstruct, "generate": args.generate, **machine_record()}
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="molecule_curve_"))
    print(f"molecule_curve: runs in {work}", flush=True)
    jobs = [(name, [*args.overrides, *overrides], work / name) for name, _, overrides in designs]
    started = time.monotonic()
    trained = [job for job in jobs if (job[2] / "summary.json").is_file()] if args.work_dir else []
    if trained:
        print("molecule_curve: kept (trained by an earlier invocation): " + ", ".join(j[0] for j in trained))
    run_in_batches([job for job in jobs if job not in trained], args.parallel,
                   lambda job: train_design(*job, args.minutes, args.every))
    record["load_average_after_training"] = os.getloadavg()
    record["training_wall_minutes"] = (time.monotonic() - started) / 60
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=get_context("spawn")) as pool:
        per_design = pool.map(_evaluate_design_job,
                              [(name, run_dir, args.reconstruct, args.generate, args.seed, reference)
                               for name, _, run_dir in jobs])
        rows = [row for design_rows in per_design for row in design_rows]
    out_dir = Path(args.results_dir) / args.name
    out_dir.mkdir(parents=True, exist_ok=True)
    invocations = [record]
    if args.append and (out_dir / "curve.csv").exists():
        names = {name for name, _, _ in designs}
        earlier = json.loads((out_dir / "run.json").read_text())
        invocations = earlier["invocations"] + invocations
        kept = [row for row in read_rows(out_dir / "curve.csv") if row["design"] not in names]
        rows = kept + rows
        known = {name: (spec["description"], spec["overrides"]) for invocation in invocations
                 for name, spec in invocation["designs"].items()}
        designs = [(name, *known[name]) for name in dict.fromkeys(row["design"] for row in rows)]
    keys = ["design", "minutes", "step"] + sorted({k for r in rows for k in r} - {"design", "minutes", "step"})
    with open(out_dir / "curve.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(rows, designs)
    (out_dir / "table.md").write_text(f"# {args.name}: the last checkpoint of each design\n\nTraining CPU minutes "
                                      "at one thread each (run.json: machine, load, budgets of each invocation). "
                                      f"Reconstruction: first {args.reconstruct} test molecules (EDM split); generation: "
                                      f"{args.generate} molecules, default sampler.\n\n{table}\n")
    plots = plot_curves(rows, out_dir)
    (out_dir / "run.json").write_text(json.dumps({"plots": plots, "invocations": invocations}, indent=2))
    print(table)


if __name__ == "__main__":
    main()
