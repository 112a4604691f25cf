"""Each fast path of a UNITE step against the plain eager path it replaces, measured in one process.

    python -m benchmarks.run hot_paths [--threads 1] [--rounds 9] [--paths muon_ns fused_adamw ...] [--profile]
                                       [override ...]

Overrides are Hydra overrides on top of the side-by-side model (benchmarks/official_parity_speed.SIZES:
the official options at GE 4 x 256, ViT-MAE decoder 4 x 256, 32 px, patch 4, batch 16, K = 3); molecule
paths use `modality=molecule` (QM9, the default molecule model). For each path both variants start from
the same weights; rounds alternate them; the row gives medians, the ratio plain / fast (median over
rounds), and the loss difference of the two variants on one fixed batch and draws (their equivalence).

The plain variants live here (`plain_path`), not in the model code: they put back, for the duration of a
call, what the code did before each change.
  muon_ns      torch.optim.Muon (Newton–Schulz in bf16, one matrix at a time) vs ours (trainer.muon_ns_dtype:
               auto = fp32 without native bf16, matrices of one shape batched); full Muon + AdamW steps
  fused_adamw  torch's default AdamW loop vs the fused kernel; full AdamW steps
  sdpa_mask    an all-True key mask on every attention call (as before) vs no mask without padding; fwd+bwd
  swiglu       gate/value as `.chunk` views of one product vs two products on the weight's halves; fwd+bwd
  rope_tables  cos/sin tables for every batch row vs one row broadcast; fwd+bwd
  modules      the three above on the changed module alone (fwd+bwd at the denoise pass's shapes), where a
               local speed-up is not lost in the whole step's noise
  autocast     float32 vs bf16 autocast (what trainer.precision=auto picks here is in the row); fwd+bwd
  compile      eager vs torch.compile of every transformer block (trainer.compile); fwd+bwd
  all          everything plain vs everything fast; full steps with Muon + AdamW (the official optimiser)
  sampler      the old generate() (layout and labels rebuilt every step) vs the current one; 16 images,
               20 Euler steps, CFG 2.0 (batched: one forward of 2B per step)
  packing      molecules: padded batches vs trainer.packing=tokens and =block_diagonal (core/packing.py)
  inception    FID's Inception: the TorchScript file as shipped vs TFInceptionV3 (batch norms folded,
               channels-last; modalities/image/inception.py); 25 CIFAR-sized images resized to 299,
               difference = max |feature| (features reach ~5)
Writes benchmarks/results/hot_paths.{csv,md} and, with --profile, hot_paths_profile.{csv,png}: where
the time of a full step goes (op families) on the plain path and on the fast path.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import tempfile
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from benchmarks import official_parity as parity
from benchmarks.official_parity_speed import SIZES, our_overrides
from benchmarks.timing import RESULTS, OurTrainStep, alternate, build_train_step, machine_record, previous_rows
from core.build import build_modality, build_recipe
from core.layers import SwiGLU
from core.precision import compute_dtype
from core.rope import RotaryEmbedding

PATHS = ("muon_ns", "fused_adamw", "sdpa_mask", "swiglu", "rope_tables", "modules", "autocast", "compile", "all",
         "sampler", "packing", "inception")
PLAIN_CHANGES = ("muon_ns", "fused_adamw", "sdpa_mask", "swiglu", "rope_tables")


# ---------------------------------------------------------------------------------- the plain paths
def chunked_swiglu(self: SwiGLU, x: torch.Tensor) -> torch.Tensor:
    """SwiGLU as it was: gate and value as strided `.chunk` views of one product."""
    gate, value = self.gate_and_value(x).chunk(2, dim=-1)
    return self.out(F.silu(gate) * value)


_SHARED_ROW_ROTARY = RotaryEmbedding.forward


def per_row_rotary(self: RotaryEmbedding, coords: torch.Tensor):
    """Tables for every batch row (an expanded coordinate tensor is materialised first)."""
    return _SHARED_ROW_ROTARY(self, coords.contiguous())


def with_padding_flags(embedder_forward):
    """An embedder forward whose observation and layout say 'padded', so every attention gets a mask."""
    def forward(self, batch):
        observation = embedder_forward(self, batch)
        layout = dataclasses.replace(observation.layout, padded=True)
        return dataclasses.replace(observation, layout=layout, padded=True)
    return forward


def torch_muon(params, *, ns_dtype: str = "auto", **kwargs):
    """torch.optim.Muon itself (bf16 Newton–Schulz, one matrix at a time); ns_dtype is ignored."""
    return torch.optim.Muon(params, **kwargs)


@contextlib.contextmanager
def plain_path(changes, embedder_class=None):
    """Within the block, the named fast paths are replaced by what the code did before them."""
    with contextlib.ExitStack() as stack:
        if "swiglu" in changes:
            stack.enter_context(mock.patch.object(SwiGLU, "forward", chunked_swiglu))
        if "rope_tables" in changes:
            stack.enter_context(mock.patch.object(RotaryEmbedding, "forward", per_row_rotary))
        if "sdpa_mask" in changes and embedder_class is not None:
            stack.enter_context(mock.patch.object(embedder_class, "forward",
                                                  with_padding_flags(embedder_class.forward)))
        if "muon_ns" in changes:
            stack.enter_context(mock.patch("core.optim.Muon", torch_muon))
        yield


# ---------------------------------------------------------------------------------- building steps
def build_step(cfg, optimizer_name: str, changes=(), precision: str | None = None, compiled: bool = False,
               seed: int = 0) -> OurTrainStep:
    """A step as the trainer builds it, with the plain optimiser pieces where `changes` asks."""
    with plain_path([c for c in changes if c == "muon_ns"]):
        return build_train_step(cfg, optimizer_name, "fused_adamw" not in changes, precision, compiled, seed)


def image_batch(sizes: dict):
    from modalities.image.datasets import ImageBatch
    g = torch.Generator().manual_seed(0)
    images = torch.rand(sizes["batch"], 3, sizes["image_size"], sizes["image_size"], generator=g) * 2 - 1
    return ImageBatch(images, torch.randint(0, sizes["num_classes"], (sizes["batch"],), generator=g))


def fixed_loss(step: OurTrainStep, batch, batch_size: int) -> float:
    """The loss of `batch` with draws from noise streams of step 0 (the same numbers for both variants)."""
    from core.noise_streams import global_positions, stream_seeds
    from core.precision import autocast_for
    device = next(step.recipe.parameters()).device
    with torch.no_grad(), autocast_for(device, step.precision):
        loss, _ = step.recipe(batch, stream_seeds(step.seed, 0, global_positions(1, 0, 0, batch_size)))
    return float(loss)


def compare(plain, fast, plain_changes, embedder_class, batch, batch_size: int, full_step: bool, rounds: int,
            warmup: int) -> dict:
    """Alternate plain and fast; returns medians, the ratio plain / fast, and their loss difference."""
    def call(step, changes):
        def run():
            with plain_path(changes, embedder_class):
                if full_step:
                    step(batch, batch_size)
                else:
                    step.optimizer.zero_grad(set_to_none=True)
                    step.forward_backward(batch, batch_size)
        return run
    with plain_path(plain_changes, embedder_class):
        plain_loss = fixed_loss(plain, batch, batch_size)
    difference = abs(plain_loss - fixed_loss(fast, batch, batch_size))
    result = alternate({"plain": call(plain, plain_changes), "fast": call(fast, ())}, rounds, warmup)
    row = {"plain_s": result["median"]["plain"], "fast_s": result["median"]["fast"],
           "plain_over_fast": result["ratio_to_first"]["fast"], "loss_difference": difference, "loss": plain_loss}
    if full_step and plain is not fast:  # both took the same steps on the same batch and draws
        with plain_path(plain_changes, embedder_class):
            plain_loss = fixed_loss(plain, batch, batch_size)
        after = fixed_loss(fast, batch, batch_size)
        row["note"] = (f"after {warmup + rounds} steps each: loss {plain_loss:.6f} (plain) vs {after:.6f} (fast), "
                       f"difference {abs(plain_loss - after):.1e}")
    return row


# ---------------------------------------------------------------------------------- the paths
def measure_path(path: str, cfg, rounds: int, warmup: int) -> dict:
    from modalities.image.embedder import PatchEmbedder
    batch, b = image_batch(SIZES), SIZES["batch"]
    if path == "muon_ns":
        plain, fast = build_step(cfg, "muon", ["muon_ns"]), build_step(cfg, "muon")
        return compare(plain, fast, [], None, batch, b, True, rounds, warmup)
    if path == "fused_adamw":
        plain, fast = build_step(cfg, "adamw", ["fused_adamw"]), build_step(cfg, "adamw")
        return compare(plain, fast, [], None, batch, b, True, rounds, warmup)
    if path in ("sdpa_mask", "swiglu", "rope_tables"):
        step = build_step(cfg, "adamw")
        return compare(step, step, [path], PatchEmbedder, batch, b, False, rounds, warmup)
    if path == "modules":
        return [{"path": f"{name} (module alone)", **measure_module(name, cfg, 10 * rounds, warmup)}
                for name in ("sdpa_mask", "swiglu", "rope_tables")]
    if path == "autocast":
        plain, fast = build_step(cfg, "adamw", precision="fp32"), build_step(cfg, "adamw", precision="bf16")
        row = compare(plain, fast, [], None, batch, b, False, rounds, warmup)
        row["note"] = f"trainer.precision=auto picks {compute_dtype(torch.device('cpu'), 'auto')} on this CPU"
        return row
    if path == "compile":
        plain, fast = build_step(cfg, "adamw"), build_step(cfg, "adamw", compiled=True)
        return compare(plain, fast, [], None, batch, b, False, rounds, warmup)
    if path == "all":
        plain, fast = build_step(cfg, "muon", PLAIN_CHANGES), build_step(cfg, "muon")
        return compare(plain, fast, PLAIN_CHANGES, PatchEmbedder, batch, b, True, rounds, warmup)
    if path == "sampler":
        return measure_sampler(cfg, rounds, warmup)
    if path == "packing":
        from benchmarks.molecule_packing import measure_packing
        return measure_packing(rounds, warmup)
    if path == "inception":
        return measure_inception(rounds, warmup)
    raise ValueError(path)


def measure_module(path: str, cfg, rounds: int, warmup: int) -> dict:
    """The changed module alone, forward + backward, at the shapes of the denoise pass of the hot-path model
    (K B rows of N_lat + in-context tokens): its local speed-up, which a whole step may hide in noise."""
    from core.layers import Attention
    torch.manual_seed(0)
    width, heads = cfg.model.width, cfg.model.heads
    rows = cfg.recipe.flow_draws_per_sample * SIZES["batch"]
    tokens = (SIZES["image_size"] // SIZES["patch_size"]) ** 2 + cfg.model.in_context_tokens
    x = torch.randn(rows, tokens, width, requires_grad=True)
    if path == "swiglu":
        module = SwiGLU(width, cfg.model.mlp_ratio)
        fast, plain = (lambda: module(x)), (lambda: chunked_swiglu(module, x))
    elif path == "sdpa_mask":
        module = Attention(width, heads, qk_norm=True)
        mask = torch.ones(rows, 1, 1, tokens, dtype=torch.bool)
        fast, plain = (lambda: module(x, None, None)), (lambda: module(x, mask, None))
    else:  # rope_tables: table construction and rotation of q and k, as one attention call does
        rope = RotaryEmbedding(width // heads, 1)
        coords = torch.arange(tokens, dtype=torch.float32).view(1, -1, 1).expand(rows, -1, 1)
        q = torch.randn(rows, heads, tokens, width // heads, requires_grad=True)
        from core.rope import apply_rotary

        def rotate(tables):
            return apply_rotary(q, *tables) + apply_rotary(q.flip(1), *tables)
        fast, plain = (lambda: rotate(rope(coords))), (lambda: rotate(per_row_rotary(rope, coords)))

    def fwd_bwd(function):
        def run():
            out = function()
            out.backward(torch.ones_like(out))
        return run
    result = alternate({"plain": fwd_bwd(plain), "fast": fwd_bwd(fast)}, rounds, warmup)
    with torch.no_grad():
        difference = float((plain() - fast()).abs().max())
    return {"plain_s": result["median"]["plain"], "fast_s": result["median"]["fast"],
            "plain_over_fast": result["ratio_to_first"]["fast"], "loss_difference": difference,
            "note": f"forward + backward on [{rows}, {tokens}, {width}]; difference = max |output|", "rounds": rounds}


def old_generate(recipe, num_samples: int, labels, num_steps: int, guidance_scale: float, device):
    """generate() as it was: the CFG batch's layout repeated and labels concatenated at every evaluation."""
    from core.samplers import broadcast_time, guidance_scale_at, integrate, velocity_field
    layout = recipe.embedder.generation_layout(num_samples, device, None)
    x0 = torch.randn(num_samples, layout.mask.shape[1], recipe.denoiser.latent_channels, device=device)
    null = recipe.denoiser.y_embedder.null_labels(num_samples, device)

    def guided(x, t):
        both = recipe.denoiser.denoise(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]),
                                       layout.repeat(2))
        conditional, unconditional = both.chunk(2)
        w = broadcast_time(guidance_scale_at(t, guidance_scale, (0.1, 1.0)), x)
        return unconditional + w * (conditional - unconditional)
    z = integrate(velocity_field(guided, recipe.min_remaining_time), x0, "euler", num_steps, recipe.timestep_shift,
                  1e-4, 1e-4)
    return recipe.decoder(z, layout)


