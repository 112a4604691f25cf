"""The official UNITE code against ours at the same config: forward+backward and full optimizer steps.

    PYTHONPATH=<dir with einops> python -m benchmarks.run official_parity_speed /path/to/UNITE-tokenization-generation \
        [--threads 1 2] [--rounds 7] [--setups fwd_bwd adamw muon default] [--compile]

The argument is a checkout of github.com/ShivamDuggal4/UNITE-tokenization-generation (never a dependency;
not run in CI); its modules are imported from there as benchmarks/official_parity.py does. Both codes build
the same tiny image model (SIZES: GE 4 x 256, ViT-MAE decoder 4 x 256 behind the official 32 -> 768 map,
32 px, patch 4, 64 latents x 32 channels, 8 in-context class tokens from block 2, batch 16, K = 3 flow
draws, L1 only) and run in float32 (on a CPU without native bf16 our trainer.precision=auto is fp32;
their autocast is CUDA-only). Their UNITE fixes a 256-px, 256-token layout in three places; here their own
patch-embedding and decoder classes are built at 32 px instead, and a hook hands their final layer the
64 latent positions (their `x[:, :256]` does it at 256 tokens): no line of theirs is changed or copied.

Setups (each step = what the training loop of each code does: zero grads, forward, backward, then for
full steps clip 3.0, optimizer(s), LR schedule, EMA):
  fwd_bwd  forward + backward only
  adamw    full step, AdamW on both (theirs fused, as their build_optimizer asks)
  muon     full step, Muon for 2-D weights + AdamW for the rest on both (the official split)
  default  full step, each code's default: theirs Muon + AdamW, ours trainer.optimizer=adamw
Rounds alternate official and ours in one process; figures are medians, the ratio is the median over
rounds of official / ours. The fwd_bwd row also carries the matrix-product floor (benchmarks/matmul_floor.py):
both codes' product GFLOP, our products timed alone, and official / floor, the highest forward+backward ratio
this machine allows any code with the same products in the same precision.
Writes benchmarks/results/official_parity_speed.{csv,md,png}.
"""
from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import torch

from benchmarks import official_parity as parity
from benchmarks.matmul_floor import (attention_seconds, floor_seconds, record_products, record_step,
                                     square_gemm_rate, total_gflop)
from benchmarks.timing import (RESULTS, OurTrainStep, alternate, build_train_step, machine_record,
                               previous_rows)

SIZES = {"depth": 4, "width": 256, "heads": 4, "latent_channels": 32, "in_context_tokens": 8, "in_context_start": 2,
         "decoder_depth": 4, "decoder_width": 256, "decoder_heads": 4, "decoder_mlp": 1024, "num_classes": 10,
         "image_size": 32, "patch_size": 4, "flow_draws": 3, "batch": 16}
