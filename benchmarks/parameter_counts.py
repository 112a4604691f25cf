"""Parameter counts of the Generative Encoder sizes, next to the paper's 217.6 M for UNITE-B.

UNITE-B = GE-B (12 layers, width 768, 12 heads) + a ViT-B decoder (official code: 12/768/12, MLP 3072)
with a patch-16 pixel head, at 256 px, 32 latent channels, 1000 classes, 32 in-context class tokens.
Writes benchmarks/results/parameter_counts.json and prints a Markdown table.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from core.generative_encoder import DecoderTrunk, GenerativeEncoder

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
RESULTS = Path(__file__).resolve().parent / "results"
PAPER = {"ge_b": 217.6e6}  # UNITE-B, GE + decoder (paper)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def image_counts(size: str, patch: int = 16, image: int = 256, num_classes: int = 1000) -> dict:
    cfg = OmegaConf.load(CONFIGS / f"{size}.yaml")
    options = {k: v for k, v in cfg.items() if k != "_target_"}
    with torch.device("meta"):
        ge = GenerativeEncoder(**options, num_classes=num_classes, rope_axes=2)
        decoder = DecoderTrunk(cfg.latent_channels, cfg.depth, cfg.width, cfg.heads, cfg.mlp_ratio, cfg.qk_norm, 2)
    tokens = (image // patch) ** 2
    patch_embed = 3 * patch * patch * cfg.width + cfg.width
    latent_slots = tokens * cfg.width
    pixel_head = cfg.width * 3 * patch * patch + 3 * patch * patch
    total = count(ge) + count(decoder) + patch_embed + latent_slots + pixel_head
    return {"depth": cfg.depth, "width": cfg.width, "heads": cfg.heads, "generative_encoder": count(ge),
            "decoder": count(decoder) + pixel_head, "embeddings": patch_embed + latent_slots, "total": total}


def main() -> None:
    rows = {size: image_counts(size) for size in ("ge_tiny", "ge_s", "ge_b", "ge_l")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parameter_counts.json").write_text(json.dumps(
        {"setting": "images 256 px, patch 16, 32 latent channels, 1000 classes, decoder of the GE's size",
         "paper": PAPER, "rows": rows}, indent=2))
    print("| size | layers/width/heads | GE | decoder | total | paper |\n|---|---|---|---|---|---|")
    for size, r in rows.items():
        paper = f"{PAPER[size] / 1e6:.1f} M" if size in PAPER else ""
        print(f"| {size} | {r['depth']}/{r['width']}/{r['heads']} | {r['generative_encoder'] / 1e6:.1f} M | "
              f"{r['decoder'] / 1e6:.1f} M | {r['total'] / 1e6:.1f} M | {paper} |")


if __name__ == "__main__":
    main()
