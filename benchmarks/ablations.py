"""The UNITE paper's ablations at one budget of optimiser steps x batch, on QM9 and CIFAR-10:

    python -m benchmarks.run ablations [--setting cpu|gpu|smoke] [--modalities molecule image]
        [--variants unite separate_weights ...] [--parallel 2] [--name ablations] [--work-dir DIR]
        [--results-dir DIR]

Variants (each a `python -m core.train` run of recipe=unite with the setting of benchmarks/recipes.py):
    unite                       shared GE, stop-gradient on the clean latent, K = 3 flow draws (the default)
    separate_weights            recipe.share_weights=false: the denoiser has its own weights (paper: gFID 2.60)
    no_stop_gradient            recipe.detach_target=false: the flow loss also reaches z through its target
    separate_no_stop_gradient   both (the paper's "no stop-gradient" row is with separate weights: 2.24)
    flow_draws_1 / _6 / _14     recipe.flow_draws_per_sample=K (paper: gFID 3.33 at K = 1 -> 2.12 at K = 14)
The setting's default variants: cpu and smoke leave out K = 14 (a CPU step costs ~3x), gpu leaves out K = 6.
Every run is evaluated as benchmarks/recipes.py evaluates UNITE (molecules: reconstruction, generation through
the full harness; images: PSNR/SSIM/rFID, gFID at its CFG scales, linear probe), and its final checkpoint
is analysed (benchmarks/analyze.py: alignment of the two passes, weight entropy by role, latent spectrum).
Writes under benchmarks/results/<name>/: table.md (one table per modality: the final checkpoints),
rows.csv, alignment_<modality>.png (CKA per block against t for every variant, side by side),
analysis/<modality>_<variant>/ (every analysis file), run.json (setting, machine, commands, wall times).
With --work-dir, runs finished there by an earlier invocation are kept and interrupted ones resume.
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from benchmarks.molecule_curve import RESULTS, _cell, machine_record, run_in_batches
from benchmarks.recipes import IMAGE_COLUMNS, MOLECULE_COLUMNS, SETTINGS, evaluate_run, finished, start_training

VARIANTS: dict[str, tuple[str, ...]] = {
    "unite": (),
    "separate_weights": ("recipe.share_weights=false",),
    "no_stop_gradient": ("recipe.detach_target=false",),
    "separate_no_stop_gradient": ("recipe.share_weights=false", "recipe.detach_target=false"),
    "flow_draws_1": ("recipe.flow_draws_per_sample=1",),
    "flow_draws_6": ("recipe.flow_draws_per_sample=6",),
    "flow_draws_14": ("recipe.flow_draws_per_sample=14",),
}
DEFAULT_VARIANTS = {
    "cpu": ("unite", "separate_weights", "no_stop_gradient", "separate_no_stop_gradient", "flow_draws_1",
            "flow_draws_6"),
    "gpu": ("unite", "separate_weights", "no_stop_gradient", "separate_no_stop_gradient", "flow_draws_1",
            "flow_draws_14"),
    "smoke": ("unite", "separate_weights"),
}
# the analyses of each final checkpoint: (test samples, flow times, tokens compared)
ANALYSIS = {"cpu": (256, tuple(round(0.1 * i, 1) for i in range(11)), 2048),
            "gpu": (1024, tuple(round(0.1 * i, 1) for i in range(11)), 4096),
            "smoke": (8, (0.0, 0.5, 1.0), 64)}
ALIGNMENT_COLUMNS = [("alignment/cka@0.5", "CKA t=0.5"), ("alignment/cka@1", "CKA t=1"),
                     ("alignment/cknna@1", "CKNNA t=1"), ("spectrum/effective_rank", "latent eff. rank")]


def analyse_final(job: tuple) -> dict:
    """benchmarks/analyze.py on a run's final checkpoint; its headline figures for the table."""
    import torch

    from benchmarks.analyze import analyze
    modality, variant, run_dir, steps, setting_name, out = job
    torch.set_num_threads(1)
    samples, times, items = ANALYSIS[setting_name]
    checkpoint = Path(run_dir) / "checkpoints" / f"step_{steps:09d}.pt"
    summary = analyze(checkpoint, ["alignment", "weights", "spectrum"], Path(out), samples=samples, times=times,
                      max_items=items, topk=min(10, items - 1), probe_items=(0, 0), weights_name="ema",
                      batch_size=64, seed=0)
    means = summary["alignment"]["mean_over_blocks"]
    return {"alignment/cka@0.5": means["0.5"]["cka"], "alignment/cka@1": means["1"]["cka"],
            "alignment/cknna@1": means["1"]["cknna"], "spectrum/effective_rank": summary["spectrum"]["effective_rank"]}