def measure_sampler(cfg, rounds: int, warmup: int, num_samples: int = 16, num_steps: int = 20,
                    scale: float = 2.0) -> dict:
    torch.manual_seed(0)
    recipe = build_recipe(cfg, build_modality(cfg)).eval()
    with torch.no_grad():  # the zero-initialised outputs would make every sampler agree trivially
        for name, parameter in recipe.named_parameters():
            if "final_layer" in name or "adaLN" in name:
                parameter.normal_(std=0.05)
    device, labels = torch.device("cpu"), torch.arange(num_samples) % SIZES["num_classes"]

    @torch.no_grad()
    def old():
        torch.manual_seed(1)
        return old_generate(recipe, num_samples, labels, num_steps, scale, device)

    @torch.no_grad()
    def new():
        torch.manual_seed(1)
        return recipe.generate(num_samples, labels, solver="euler", num_steps=num_steps, shift=None,
                               guidance_scale=scale, guidance_interval=(0.1, 1.0), rtol=1e-4, atol=1e-4,
                               device=device)[0]
    difference = float((old() - new()).abs().max())
    result = alternate({"plain": old, "fast": new}, rounds, warmup)
    return {"plain_s": result["median"]["plain"], "fast_s": result["median"]["fast"],
            "plain_over_fast": result["ratio_to_first"]["fast"], "loss_difference": difference,
            "note": f"{num_samples} images, {num_steps} Euler steps, CFG {scale}; difference = max |image|"}


