"""Parameter counts of UNITE at each GE size, built from `experiment=imagenet256_unite_b` (the official
options: residual block norms, scaled norms, Fourier time embedding, ViT-MAE decoder with a 768-wide
latent input) with the GE size swapped and a decoder of the GE's depth/width/heads.

    python -m benchmarks.run parameter_counts

256 px, patch 16, 32 latent channels, 1000 classes. For ge_b this is UNITE-B: 217,642,080 trainable
parameters, the official code's 217,643,616 minus two tensors it builds but never reads
(tests/core/test_official_parity.py). Writes benchmarks/results/parameter_counts.json and a Markdown table.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from benchmarks.official_parity import class_folders
from core.build import build_modality, build_recipe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OFFICIAL = {"ge_b": 217_643_616}  # official UNITE-B (configs/imagenet.yaml), trainable parameters


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def unite_counts(size: str, data_root: Path) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=imagenet256_unite_b", f"model={size}",
                                          f"modality.data_root={data_root}", "modality.evaluation.fid=false",
                                          "trainer.out_dir=unused"])
    m = cfg.model
    cfg.modality.decoder.update(depth=m.depth, width=m.width, heads=m.heads)
    with torch.device("meta"):
        recipe = build_recipe(cfg, build_modality(cfg))
    return {"depth": m.depth, "width": m.width, "heads": m.heads, "latent_channels": m.latent_channels,
            "generative_encoder": count(recipe.encoder), "decoder": count(recipe.decoder),
            "embeddings": count(recipe.embedder), "total": count(recipe)}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = class_folders(Path(folder), 1000)
        rows = {size: unite_counts(size, root) for size in ("ge_tiny", "ge_s", "ge_b", "ge_l")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parameter_counts.json").write_text(json.dumps(
        {"setting": "experiment=imagenet256_unite_b (official options), GE size swapped, decoder of the GE's "
                    "size; images 256 px, patch 16, 1000 classes; trainable parameters",
         "official": OFFICIAL, "rows": rows}, indent=2))
    print("| size | layers/width/heads | GE | decoder | total | official |\n|---|---|---|---|---|---|")
    for size, r in rows.items():
        official = f"{OFFICIAL[size]:,}" if size in OFFICIAL else ""
        print(f"| {size} | {r['depth']}/{r['width']}/{r['heads']} | {r['generative_encoder'] / 1e6:.1f} M | "
              f"{r['decoder'] / 1e6:.1f} M | {r['total']:,} | {official} |")


if __name__ == "__main__":
    main()
