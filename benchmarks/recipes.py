"""The recipes side by side on the same data, model size and budget of optimiser steps x batch:

    python -m benchmarks.run recipes [--setting cpu|gpu|smoke] [--modalities molecule image]
        [--recipes unite two_stage ldetok aligntok] [--dinov2-weights FILE] [--parallel 2] [--name recipes]
        [--work-dir DIR] [--results-dir DIR]

Each (modality, recipe) is one `python -m core.train` run of the modality's default config with the
setting's steps, batch and model (staged recipes split the same steps between their stages,
`recipe.stage_fractions`), checkpointed at a quarter, half, three quarters and the end of the budget.
Afterwards, the checkpoints at SETTING.points of the budget that can generate (the staged recipes' generator
trained) are evaluated with EMA weights:
  molecules: reconstruction of the first `reconstruct` test molecules (both match protocols, RMSD) and
             `generate` generated molecules through the full harness (stability, validity under three bond
             routes, uniqueness, novelty, FCD, bond-length W1), as benchmarks/molecule_curve.py does;
  images:    PSNR/SSIM and rFID on the first `rfid` test images; gFID of `gfid` class-balanced samples at
             every CFG scale of `scales` for the final checkpoint (the best is reported, named), at that
             scale for the earlier ones (gFID only); the linear-probe accuracy of the final latent.
Training compute is the training process's CPU time (smoke and cpu settings: one torch thread per run) or
its wall time (gpu). Writes under benchmarks/results/<name>/: table.md (the final checkpoint of each
recipe), rows.csv (every evaluated checkpoint), generation_vs_compute.png, run.json (setting, machine,
commands, wall times). AlignTok is images only and needs a local DINOv2 file; without --dinov2-weights
its row says so. With --work-dir, runs finished there by an earlier invocation are kept (not trained
again) and interrupted ones resume; a resumed run's training time adds up its processes.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from benchmarks.molecule_curve import RESULTS, ROOT, _cell, machine_record, run_in_batches

RECIPES = ("unite", "two_stage", "ldetok", "aligntok")


@dataclass(frozen=True)
class Setting:
    overrides: tuple[str, ...]          # Hydra overrides of `python -m core.train` for every recipe
    steps: int                          # optimiser steps (all stages together)
    batch: int
    points: tuple[float, ...] = (0.75, 1.0)  # shares of the budget whose checkpoints are evaluated
    reconstruct: int = 1000             # molecules: test molecules reconstructed
    generate: int = 1000                # molecules: generated molecules
    reference: str | None = "qm9"       # molecules: novelty/FCD reference
    rfid: int = 250                     # images: test images in PSNR/SSIM/rFID
    gfid: int = 500                     # images: generated images per gFID
    scales: tuple[float, ...] = (1.0, 2.0)       # images: the CFG sweep of the final checkpoint
    fid_reference_images: int | None = 1000      # images: training images in the gFID statistics (None = all)
    probe: tuple[int, int] = (5000, 1000)        # images: linear probe on (train, test) samples
    threads: int | None = 1             # torch threads per run (None: the device decides)
    staged: tuple[str, ...] = ()        # overrides of the staged recipes only


SETTINGS: dict[str, dict[str, Setting]] = {
    # CPU-sized: GE-tiny and the modality defaults, one thread per run. Inception on one busy CPU thread
    # (0.3-0.5 s per image, measured 2026-12-06) limits the image sets: images evaluate the final checkpoint
    # only (2,500 Inception images per recipe); see benchmarks/results/recipes/README.md for its time
    "cpu": {"molecule": Setting(("modality=molecule",), steps=400, batch=64),
            "image": Setting(("modality=image",), steps=1000, batch=64, points=(1.0,))},
    # A larger setting for a GPU (not run here: no GPU was lent): GE-S, QM9 and CIFAR-10 at patch 4
    # (64 tokens), gFID-5k against the whole training set, CFG swept over 1.0-4.0
    "gpu": {"molecule": Setting(("modality=molecule", "model=ge_s", "model.latent_channels=16",
                                 "sampler.batch_size=1000"), steps=50_000, batch=256, reconstruct=10_000,
                                generate=10_000, threads=None),
            "image": Setting(("modality=image", "model=ge_s", "modality.patch_size=4", "modality.decoder.width=384",
                              "modality.decoder.depth=6", "modality.decoder.heads=6"), steps=100_000, batch=256,
                             rfid=10_000, gfid=5000, scales=tuple(1.0 + 0.5 * i for i in range(7)),
                             fid_reference_images=None, probe=(50_000, 10_000), threads=None)},
    # seconds: checks the pipeline (tests), numbers mean nothing
    "smoke": {"molecule": Setting(("experiment=molecule_smoke",), steps=8, batch=16, points=(0.75, 1.0),
                                  reconstruct=16, generate=8, reference=None,
                                  staged=("recipe.standardization_samples=32",)),
              "image": Setting(("modality=image", "modality.train_subset=64", "modality.eval_subset=16",
                                "model.depth=1", "model.width=32", "modality.decoder.depth=1",
                                "modality.decoder.width=32"), steps=8, batch=16, points=(1.0,), rfid=8, gfid=8,
                               scales=(1.0, 2.0), fid_reference_images=16, probe=(32, 16),
                               staged=("recipe.standardization_samples=16",))},
}
# the smoke setting's AlignTok: a 2-block random ViT (tests); real runs read DINOv2 from --dinov2-weights
SMOKE_FOUNDATION = ("recipe.foundation.weights=random", "recipe.foundation.model_name=vit_tiny_patch16_224",
                    "recipe.foundation.model_options.img_size=32", "+recipe.foundation.model_options.patch_size=8",
                    "+recipe.foundation.model_options.depth=2")


def recipe_overrides(modality: str, recipe: str, setting_name: str, weights: str | None) -> list[str] | str:
    """The recipe's overrides, or why it has no run (a string for its table row)."""
    staged = list(SETTINGS[setting_name][modality].staged) if recipe != "unite" else []
    if recipe != "aligntok":
        return [f"recipe={recipe}", *staged]
    if modality != "image":
        return "images only (AlignTok aligns a pretrained image encoder)"
    if setting_name == "smoke":
        return ["recipe=aligntok", *staged, *SMOKE_FOUNDATION]
    if weights is None:
        return "needs weights: --dinov2-weights FILE (timm's vit_small_patch14_dinov2 state dict)"
    return ["recipe=aligntok", *staged, f"recipe.foundation.weights={weights}"]