def markdown_tables(rows: list[dict], variants: list[str], settings: dict, setting_name: str) -> str:
    lines = []
    for modality, columns in (("molecule", MOLECULE_COLUMNS), ("image", IMAGE_COLUMNS)):
        if modality not in settings:
            continue
        setting = settings[modality]
        columns = columns + ALIGNMENT_COLUMNS
        final = {r["variant"]: r for r in rows if r["modality"] == modality and r["step"] == setting.steps}
        title = {"molecule": "QM9 (EDM split)", "image": "CIFAR-10 (JPEG copy, 32 px)"}[modality]
        lines += [f"## {title}: {setting.steps} steps × batch {setting.batch}, setting `{setting_name}`", "",
                  "| variant | overrides | " + " | ".join(h for _, h in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        for variant in variants:
            if variant in final:
                overrides = " ".join(VARIANTS[variant]) or "(defaults)"
                lines.append(f"| {variant} | `{overrides}` | " +
                             " | ".join(_cell(final[variant].get(k)) for k, _ in columns) + " |")
        lines += ["", "Alignment: linear CKA / CKNNA between the tokenize pass's and the denoise pass's block outputs "
                  "at the latent tokens of the first test samples, mean over blocks, denoise input noised to flow "
                  "time t (1 = data); `analysis/` holds every block and t.", ""]
    return "\n".join(lines)


def main() -> None:
    from benchmarks.analyze_figures import alignment_comparison_figure
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--modalities", nargs="+", choices=("molecule", "image"), default=["molecule", "image"])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                        help="default: the setting's list (DEFAULT_VARIANTS)")
    parser.add_argument("--parallel", type=int, default=2, help="runs trained (and evaluated) at once")
    parser.add_argument("--name", default="ablations")
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--work-dir", default=None, help="where runs go (default: a temporary folder); runs "
                        "finished there by an earlier invocation are kept, interrupted ones resume")
    args = parser.parse_args()
    variants = list(args.variants or DEFAULT_VARIANTS[args.setting])
    settings = {m: SETTINGS[args.setting][m] for m in args.modalities}
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="ablations_"))
    out = Path(args.results_dir) / args.name
    out.mkdir(parents=True, exist_ok=True)
    print(f"ablations: runs in {work}", flush=True)
    runs = [{"modality": m, "variant": v, "overrides": ["recipe=unite", *VARIANTS[v]],
             "out_dir": str(work / f"{m}_{v}")} for m in args.modalities for v in variants]
    record = {"setting": args.setting, "variants": {v: VARIANTS[v] for v in variants},
              "settings": {m: asdict(s) for m, s in settings.items()}, **machine_record()}
    started = time.monotonic()
    jobs = [(f"{r['modality']}/{r['variant']}", r, Path(r["out_dir"])) for r in runs
            if not finished(Path(r["out_dir"]), settings[r["modality"]].steps)]
    pending = {str(job[2]) for job in jobs}
    record["kept_from_earlier_invocation"] = [r["out_dir"] for r in runs if r["out_dir"] not in pending]
    run_in_batches(jobs, args.parallel, lambda job: start_training(job[1], settings[job[1]["modality"]]))
    record["training_wall_minutes"] = (time.monotonic() - started) / 60
    for run in runs:
        run["command"] = (Path(run["out_dir"]) / "command.txt").read_text().strip()
    record["runs"] = runs
    evaluations = [(r["modality"], r["variant"], r["out_dir"], settings[r["modality"]]) for r in runs]
    analyses = [(r["modality"], r["variant"], r["out_dir"], settings[r["modality"]].steps, args.setting,
                 str(out / "analysis" / f"{r['modality']}_{r['variant']}")) for r in runs]
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=get_context("spawn")) as pool:
        evaluated = list(pool.map(evaluate_run, evaluations))
        headlines = list(pool.map(analyse_final, analyses))
    rows = []
    for run, run_rows, headline in zip(runs, evaluated, headlines):
        for row in run_rows:
            row["variant"] = row.pop("recipe")
            if row["step"] == settings[run["modality"]].steps:
                row.update(headline)
            rows.append(row)
    record["total_wall_minutes"] = (time.monotonic() - started) / 60
    keys = ["modality", "variant", "step", "minutes"] + sorted({k for r in rows for k in r} -
                                                               {"modality", "variant", "step", "minutes"})
    with open(out / "rows.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    for modality in args.modalities:
        named = {}
        for variant in variants:
            with open(out / "analysis" / f"{modality}_{variant}" / "alignment.csv") as handle:
                named[variant] = [{k: int(v) if k in ("layer", "items") else float(v) for k, v in row.items()}
                                  for row in csv.DictReader(handle)]
        alignment_comparison_figure(named, out / f"alignment_{modality}.png",
                                    f"{modality}: tokenize vs denoise pass per variant (setting {args.setting})")
    table = markdown_tables(rows, variants, settings, args.setting)
    clock = "GPU wall" if args.setting == "gpu" else "CPU (1 thread)"
    (out / "table.md").write_text(f"# UNITE ablations at equal steps × batch (`python -m benchmarks.run ablations "
                                  f"--setting {args.setting}`)\n\nFinal checkpoint of each variant, EMA weights; "
                                  f"training compute in {clock} minutes; run.json: machine, load, commands, wall "
                                  f"times.\n\n{table}")
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str))
    print(table)
    print(f"ablations: {record['total_wall_minutes']:.1f} min wall in all; results in {out}")


if __name__ == "__main__":
    main()
