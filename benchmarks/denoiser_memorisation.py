"""Can the generator alone memorise a few fixed latent sets? (issue 20: "bug or compute")

The UNITE run on 64 QM9 molecules (experiment=qm9_memorise) reconstructs them but generates none of them.
This benchmark takes the tokenizer out: 64 fixed sets of molecule-shaped latents (one token per atom, 8
channels, 10-25 tokens, LayerNorm'd like the GE's output, drawn around five "element" centres), and trains
only the GE's denoise pass on them with the recipes' own code (LatentRecipe.draw, generative_loss,
sample_latents: the same timesteps, K draws, velocity loss, clamp and Euler sampler). Then it samples and
matches every generated set to the training sets of its size (best token assignment, Hungarian).

    python -m benchmarks.denoiser_memorisation --steps 1600 --grad-clip 3.0 --out benchmarks/results/denoiser_memorisation

If the generator machinery were wrong, no setting would memorise; if it is right, the match rate says how
many steps x batch the denoiser needs, which is compared with what the joint run gave it.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from scipy.optimize import linear_sum_assignment

from core.generative_encoder import GenerativeEncoder
from core.lr_schedule import warmup_cosine
from core.modality import LatentLayout
from core.recipes.base import LatentRecipe


def molecule_like_latent_sets(count: int, channels: int, sizes: tuple[int, int], seed: int) -> list[torch.Tensor]:
    """`count` sets of [n, C] tokens: five shared centres (elements) plus per-token spread, LayerNorm'd."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(5, channels, generator=g)
    sets = []
    for _ in range(count):
        n = int(torch.randint(sizes[0], sizes[1] + 1, (1,), generator=g))
        kinds = torch.multinomial(torch.tensor([0.5, 0.3, 0.1, 0.08, 0.02]), n, replacement=True, generator=g)
        kinds = kinds.sort(descending=True).values  # QM9's files list heavy atoms first, hydrogens last
        tokens = centres[kinds] + 0.6 * torch.randn(n, channels, generator=g)
        sets.append(nn.functional.layer_norm(tokens, (channels,)))
    return sets