def training_minutes(run_dir: Path, step: int, clock: str) -> float:
    """Training time at `step` (all stages), interpolated between the rows of metrics.jsonl; clock:
    process_seconds (the training process's CPU time) or wall_seconds. A resumed run's clock starts again:
    the time of the earlier processes (to their last row) is added."""
    offset, previous, points = 0.0, 0.0, [(0, 0.0)]
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if clock not in row:
            continue
        if row[clock] < previous:  # a new process
            offset += previous
        previous = row[clock]
        points = [(s, t) for s, t in points if s < row["step"]] + [(row["step"], offset + row[clock])]
    steps, seconds = zip(*points)
    return float(np.interp(step, steps, seconds)) / 60.0


def finished(run_dir: Path, steps: int) -> bool:
    """A run of an earlier invocation (same --work-dir) that reached the budget: kept, not trained again."""
    return any(int(p.name[5:14]) == steps for p in (run_dir / "checkpoints").glob("step_*.pt")) \
        and (run_dir / "summary.json").is_file()


def start_training(run: dict, setting: Setting) -> subprocess.Popen:
    out = Path(run["out_dir"])
    command = [sys.executable, "-m", "core.train", *setting.overrides, *run["overrides"],
               f"trainer.max_steps={setting.steps}", f"trainer.batch_size={setting.batch}",
               f"trainer.checkpoint_every={max(1, setting.steps // 4)}", "trainer.keep_checkpoints=1000",
               "trainer.evaluate_at_end=false", "trainer.resume=auto", f"trainer.out_dir={out}"]
    if setting.threads is not None:
        command.append(f"trainer.threads={setting.threads}")
    out.mkdir(parents=True, exist_ok=True)
    run["command"] = " ".join(command)
    (out / "command.txt").write_text(run["command"] + "\n")
    env = {**os.environ, **({"OMP_NUM_THREADS": str(setting.threads)} if setting.threads else {})}
    return subprocess.Popen(command, cwd=ROOT, stdout=open(out / "train.log", "w"), stderr=subprocess.STDOUT, env=env)


