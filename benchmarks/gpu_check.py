"""Every preset's smoke run in bf16 and in fp32 on one device: train a few steps, checkpoint, evaluate and
generate, each case in its own folder, one failing case never hiding the others.

    python -m benchmarks.gpu_check --device cuda --out OUT [--tiny] [--cases ...]

Made for a borrowed GPU machine (benchmarks/gpu_check.sh runs it, then the GPU speed suite): torch there,
Hydra from .device_data/ (benchmarks/device_carry.sh), no RDKit, OpenBabel or fcd-torch, so molecule
evaluation is the in-memory part (no reference set, no FCD). `--tiny` shrinks every preset (one block,
width 64, batch 4, 8 px stand-in images) so that the same cases run on a CPU in a test
(tests/benchmarks/test_gpu_check.py): a dtype or device break that a CPU can show never reaches the GPU.
Writes OUT/gpu_check.json and OUT/gpu_check.md (case, precision, passed, seconds, last loss, error).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
import traceback
from pathlib import Path

import torch

MOLECULE_EVALUATION = ["modality.evaluation.reference=null", "modality.evaluation.fcd=false",
                       "modality.evaluation.workers=0"]
IMAGE_STAND_IN = ["modality.dataset=image_folder", "modality.evaluation.fid=false"]
STAGED = ["recipe.standardization_samples=16"]
CASES = {  # name -> core.train overrides of the preset
    "molecule_default": ["modality=molecule", *MOLECULE_EVALUATION],
    "molecule_coordinates": ["modality=molecule", "modality/embedder=coordinates", *MOLECULE_EVALUATION],
    "molecule_packed": ["modality=molecule", "trainer.packing=tokens", *MOLECULE_EVALUATION],
    "molecule_two_stage": ["modality=molecule", "recipe=two_stage", *STAGED, *MOLECULE_EVALUATION],
    "molecule_ldetok": ["modality=molecule", "recipe=ldetok", *STAGED, *MOLECULE_EVALUATION],
    "qm9_unite_s": ["experiment=qm9_unite_s", "trainer.num_workers=0", *MOLECULE_EVALUATION],
    "image_default": ["modality=image", *IMAGE_STAND_IN],
    "image_ldetok": ["modality=image", "recipe=ldetok", *STAGED, *IMAGE_STAND_IN],
    "imagenet256_unite_b": ["experiment=imagenet256_unite_b", *IMAGE_STAND_IN],
    "image_aligntok": ["modality=image", "recipe=aligntok", "recipe.foundation.weights=random", *STAGED,
                       *IMAGE_STAND_IN],
    "molecule_compiled": ["modality=molecule", "trainer.compile=true", "sampler.compile=true", *MOLECULE_EVALUATION],
}
NOT_TINY = ("molecule_compiled",)  # compiling on a CPU takes minutes: a GPU-only case
SHORT_RUN = ["trainer.max_steps=4", "trainer.log_every=1", "trainer.checkpoint_every=2", "trainer.eval_batches=1",
             "trainer.eval_batch_size=8", "sampler.num_samples=8", "sampler.batch_size=8", "sampler.num_steps=4"]
TINY = {
    "common": ["model.depth=1", "model.width=64", "model.heads=2", "modality.decoder.depth=1",
               "modality.decoder.width=64", "modality.decoder.heads=2", "trainer.batch_size=4",
               "trainer.eval_batch_size=4", "sampler.num_samples=4", "sampler.batch_size=4"],
    "molecule": ["modality.train_subset=32", "modality.eval_subset=8",
                 "modality.embedder.hidden_irreps=8x0e + 4x0o + 4x1o + 4x1e"],
    "image": ["modality.image_size=8", "modality.patch_size=4", "modality.train_subset=16", "modality.eval_subset=4"],
}


def case_overrides(name: str, tiny: bool) -> list[str]:
    overrides = CASES[name] + SHORT_RUN + (["trainer.batch_size=16"] if not tiny else [])
    if not tiny:
        return overrides
    kind = "image" if any(o.startswith(("modality=image", "experiment=imagenet")) for o in CASES[name]) else "molecule"
    extra = TINY["common"] + TINY[kind]
    if "modality/embedder=coordinates" in CASES[name]:
        extra = [o for o in extra if "hidden_irreps" not in o]
    if name == "imagenet256_unite_b":
        extra += ["modality.decoder.latent_width=64", "model.in_context_tokens=2", "model.in_context_start=0"]
    if name == "image_aligntok":
        extra += ["recipe.foundation.model_name=vit_tiny_patch16_224", "recipe.foundation.model_options.img_size=8",
                  "+recipe.foundation.model_options.patch_size=4", "+recipe.foundation.model_options.depth=1",
                  "trainer.max_steps=8", "recipe.standardization_samples=4"]
    if "recipe=two_stage" in CASES[name] or "recipe=ldetok" in CASES[name]:
        extra += ["recipe.standardization_samples=4"]
    return overrides + extra


def run_case(name: str, precision: str, device: str, tiny: bool, out: Path) -> dict:
    from benchmarks.speed import train_config
    from core.train import train
    folder = out / f"{name}-{precision}"
    record = {"case": name, "precision": precision, "device": device, "passed": False}
    start = time.perf_counter()
    try:
        cfg = train_config(case_overrides(name, tiny), folder,
                           [f"trainer.precision={precision}", f"sampler.precision={precision}", f"trainer.device={device}",
                            f"trainer.out_dir={folder / 'run'}"], full_batch=True)
        if cfg.modality.name == "image":  # the stand-in folder has a train split only: evaluate on a copy
            for split in ("test", "val"):
                if not (Path(cfg.modality.data_root) / split).exists():
                    shutil.copytree(Path(cfg.modality.data_root) / "train", Path(cfg.modality.data_root) / split)
        summary = train(cfg)
        losses = [json.loads(line).get("loss") for line in (folder / "run" / "metrics.jsonl").open()]
        losses = [loss for loss in losses if loss is not None]
        generated = summary.get("generation/samples", summary.get("generation/images_written"))
        record.update(steps=summary["steps"], last_loss=losses[-1], generated=generated,
                      passed=summary["steps"] == cfg.trainer.max_steps and all(map(math.isfinite, losses))
                      and bool(generated))
    except Exception as error:  # recorded, and the next case runs
        record["error"] = f"{type(error).__name__}: {error}"[:2000]
        record["traceback"] = traceback.format_exc()[-4000:]
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


def markdown(records: list[dict], machine: dict) -> str:
    lines = [f"# Preset smoke runs, bf16 and fp32 ({machine['gpu'] or machine['cpu']}, torch {machine['torch']})", "",
             f"{sum(r['passed'] for r in records)} of {len(records)} passed. Commit {machine['commit']}.", "",
             "| case | precision | passed | s | steps | last loss | generated | error |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        loss = f"{r['last_loss']:.4f}" if "last_loss" in r else ""
        error = r.get("error", "").replace("|", "/").replace("\n", " ")[:160]
        lines.append(f"| {r['case']} | {r['precision']} | {'yes' if r['passed'] else 'NO'} | {r['seconds']} | "
                     f"{r.get('steps', '')} | {loss} | {r.get('generated', '')} | {error} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="shrunk presets, for a CPU test")
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=None)
    parser.add_argument("--precisions", nargs="+", choices=["bf16", "fp32"], default=["bf16", "fp32"])
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible (use --device cpu --tiny on a CPU)")
    from benchmarks.timing import machine_record
    cases = args.cases or [c for c in CASES if not (args.tiny and c in NOT_TINY)]
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for name in cases:
        for precision in args.precisions:
            records.append(run_case(name, precision, args.device, args.tiny, args.out))
            r = records[-1]
            print(f"{name} {precision}: {'passed' if r['passed'] else 'FAILED ' + r.get('error', '')[:300]} "
                  f"({r['seconds']} s)", flush=True)
            (args.out / "gpu_check.json").write_text(json.dumps(records, indent=2))  # kept if the limit cuts us off
    machine = machine_record(torch.device(args.device))
    (args.out / "gpu_check.json").write_text(json.dumps({"machine": machine, "records": records}, indent=2))
    (args.out / "gpu_check.md").write_text(markdown(records, machine))
    return 0 if all(r["passed"] for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
