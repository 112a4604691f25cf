"""Where the time of one full UNITE step goes, on the plain path and on the fast path.

    python -m benchmarks.run step_profile [--threads 1] [--rounds 3] [override ...]    (or hot_paths --profile)

The step is hot_paths' side-by-side model (official options, GE 4 x 256, batch 16, K = 3) with Muon + AdamW;
"plain" puts back every change hot_paths measures (torch's bf16 Newton-Schulz, loop AdamW, all-True masks,
chunked SwiGLU, per-row RoPE tables), "fast" is the code as it is. Two views, both medians over alternating steps: phases (forward, backward, clip + optimisers, EMA) timed
with a clock, and op families (matrix products, attention, elementwise, copies, norms and reductions,
rest) from torch.profiler's self CPU time over the same steps.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.timing import RESULTS, machine_record

FAMILIES = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::matmul",
                        "aten::linear", "aten::_weight_int8pack_mm"),
    "attention": ("aten::_scaled_dot_product", "aten::_flash_attention", "aten::_efficient_attention"),
    "copies and concatenation": ("aten::copy_", "aten::cat", "aten::clone", "aten::stack", "aten::fill_",
                                 "aten::zero_", "aten::index", "aten::scatter", "aten::_to_copy", "aten::contiguous",
                                 "aten::masked_fill", "aten::where"),
    "norms and reductions": ("aten::sum", "aten::mean", "aten::norm", "aten::linalg_vector_norm", "layer_norm",
                             "rms_norm", "aten::amax", "aten::max", "aten::_foreach_norm"),
    "optimizer kernels": ("aten::_fused_adamw", "aten::_foreach", "aten::lerp", "aten::addcdiv", "aten::addcmul"),
    "elementwise": ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::silu", "aten::gelu", "aten::neg",
                    "aten::pow", "aten::rsqrt", "aten::sqrt", "aten::exp", "aten::sin", "aten::cos", "aten::sigmoid",
                    "aten::tanh", "aten::clamp", "aten::abs", "aten::reciprocal", "aten::log", "aten::square"),
}


def family(name: str) -> str:
    for label, prefixes in FAMILIES.items():
        if any(name.startswith(p) or p in name for p in prefixes):
            return label
    return "rest"


def phased_step(step, batch, batch_size: int) -> dict[str, float]:
    """One full step of an OurTrainStep, timed per phase (seconds)."""
    from core.precision import autocast_for
    times, clock = {}, time.perf_counter()
    device = next(step.recipe.parameters()).device
    with autocast_for(device, step.precision):
        loss, _ = step.recipe(batch, step._seeds(step.step_index, batch_size))
    times["forward"], clock = time.perf_counter() - clock, time.perf_counter()
    loss.backward()
    times["backward"], clock = time.perf_counter() - clock, time.perf_counter()
    torch.nn.utils.clip_grad_norm_(step.recipe.parameters(), step.grad_clip)
    step.optimizer.step()
    step.optimizer.zero_grad(set_to_none=True)
    times["clip + optimizers"], clock = time.perf_counter() - clock, time.perf_counter()
    step.ema.update(step.recipe)
    times["EMA"] = time.perf_counter() - clock
    step.step_index += 1
    return times


def profile_plain_and_fast(cfg, out: Path, rounds: int = 3) -> list[dict]:
    from benchmarks.hot_paths import PLAIN_CHANGES, build_step, image_batch, plain_path
    from benchmarks.official_parity_speed import SIZES
    from modalities.image.embedder import PatchEmbedder
    batch, b = image_batch(SIZES), SIZES["batch"]
    variants = {"plain": (build_step(cfg, "muon", PLAIN_CHANGES), PLAIN_CHANGES),
                "fast": (build_step(cfg, "muon"), ())}
    phases = {name: [] for name in variants}
    families = {name: {} for name in variants}
    for index in range(rounds + 1):
        for name, (step, changes) in variants.items():
            with plain_path(changes, PatchEmbedder):
                if index == 0:  # warm-up
                    phased_step(step, batch, b)
                    continue
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    phases[name].append(phased_step(step, batch, b))
            for event in prof.key_averages():
                label = family(event.key)
                families[name][label] = families[name].get(label, 0.0) + event.self_cpu_time_total / 1e6 / rounds
    rows = []
    record = machine_record()
    for name in variants:
        for phase in phases[name][0]:
            rows.append({"variant": name, "view": "phase", "part": phase,
                         "seconds": statistics.median(p[phase] for p in phases[name]), **record})
        for label, seconds in sorted(families[name].items(), key=lambda kv: -kv[1]):
            rows.append({"variant": name, "view": "op family", "part": label, "seconds": seconds, **record})
    write(rows, out)
    return rows


def write(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for axis, view in zip(axes, ("phase", "op family")):
        parts = list(dict.fromkeys(r["part"] for r in rows if r["view"] == view))
        for position, variant in enumerate(("plain", "fast")):
            bottom = 0.0
            for index, part in enumerate(parts):
                value = next((r["seconds"] for r in rows if r["view"] == view and r["variant"] == variant
                              and r["part"] == part), 0.0)
                axis.bar(position, value, bottom=bottom, color=f"C{index}", label=part if position == 0 else None)
                bottom += value
        axis.set_xticks([0, 1], ["plain", "fast"])
        axis.set_ylabel("seconds per step" if view == "phase" else "profiled self CPU seconds per step")
        axis.set_title(f"{view}s", fontsize=9)
        axis.legend(fontsize=7)
    first = rows[0]
    figure.suptitle(f"one full step (Muon + AdamW), {first['cpu']}, {first['threads']} thread(s), "
                    f"load {first['load_1min']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(figure)
    write_markdown(rows, out.with_suffix(".md"))


def write_markdown(rows: list[dict], path: Path) -> None:
    """One table per view: seconds per step plain and fast, and each part's share of its step."""
    lines = []
    for view in ("phase", "op family"):
        parts = list(dict.fromkeys(r["part"] for r in rows if r["view"] == view))
        seconds = {(r["variant"], r["part"]): r["seconds"] for r in rows if r["view"] == view}
        totals = {v: sum(seconds.get((v, p), 0.0) for p in parts) for v in ("plain", "fast")}
        lines += [f"| {view} | plain s | plain share | fast s | fast share |", "|---|---|---|---|---|"]
        for part in parts + ["total"]:
            plain = totals["plain"] if part == "total" else seconds.get(("plain", part), 0.0)
            fast = totals["fast"] if part == "total" else seconds.get(("fast", part), 0.0)
            lines.append(f"| {part} | {plain:.3f} | {100 * plain / totals['plain']:.0f} % | {fast:.3f} | "
                         f"{100 * fast / totals['fast']:.0f} % |")
        lines.append("")
    first = rows[0]
    lines.append(f"{first['cpu']} ({first['cpu_flags']}; native bf16: {first['cpu_native_bf16']}), torch "
                 f"{first['torch']}, {first['threads']} thread(s), load (1 min) {first['load_1min']}, commit "
                 f"{first['commit']}. Phases: medians of clocked steps; op families: torch.profiler self CPU "
                 "time, mean per step (the profiler's own overhead included).")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    from benchmarks import official_parity as parity
    from benchmarks.official_parity_speed import SIZES, our_overrides
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "step_profile")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        root = parity.class_folders(Path(folder), SIZES["num_classes"])
        cfg = parity.compose(our_overrides(SIZES) + [f"modality.data_root={root}", *args.overrides])
        rows = profile_plain_and_fast(cfg, args.out, args.rounds)
    for row in rows:
        print(f"{row['variant']:5s} {row['view']:9s} {row['part']:26s} {row['seconds']:.3f} s")


if __name__ == "__main__":
    main()