LATENT_TOKENS = (SIZES["image_size"] // SIZES["patch_size"]) ** 2
LR, EMA_DECAY, CLIP = 1e-4, 0.9978, 3.0
SETUPS = ("fwd_bwd", "adamw", "muon", "default")


def our_overrides(sizes: dict) -> list[str]:
    return ["experiment=imagenet256_unite_b", f"model.depth={sizes['depth']}", f"model.width={sizes['width']}",
            f"model.heads={sizes['heads']}", f"model.latent_channels={sizes['latent_channels']}",
            f"model.in_context_tokens={sizes['in_context_tokens']}",
            f"model.in_context_start={sizes['in_context_start']}", f"modality.image_size={sizes['image_size']}",
            f"modality.patch_size={sizes['patch_size']}", f"modality.decoder.depth={sizes['decoder_depth']}",
            f"modality.decoder.width={sizes['decoder_width']}", f"modality.decoder.heads={sizes['decoder_heads']}",
            f"modality.decoder.mlp_ratio={sizes['decoder_mlp'] / sizes['decoder_width']}",
            f"recipe.flow_draws_per_sample={sizes['flow_draws']}", f"recipe.flow_chunk_size={sizes['flow_draws']}",
            "modality.evaluation.fid=false", f"trainer.lr={LR}", f"trainer.ema_decay={EMA_DECAY}",
            f"trainer.grad_clip={CLIP}", "trainer.out_dir=unused"]


# ---------------------------------------------------------------------------------- the official side
def official_model(unite_module, sizes: dict):
    """Their UNITE at `sizes`, with their patch embedding and decoder classes built at the image size."""
    latents = (sizes["image_size"] // sizes["patch_size"]) ** 2
    model = parity.build_official_unite(unite_module, sizes, latents, "Speed")
    model.patch_embed = unite_module.ViTMAEEmbeddings(image_size=sizes["image_size"], patch_size=sizes["patch_size"],
                                                      num_channels=3, hidden_size=sizes["width"])
    model.num_image_patches = model.patch_embed.num_patches
    model.decoder = unite_module.Decoder(unite_module.DecoderConfig(
        hidden_size=768, patch_size=sizes["patch_size"], image_size=sizes["image_size"],
        decoder_hidden_size=sizes["decoder_width"], decoder_num_hidden_layers=sizes["decoder_depth"],
        decoder_num_attention_heads=sizes["decoder_heads"], decoder_intermediate_size=sizes["decoder_mlp"]),
        num_patches=model.num_image_patches)
    # their encoder keeps x[:, :256] for the final layer (the 256 latents at 256 px); here: the first `latents`
    model.encoder.final_layer.register_forward_pre_hook(lambda module, args: (args[0][:, :latents], *args[1:]))
    return model


def official_optimizers(model, optim_module, kind: str) -> list:
    """Their build_optimizer / build_optimizer_muon with their split (get_learnable_params)."""
    training = {"optimizer": {"lr": LR, "betas": [0.9, 0.999], "weight_decay": 0.0, "muon_weight_decay": 0.0,
                              "muon_adjust_lr_fn": "match_rms_adamw", "type": "adamw"}}
    if kind == "adamw":
        return [optim_module.build_optimizer(model.get_learnable_params(), training)[0]]
    muon_cfg = {"optimizer": {**training["optimizer"], "type": "muon"}}
    return [optim_module.build_optimizer_muon(model.get_learnable_params(muon=True), muon_cfg)[0],
            optim_module.build_optimizer(model.get_learnable_params(non_muon=True), training)[0]]


class OfficialStep:
    """Their train_one_epoch's step: zero grads, forward, backward, clip, optimizers, schedulers, EMA."""

    def __init__(self, model, optimizers, images01, labels):
        import copy

        from utils.ema import update_ema
        self.model, self.optimizers, self.images01, self.labels = model, optimizers, images01, labels
        self.ema, self.update_ema = copy.deepcopy(model).eval().requires_grad_(False), update_ema
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0) for o in optimizers]

    def forward_backward(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        total, _ = self.model(self.images01, labels=self.labels)
        total.backward()

    def __call__(self) -> None:
        self.forward_backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        for optimizer in self.optimizers:
            optimizer.step()
        for scheduler in self.schedulers:
            scheduler.step()
        self.update_ema(self.ema, self.model, EMA_DECAY)


# ---------------------------------------------------------------------------------- our side
def our_step(cfg, optimizer_name: str, compiled: bool) -> OurTrainStep:
    step = build_train_step(cfg, optimizer_name, compiled=compiled)
    step.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0) for o in step.optimizer.optimizers]
    return step