def pad(sets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(s.shape[0] for s in sets)
    z = torch.zeros(len(sets), n, sets[0].shape[1])
    mask = torch.zeros(len(sets), n, dtype=torch.bool)
    for i, s in enumerate(sets):
        z[i, :s.shape[0]], mask[i, :s.shape[0]] = s, True
    return z, mask


def index_slots(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Sinusoidal embedding [B, N, width] of each token's index in its set (ADiT's denoiser input)."""
    index = torch.arange(mask.shape[1], dtype=torch.float32)
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(width // 2) / (width // 2))
    angles = index[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], -1)[None].expand(mask.shape[0], -1, -1)


class SizeLayouts:
    """generation_layout of the training sets' size histogram (what AtomCountPrior does for molecules)."""

    def __init__(self, sizes: list[int], slot_width: int | None):
        self.sizes = torch.tensor(sizes)
        self.slot_width = slot_width

    def layout(self, mask: torch.Tensor) -> LatentLayout:
        slots = None if self.slot_width is None else index_slots(mask, self.slot_width)
        return LatentLayout(mask=mask, slots=slots)

    def generation_layout(self, num_samples: int, device, generator=None) -> LatentLayout:
        counts = self.sizes[torch.randint(len(self.sizes), (num_samples,), generator=generator)].to(device)
        return self.layout(torch.arange(int(counts.max()), device=device)[None] < counts[:, None])


class FixedLatentGenerator(LatentRecipe):
    """Only the generator of a recipe, trained on given latents (no tokenizer, no decoder)."""

    STAGES = {"generator": ("encoder",)}

    def __init__(self, encoder: GenerativeEncoder, sizes: list[int], index_slots: bool, **flow):
        super().__init__(None, decoder_noise="none", decoder_noise_probability=0.0, decoder_noise_t_min=0.0,
                         decoder_noise_sigma=0.0, stage_fractions={"generator": 1.0}, **flow)
        self.encoder = encoder
        self.embedder = SizeLayouts(sizes, encoder.width if index_slots else None)

    @property
    def denoiser(self) -> GenerativeEncoder:
        return self.encoder

    @property
    def tokenize_t_max(self) -> float:
        return self.encoder.tokenize_t_max

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        draws = self.draw(mask, z.dtype)
        return self.generative_loss(z, None, self.embedder.layout(mask), draws)


def set_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """RMS per channel between two same-size token sets under their best one-to-one assignment."""
    cost = torch.cdist(a.double(), b.double()) ** 2
    rows, cols = linear_sum_assignment(cost.numpy())
    return math.sqrt(float(cost[rows, cols].sum()) / a.numel())


def match_report(generated: torch.Tensor, mask: torch.Tensor, sets: list[torch.Tensor], threshold: float) -> dict:
    by_size: dict[int, list[int]] = {}
    for index, s in enumerate(sets):
        by_size.setdefault(s.shape[0], []).append(index)
    nearest, hit = [], set()
    for row, row_mask in zip(generated, mask):
        n = int(row_mask.sum())
        candidates = by_size.get(n, [])
        if not candidates:
            nearest.append(float("inf"))
            continue
        d = [set_distance(row[:n], sets[i]) for i in candidates]
        nearest.append(min(d))
        if min(d) < threshold:
            hit.add(candidates[int(np.argmin(d))])
    nearest = np.array(nearest)
    same_size = [set_distance(sets[i], sets[j]) for idx in by_size.values() for i in idx for j in idx if i < j]
    return {"matched_fraction": float((nearest < threshold).mean()), "training_sets_covered": len(hit) / len(sets),
            "nearest_rms_median": float(np.median(nearest)),
            "training_pair_rms_median": float(np.median(same_size)) if same_size else None}


def run(args) -> dict:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    sets = molecule_like_latent_sets(args.sets, args.channels, (10, 25), args.seed)
    z_all, mask_all = pad(sets)
    encoder = GenerativeEncoder(depth=args.depth, width=args.width, heads=4, mlp_ratio=4.0, qk_norm=True,
                                latent_channels=args.channels, num_classes=0, class_dropout=0.1,
                                in_context_tokens=0, in_context_start=0, rope_axes=0, tokenize_t_max=0.01,
                                latent_norm_affine=True, final_layer_init_std=0.0, gradient_checkpointing=False,
                                block_norm=False, norm_scale=False, time_embedding="sinusoidal",
                                rope_positions="grid")
    beta = args.timesteps == "beta"
    recipe = FixedLatentGenerator(encoder, [s.shape[0] for s in sets], args.index_slots, flow_draws_per_sample=3,
                                  flow_chunk_size=4, gen_loss_form="velocity", gen_loss_over_draws="sum",
                                  gen_loss_weighting=args.loss_weighting, timestep_distribution=args.timesteps,
                                  timestep_shift=1.0 if beta else 0.5, logit_mean=0.0, logit_std=1.0,
                                  beta_alpha=2.0, min_remaining_time=0.05, self_conditioning=args.self_conditioning,
                                  x_prediction_skip=args.x_prediction_skip)
    recipe.attach_denoiser_inputs()
    optimizer = torch.optim.AdamW(recipe.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0)
    log, started = [], time.process_time()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warmup_cosine(step, 100, args.steps, 0.5)
        rows = torch.randint(len(sets), (args.batch,))
        mask = mask_all[rows]
        width = int(mask.sum(1).max())
        loss = recipe(z_all[rows, :width], mask[:, :width])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(recipe.parameters(), args.grad_clip if args.grad_clip > 0 else math.inf)
        optimizer.step()
        if (step + 1) % args.log_every == 0:
            log.append({"step": step + 1, "gen_loss": float(loss.detach()), "grad_norm": float(norm)})
            print(log[-1], flush=True)
    recipe.eval()
    z, layout = recipe.sample_latents(args.samples, None, solver="euler", num_steps=50, shift=None,
                                      guidance_scale=1.0, guidance_interval=(0.0, 1.0), rtol=1e-5, atol=1e-5,
                                      device=torch.device("cpu"))
    report = match_report(z, layout.mask, sets, args.threshold)
    return {"settings": vars(args), "cpu": platform.processor() or platform.machine(),
            "process_seconds": time.process_time() - started, "log": log, **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=64)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--grad-clip", type=float, default=3.0, help="0 = no clipping")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--threshold", type=float, default=0.1, help="RMS per channel below which a set matches")
    parser.add_argument("--index-slots", action="store_true",
                        help="add a sinusoidal embedding of each token's index to the latent inputs (ADiT)")
    parser.add_argument("--timesteps", default="logit_normal", choices=["logit_normal", "beta"])
    parser.add_argument("--loss-weighting", default="none", choices=["none", "truncated_snr"])
    parser.add_argument("--self-conditioning", type=float, default=0.0)
    parser.add_argument("--x-prediction-skip", default="none", choices=["none", "edm"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    slots = "_index_slots" if args.index_slots else ""
    aids = "".join([f"_{args.timesteps}" if args.timesteps != "logit_normal" else "",
                    f"_{args.loss_weighting}" if args.loss_weighting != "none" else "",
                    f"_sc{args.self_conditioning:g}" if args.self_conditioning else ""])
    name = f"steps{args.steps}_clip{args.grad_clip:g}_lr{args.lr:g}{slots}{aids}_seed{args.seed}.json"
    (args.out / name).write_text(json.dumps(result, indent=2, default=str))
    print({k: result[k] for k in ("matched_fraction", "training_sets_covered", "nearest_rms_median",
                                  "training_pair_rms_median", "process_seconds")})


if __name__ == "__main__":
    main()