def evaluated_checkpoints(run_dir: Path, setting: Setting) -> list[Path]:
    """The checkpoints at the setting's points of the budget whose generator has trained, oldest first."""
    from core.checkpoint import list_checkpoints, load_checkpoint
    steps = {round(share * setting.steps) for share in setting.points}
    chosen = []
    for path in list_checkpoints(run_dir / "checkpoints"):
        if int(path.name[5:14]) in steps and load_checkpoint(path)["stage"] in ("joint", "generator"):
            chosen.append(path)
    return chosen


def evaluate_image_checkpoint(checkpoint: Path, setting: Setting, scales: tuple[float, ...], final: bool) -> dict:
    """final: PSNR/SSIM/rFID, the gFID of every scale and the linear probe; else the gFID at scales[0] only."""
    import torch
    from omegaconf import OmegaConf

    from core.evaluation import generate_and_write, reconstruction_report
    from core.linear_probe import linear_probe
    from core.sample import load_for_sampling
    torch.set_num_threads(setting.threads or torch.get_num_threads())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = OmegaConf.create({"rfid_images": setting.rfid, "fid_reference_images": setting.fid_reference_images,
                                  "write_png": False})
    model, modality, run_cfg, step = load_for_sampling(checkpoint, overrides, device)
    batch = 100
    row = {"step": step}
    if final:
        report = reconstruction_report(model, modality, "test", math.ceil(setting.rfid / batch), batch, device)
        row.update({f"reconstruction/{k}": report[k] for k in ("psnr", "ssim", "rfid") if k in report})
    sampler = OmegaConf.load(ROOT / "configs" / "sampler" / "default.yaml")
    sampler.batch_size = 250
    for scale in scales:
        sampler.guidance_scale = scale
        with tempfile.TemporaryDirectory() as out:
            generated = generate_and_write(model, modality, sampler, setting.gfid, Path(out), device, seed=0)
            shutil.copyfile(Path(out) / "grid.png", grid_path(checkpoint.parent.parent, step, scale))
        row[f"generation/gfid@{scale:g}"] = generated["gfid"]
    best = min(scales, key=lambda s: row[f"generation/gfid@{s:g}"])
    row.update({"generation/gfid": row[f"generation/gfid@{best:g}"], "generation/best_scale": best,
                "generation/gfid_samples": setting.gfid})
    if final:
        figures = linear_probe(model, modality, train_items=setting.probe[0], eval_items=setting.probe[1],
                               eval_split="test", batch_size=batch, device=device)
        row.update({f"reconstruction/{k}": v for k, v in figures.items()})
    return row


def grid_path(run_dir: Path, step: int, scale: float) -> Path:
    return run_dir / f"grid_step{step}_cfg{scale:g}.png"