def measure(setup: str, unite_module, optim_module, cfg, sizes: dict, rounds: int, warmup: int,
            with_compiled: bool) -> dict:
    from modalities.image.datasets import ImageBatch
    g = torch.Generator().manual_seed(0)
    images01 = torch.rand(sizes["batch"], 3, sizes["image_size"], sizes["image_size"], generator=g)
    labels = torch.randint(0, sizes["num_classes"], (sizes["batch"],), generator=g)
    batch = ImageBatch(2 * images01 - 1, labels)
    torch.manual_seed(0)
    model = official_model(unite_module, sizes).train()
    official = OfficialStep(model, official_optimizers(model, optim_module, "adamw" if setup == "adamw" else "muon"),
                            images01, labels)
    ours_optimizer = "muon" if setup == "muon" else "adamw"
    ours = our_step(cfg, ours_optimizer, False)

    def ours_fwd_bwd(step=ours):
        step.optimizer.zero_grad(set_to_none=True)
        step.forward_backward(batch, sizes["batch"])
    candidates = {"official": official.forward_backward if setup == "fwd_bwd" else official,
                  "ours": ours_fwd_bwd if setup == "fwd_bwd" else (lambda: ours(batch, sizes["batch"]))}
    if with_compiled:
        compiled = our_step(cfg, ours_optimizer, True)
        candidates["ours_compiled"] = ((lambda: ours_fwd_bwd(compiled)) if setup == "fwd_bwd"
                                       else (lambda: compiled(batch, sizes["batch"])))
    result = alternate(candidates, rounds, warmup)
    if setup == "fwd_bwd":
        result["floor"] = matmul_floor(official.forward_backward, ours_fwd_bwd, result["median"]["official"])
    result["official_optimizer"] = {"fwd_bwd": "-", "adamw": "AdamW (fused)"}.get(setup, "Muon + AdamW (fused)")
    result["ours_optimizer"] = "-" if setup == "fwd_bwd" else ("Muon + AdamW" if setup == "muon" else "AdamW")
    return result


def matmul_floor(official_fwd_bwd, ours_fwd_bwd, official_seconds: float) -> dict:
    """Both codes' matrix-product GFLOP per forward+backward and the floor of ours (benchmarks.matmul_floor):
    official / floor is the highest forward+backward ratio any code with these products reaches here."""
    ours, attention = record_step(ours_fwd_bwd)
    official_gflop = total_gflop(record_products(official_fwd_bwd))
    as_laid_out, best = floor_seconds(ours), floor_seconds(ours, best_layout=True)
    attention_s = attention_seconds(attention)
    return {"official_gflop": round(official_gflop, 3), "ours_gflop": round(as_laid_out["gflop"], 3),
            "floor_as_laid_out_s": as_laid_out["seconds"], "floor_best_layout_s": best["seconds"],
            "products_gflop_per_s": as_laid_out["gflop_per_s"], "square_gemm_gflop_per_s": square_gemm_rate(),
            "official_over_floor": official_seconds / best["seconds"], "attention_alone_s": attention_s,
            "official_over_floor_with_attention": official_seconds / (best["seconds"] + attention_s)}