def measure_inception(rounds: int, warmup: int, num_images: int = 25) -> dict:
    from modalities.image.fid import InceptionFeatures, inception_file, inception_input
    fast = InceptionFeatures().network
    scripted = torch.jit.load(str(inception_file(None)), map_location="cpu").eval()
    images = torch.randint(0, 256, (num_images, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = inception_input(images)

    @torch.no_grad()
    def plain():
        return scripted(inputs)

    @torch.no_grad()
    def folded():
        return fast(inputs)
    reference = plain()
    difference = float((reference - folded()).abs().max())
    result = alternate({"plain": plain, "fast": folded}, rounds, warmup)
    return {"plain_s": result["median"]["plain"], "fast_s": result["median"]["fast"],
            "plain_over_fast": result["ratio_to_first"]["fast"], "loss_difference": difference,
            "note": f"{num_images} images 299 px, seconds per batch; difference = max |feature| (features up to "
                    f"{float(reference.abs().max()):.1f})"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--profile", action="store_true", help="also profile a full step, plain and fast")
    parser.add_argument("--out", type=Path, default=RESULTS / "hot_paths")
    parser.add_argument("--append", action="store_true", help="add to the rows already in --out")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = previous_rows(args.out.with_suffix(".csv")) if args.append else []
    with tempfile.TemporaryDirectory() as folder:
        root = parity.class_folders(Path(folder), SIZES["num_classes"])
        cfg = parity.compose(our_overrides(SIZES) + [f"modality.data_root={root}", *args.overrides])
        for path in args.paths:
            measured = measure_path(path, cfg, args.rounds, args.warmup)
            for result in measured if isinstance(measured, list) else [measured]:
                row = {"path": path, "rounds": args.rounds, **result, **machine_record()}
                rows.append(row)
                print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()
                       if k not in ("cpu_flags", "python")}, flush=True)
        if args.profile:
            from benchmarks.step_profile import profile_plain_and_fast
            profile_plain_and_fast(cfg, args.out.with_name(args.out.name + "_profile"))
    if rows:
        write_table(rows, args.out)


def write_table(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| path | threads | plain s | fast s | plain / fast | loss difference | load (1 min) | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['path']} | {r['threads']} | {r['plain_s']:.4f} | {r['fast_s']:.4f} | {r['plain_over_fast']:.2f} | "
                     f"{r['loss_difference']:.1e} | {r['load_1min']} | {r.get('note', '')} |")
    first = rows[0]
    lines += ["", f"{first['cpu']} ({first['cpu_flags']}; native bf16: {first['cpu_native_bf16']}), torch "
              f"{first['torch']}, commit {first['commit']}, {first['rounds']} "
              "alternating rounds per row."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
