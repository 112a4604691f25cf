"""float32 against bf16 autocast for each preset, on the machine at hand, paired in one process.

    python -m benchmarks.run precision [--cases molecule_default image_default ...] [--rounds 5] [--threads N]
                                       [--device cpu|cuda] [--name NAME]

Each case is a `core.train` preset at its own batch size. Both variants are built from the same seed (same
initial weights) and time the whole training step as the loop runs it (benchmarks/timing.OurTrainStep:
forward, backward, clip, AdamW, EMA), alternating fp32 and bf16 round by round so that a busy machine slows
both alike. Also recorded: the first step's loss in each precision on the same batch (their relative
difference) and what `trainer.precision=auto` picks on this device. Writes
benchmarks/results/precision/<name>.md and .json with the machine record (CPU model, flags, threads, load).
This is the measurement behind core/precision.py's rule for `auto`.
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import torch

from benchmarks.speed import train_config
from benchmarks.timing import RESULTS, alternate, build_train_step, machine_record
from core.build import build_modality
from core.precision import auto_reason, compute_dtype

CASES = {  # name -> (core.train overrides, batch size)
    "molecule_default": (["modality=molecule"], 64),
    "molecule_ge_s": (["modality=molecule", "model=ge_s", "model.latent_channels=16"], 64),
    "image_default": (["modality=image", "modality.dataset=image_folder"], 64),
    "image_ge_s": (["modality=image", "modality.dataset=image_folder", "model=ge_s"], 64),
    "image_ge_b_256": (["experiment=imagenet256_unite_b", "modality.dataset=image_folder"], 8),
}
CPU_CASES = ("molecule_default", "molecule_ge_s", "image_default", "image_ge_s")


def machine_slug(device: torch.device) -> str:
    """A file name for this machine: the GPU's or CPU's model name."""
    record = machine_record(device)
    name = record["gpu"] or record["cpu"]
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def measure_case(name: str, device: torch.device, rounds: int, warmup: int, folder: Path) -> dict:
    overrides, batch_size = CASES[name]
    steps, batches = {}, None
    for precision in ("fp32", "bf16"):
        cfg = train_config(overrides, folder / name, [f"trainer.batch_size={batch_size}", f"trainer.precision={precision}"],
                           full_batch=True)
        steps[precision] = build_train_step(cfg, precision=precision, device=device, seed=0)
        if batches is None:
            modality = build_modality(cfg)
            loader = torch.utils.data.DataLoader(modality.dataset("train"), batch_size=batch_size, shuffle=True,
                                                 drop_last=True, collate_fn=modality.collate,
                                                 generator=torch.Generator().manual_seed(0))
            batches = [modality.batch_to(batch, device) for batch, _ in zip(loader, range(2))]
    first_loss = {}
    for precision, step in steps.items():  # same initial weights, same batch, same noise streams
        first_loss[precision] = float(step.forward_backward(batches[0], batch_size).detach())
        step.optimizer.zero_grad(set_to_none=True)
    counter = {"index": 0}

    def run(precision):
        def call():
            steps[precision](batches[counter["index"] % len(batches)], batch_size)
            counter["index"] += 1
        return call
    timing = alternate({p: run(p) for p in steps}, rounds=rounds, warmup=warmup, device=device)
    fp32_s, bf16_s = timing["median"]["fp32"], timing["median"]["bf16"]
    return {"case": name, "batch_size": batch_size, "overrides": " ".join(overrides),
            "fp32_step_s": round(fp32_s, 4), "bf16_step_s": round(bf16_s, 4),
            "bf16_speedup": round(timing["ratio_to_first"]["bf16"], 3),  # median over rounds of fp32 time / bf16 time
            "faster": "bf16" if bf16_s < fp32_s else "fp32",
            "first_loss_fp32": first_loss["fp32"], "first_loss_bf16": first_loss["bf16"],
            "loss_relative_difference": abs(first_loss["bf16"] - first_loss["fp32"]) / abs(first_loss["fp32"]),
            "rounds": rounds, "times_fp32": timing["times"]["fp32"], "times_bf16": timing["times"]["bf16"]}


def markdown(rows: list[dict], machine: dict, device: torch.device) -> str:
    lines = [f"# fp32 vs bf16 autocast, whole training step ({machine['gpu'] or machine['cpu']})", "",
             f"CPU flags: {machine['cpu_flags'] or 'none of note'}; native bf16: {machine['cpu_native_bf16']}; "
             f"threads {machine['threads']}; load (1 min) {machine['load_1min']} at the start; torch {machine['torch']}; "
             f"commit {machine['commit']}.", "",
             f"`trainer.precision=auto` here: **{str(compute_dtype(device, 'auto')).replace('torch.', '')}** "
             f"({auto_reason(device)}).", "",
             "| case | batch | fp32 s/step | bf16 s/step | fp32 / bf16 | faster | first-step loss, relative difference |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['batch_size']} | {r['fp32_step_s']:.3f} | {r['bf16_step_s']:.3f} | "
                     f"{r['bf16_speedup']:.2f} | {r['faster']} | {r['loss_relative_difference']:.1e} |")
    lines += ["", "Median of alternating rounds (fp32 / bf16 is the median of the per-round ratios); "
              "`python -m benchmarks.run precision` re-measures on any machine."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=None,
                        help=f"default: {' '.join(CPU_CASES)} on a CPU, every case on a GPU")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default=None, help="file name under results/precision/ (default: the machine)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS / "precision")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cases = args.cases or (list(CASES) if device.type == "cuda" else list(CPU_CASES))
    machine = machine_record(device)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in cases:
            rows.append(measure_case(name, device, args.rounds, args.warmup, Path(folder)))
            print(f"{name}: fp32 {rows[-1]['fp32_step_s']:.3f} s, bf16 {rows[-1]['bf16_step_s']:.3f} s "
                  f"(fp32/bf16 {rows[-1]['bf16_speedup']:.2f})", flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.name or machine_slug(device)
    (args.out_dir / f"{stem}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    (args.out_dir / f"{stem}.md").write_text(markdown(rows, machine, device))
    print(markdown(rows, machine, device))


if __name__ == "__main__":
    main()