def write_results(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| setup | threads | official s/step | ours s/step | official/ours | ours compiled s/step | "
             "official/ours compiled | load (1 min) |", "|---|---|---|---|---|---|---|---|"]

    def compiled(row: dict, key: str, form: str) -> str:
        return "-" if row.get(key) in (None, "") else format(row[key], form)
    for r in rows:
        lines.append(f"| {r['setup']} ({r['official_optimizer']} vs {r['ours_optimizer']}) | {r['threads']} | "
                     f"{r['official_s']:.3f} | {r['ours_s']:.3f} | {r['official_over_ours']:.2f} | "
                     f"{compiled(r, 'ours_compiled_s', '.3f')} | {compiled(r, 'official_over_ours_compiled', '.2f')} | "
                     f"{r['load_1min']} |")
    first = rows[0]
    lines += ["", f"{first['cpu']} ({first['cpu_flags']}; native bf16: {first['cpu_native_bf16']}), torch "
              f"{first['torch']}, commit {' / '.join(dict.fromkeys(str(r['commit']) for r in rows))} (per row in the CSV), "
              f"{first['rounds']} alternating rounds per row, float32."]
    for r in rows:
        if r.get("official_over_floor") not in (None, ""):
            lines += ["", f"Matrix-product floor at {r['threads']} thread(s): a forward+backward holds "
                      f"{r['official_gflop']:.1f} GFLOP of products in the official code, {r['ours_gflop']:.1f} in ours. "
                      f"Ours alone, back to back: {r['floor_as_laid_out_s']:.3f} s as laid out "
                      f"({r['products_gflop_per_s']:.0f} GFLOP/s; a square 2048 product runs at "
                      f"{r['square_gemm_gflop_per_s']:.0f}), {r['floor_best_layout_s']:.3f} s with each in its fastest "
                      f"layout. Official / floor = **{r['official_over_floor']:.2f}**: the highest forward+backward "
                      f"ratio any float32 code with these products reaches on this machine, if everything but the "
                      f"products (attention, elementwise, norms, copies) cost nothing."]
            if r.get("attention_alone_s") not in (None, ""):
                lines[-1] += (f" The fused attention kernels alone take {r['attention_alone_s']:.3f} s more: official / "
                              f"(products + attention) = **{r['official_over_floor_with_attention']:.2f}** with "
                              "elementwise work, norms and copies free.")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=(8, 3.8))
    labels = [f"{r['setup']}\n{r['threads']} thr" for r in rows]
    x = range(len(rows))
    axis.bar([i - 0.2 for i in x], [r["official_s"] for r in rows], width=0.4, label="official")
    axis.bar([i + 0.2 for i in x], [r["ours_s"] for r in rows], width=0.4, label="ours")
    for i, r in zip(x, rows):
        axis.annotate(f"{r['official_over_ours']:.2f}x", (i, max(r["official_s"], r["ours_s"])), ha="center",
                      va="bottom", fontsize=8)
    axis.set_xticks(list(x), labels, fontsize=8)
    axis.set_ylabel("median seconds per step")
    axis.set_title(f"official UNITE vs ours, same tiny config ({first['cpu']}, fp32)", fontsize=9)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out.with_suffix(".png"), dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a checkout of ShivamDuggal4/UNITE-tokenization-generation")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=SETUPS)
    parser.add_argument("--compile", action="store_true", help="also time ours with trainer.compile=true")
    parser.add_argument("--out", type=Path, default=RESULTS / "official_parity_speed")
    parser.add_argument("--append", action="store_true", help="add to the rows already in --out (one table from "
                        "several invocations, each under the 10-minute limit of a shared machine)")
    args = parser.parse_args()
    unite_module, optim_module = parity.import_official(args.checkout.resolve())
    rows = previous_rows(args.out.with_suffix(".csv")) if args.append else []
    with tempfile.TemporaryDirectory() as folder:
        root = parity.class_folders(Path(folder), SIZES["num_classes"])
        cfg = parity.compose(our_overrides(SIZES) + [f"modality.data_root={root}"])
        for threads in args.threads:
            torch.set_num_threads(threads)
            for setup in args.setups:
                result = measure(setup, unite_module, optim_module, cfg, SIZES, args.rounds, args.warmup, args.compile)
                row = {"setup": setup, "official_optimizer": result["official_optimizer"],
                       "ours_optimizer": result["ours_optimizer"], "official_s": result["median"]["official"],
                       "ours_s": result["median"]["ours"],
                       "official_over_ours": result["ratio_to_first"]["ours"], "rounds": args.rounds}
                row.update(result.get("floor", {}))
                if "ours_compiled" in result["median"]:
                    row["ours_compiled_s"] = result["median"]["ours_compiled"]
                    row["official_over_ours_compiled"] = result["ratio_to_first"]["ours_compiled"]
                row.update(machine_record())
                rows.append(row)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                       if k not in ("cpu_flags", "python")}, flush=True)
    write_results(rows, args.out)
    print(f"wrote {args.out}.csv/.md/.png")


if __name__ == "__main__":
    main()