def evaluate_run(job: tuple) -> list[dict]:
    """Every chosen checkpoint of one run, the final one first (images: its best scale is used for the rest)."""
    modality, recipe, run_dir, setting = job
    run_dir = Path(run_dir)
    rows = []
    started = time.monotonic()
    checkpoints = evaluated_checkpoints(run_dir, setting)[::-1]
    scales = setting.scales
    for index, checkpoint in enumerate(checkpoints):
        if modality == "molecule":
            from benchmarks.molecule_curve import evaluate_checkpoint
            import torch
            torch.set_num_threads(setting.threads or torch.get_num_threads())
            row = evaluate_checkpoint(checkpoint, setting.reconstruct, setting.generate, 0, setting.reference)
        else:
            row = evaluate_image_checkpoint(checkpoint, setting, scales, final=index == 0)
            scales = (row["generation/best_scale"],)
        clock = "process_seconds" if setting.threads else "wall_seconds"
        row.update(modality=modality, recipe=recipe, minutes=round(training_minutes(run_dir, row["step"], clock), 3),
                   samples_seen=row["step"] * setting.batch)
        rows.append(row)
        print(f"[{modality}/{recipe}] step {row['step']} evaluated", flush=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    for row in rows:
        row.update(trained_parameters=summary["trained_parameters"], train_wall_minutes=summary["wall_seconds"] / 60,
                   evaluation_wall_minutes=(time.monotonic() - started) / 60)
    return rows[::-1]


MOLECULE_COLUMNS = [("samples_seen", "steps × batch"), ("trained_parameters", "parameters"),
                    ("minutes", "train CPU min"), ("train_wall_minutes", "train wall min"),
                    ("reconstruction/match_rate_inchi_openbabel", "match InChI/OpenBabel"),
                    ("reconstruction/match_rate_edm_smiles", "match EDM SMILES"),
                    ("reconstruction/coordinate_rmsd_median", "RMSD median Å"),
                    ("generation/stability/atom_stability", "atom stable"),
                    ("generation/stability/molecule_stability", "mol. stable"),
                    ("generation/edm/validity", "valid (edm)"), ("generation/xyz2mol/validity", "valid (xyz2mol)"),
                    ("generation/openbabel/validity", "valid (openbabel)"),
                    ("generation/xyz2mol/uniqueness", "unique (xyz2mol)"),
                    ("generation/xyz2mol/novelty", "novel (xyz2mol)"), ("generation/xyz2mol/fcd", "FCD (xyz2mol)"),
                    ("generation/bond_w1/C-C", "C–C W1 Å"), ("generation/bond_w1/C-H", "C–H W1 Å")]
IMAGE_COLUMNS = [("samples_seen", "steps × batch"), ("trained_parameters", "parameters"),
                 ("minutes", "train CPU min"), ("train_wall_minutes", "train wall min"),
                 ("reconstruction/psnr", "PSNR dB"), ("reconstruction/ssim", "SSIM"), ("reconstruction/rfid", "rFID"),
                 ("generation/gfid", "gFID (best CFG)"), ("generation/best_scale", "best CFG"),
                 ("reconstruction/linear_probe_accuracy", "linear probe")]
PLOTTED = {"molecule": ("generation/xyz2mol/valid_and_unique", "QM9: valid & unique (xyz2mol), higher is better"),
           "image": ("generation/gfid", "CIFAR-10: gFID at the best CFG scale, lower is better")}


def markdown_tables(rows: list[dict], absent: dict, setting_name: str, settings: dict[str, Setting]) -> str:
    lines = []
    for modality, columns in (("molecule", MOLECULE_COLUMNS), ("image", IMAGE_COLUMNS)):
        if modality not in settings:
            continue
        final = {}
        for row in rows:
            if row["modality"] == modality and row["step"] == settings[modality].steps:
                final[row["recipe"]] = row
        setting = settings[modality]
        title = {"molecule": "QM9 (EDM split)", "image": "CIFAR-10 (JPEG copy, 32 px)"}[modality]
        lines += [f"## {title}: {setting.steps} steps × batch {setting.batch}, setting `{setting_name}`", "",
                  "| recipe | " + " | ".join(h for _, h in columns) + " |", "|---|" + "---|" * len(columns)]
        for recipe in RECIPES:
            if recipe in final:
                lines.append(f"| {recipe} | " + " | ".join(_cell(final[recipe].get(k)) for k, _ in columns) + " |")
            elif (modality, recipe) in absent:
                lines.append(f"| {recipe} | {absent[modality, recipe]} |" + " |" * (len(columns) - 1))
        lines.append("")
        if modality == "molecule":
            lines.append(f"Reconstruction: first {setting.reconstruct} test molecules; generation: {setting.generate} "
                         "molecules, Euler 50 steps, no guidance; FCD and novelty against QM9.")
        else:
            lines.append(f"PSNR/SSIM/rFID: first {setting.rfid} test images; gFID: {setting.gfid} class-balanced "
                         f"samples (Euler 50) vs {setting.fid_reference_images or 'all'} training images, best of "
                         f"CFG scales {list(setting.scales)} (named); L1 loss only (no LPIPS weights offline); "
                         f"linear probe: logistic regression on the flattened latent, {setting.probe[0]} train / "
                         f"{setting.probe[1]} test images.")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], out: Path, settings: dict[str, Setting], clock: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    modalities = [m for m in ("molecule", "image") if m in settings]
    figure, axes = plt.subplots(1, len(modalities), figsize=(5.2 * len(modalities), 3.8), squeeze=False)
    for axis, modality in zip(axes[0], modalities):
        key, title = PLOTTED[modality]
        for recipe in RECIPES:
            points = sorted((r["minutes"], r[key]) for r in rows if r["modality"] == modality
                            and r["recipe"] == recipe and r.get(key) is not None)
            if points:
                axis.plot(*zip(*points), marker="o", label=recipe)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(f"training {clock} minutes (all stages)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "generation_vs_compute.png", dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--modalities", nargs="+", choices=("molecule", "image"), default=["molecule", "image"])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--dinov2-weights", default=None, help="local timm weights of vit_small_patch14_dinov2")
    parser.add_argument("--parallel", type=int, default=2, help="runs trained (and evaluated) at once")
    parser.add_argument("--name", default="recipes")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--work-dir", default=None, help="where runs go (default: a temporary folder); runs "
                        "finished there by an earlier invocation are kept, interrupted ones resume")
    args = parser.parse_args()
    settings = {m: SETTINGS[args.setting][m] for m in args.modalities}
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="recipes_"))
    print(f"recipes: runs in {work}", flush=True)
    runs, absent = [], {}
    for modality in args.modalities:
        for recipe in args.recipes:
            overrides = recipe_overrides(modality, recipe, args.setting, args.dinov2_weights)
            if isinstance(overrides, str):
                absent[modality, recipe] = overrides
            else:
                runs.append({"modality": modality, "recipe": recipe, "overrides": overrides,
                             "out_dir": str(work / f"{modality}_{recipe}")})
    record = {"setting": args.setting, "settings": {m: asdict(s) for m, s in settings.items()},
              "absent": {f"{m}/{r}": why for (m, r), why in absent.items()}, **machine_record()}
    started = time.monotonic()
    jobs = [(f"{r['modality']}/{r['recipe']}", r, Path(r["out_dir"])) for r in runs
            if not finished(Path(r["out_dir"]), settings[r["modality"]].steps)]
    record["kept_from_earlier_invocation"] = [r["out_dir"] for r in runs if r["out_dir"] not in
                                              {str(job[2]) for job in jobs}]
    run_in_batches(jobs, args.parallel, lambda job: start_training(job[1], settings[job[1]["modality"]]))
    record["training_wall_minutes"] = (time.monotonic() - started) / 60
    for run in runs:
        run["command"] = (Path(run["out_dir"]) / "command.txt").read_text().strip()
    record["runs"] = runs
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=get_context("spawn")) as pool:
        rows = [row for run_rows in pool.map(evaluate_run, [(r["modality"], r["recipe"], r["out_dir"],
                                                             settings[r["modality"]]) for r in runs])
                for row in run_rows]
    record["total_wall_minutes"] = (time.monotonic() - started) / 60
    out = Path(args.results_dir) / args.name
    out.mkdir(parents=True, exist_ok=True)
    keys = ["modality", "recipe", "step", "minutes"] + sorted({k for r in rows for k in r} -
                                                              {"modality", "recipe", "step", "minutes"})
    with open(out / "rows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    clock = "GPU wall" if args.setting == "gpu" else "CPU (1 thread)"
    table = markdown_tables(rows, absent, args.setting, settings)
    (out / "table.md").write_text(f"# Recipes at equal steps × batch (`python -m benchmarks.run recipes --setting "
                                  f"{args.setting}`)\n\nFinal checkpoint of each recipe, EMA weights; training "
                                  f"compute in {clock} minutes; run.json: machine, load, commands, wall times.\n\n"
                                  f"{table}")
    plot(rows, out, settings, clock)
    for row in rows:  # the generated images of each image recipe's final checkpoint at its best scale
        if row["modality"] == "image" and row["step"] == settings["image"].steps:
            shutil.copyfile(grid_path(work / f"image_{row['recipe']}", row["step"], row["generation/best_scale"]),
                            out / f"samples_image_{row['recipe']}.png")
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str))
    print(table)
    print(f"recipes: {record['total_wall_minutes']:.1f} min wall in all; results in {out}")


if __name__ == "__main__":
    main()
