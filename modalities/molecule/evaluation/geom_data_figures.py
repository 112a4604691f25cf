"""The data's own row for GEOM-Drugs tables: stability, connectivity, validity of the cached molecules.

    python -m modalities.molecule.evaluation.geom_data_figures --split test --molecules 1000 --out <folder>

reads the first N cached molecules of the split (`geom_cache.py`; RDKit conformers, not GEOM-CREST, unless
--source rdkit_folder), runs `geom_metrics` on each with its formal charges, and writes `geom_data_<split>.json`
and `.md` into --out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from modalities.molecule.data.geom_build import LABEL
from modalities.molecule.data.geom_cache import SOURCES, load_cached
from modalities.molecule.evaluation.geom_metrics import GEOM_ROUTES, assess_geom_molecule, summarize_geom
from modalities.molecule.evaluation.metrics import parallel_map


def _assess(item: tuple):
    z, q, x, routes = item
    return assess_geom_molecule(z, q, x, routes)


def data_figures(source: str, split: str, molecules: int | None, cache_dir: str | None, workers: int,
                 routes: tuple[str, ...] = GEOM_ROUTES) -> dict:
    data = load_cached(source, split, molecules, cache_dir)
    items = [(*(t.numpy() for t in data.molecule(i)), routes) for i in range(len(data))]
    start = time.perf_counter()
    results = parallel_map(_assess, items, workers, progress=f"GEOM-Drugs {split} data figures")
    return {"coordinates": LABEL[source], "split": split, "cached_molecules_read": len(data),
            "attempted_in_shards": data.attempted, "failures_in_shards": data.failure_counts,
            "mean_atoms": float(data.num_atoms.float().mean()), "max_atoms": int(data.num_atoms.max()),
            "seconds": time.perf_counter() - start, "workers": workers, **summarize_geom(results)}


def markdown(figures: dict) -> str:
    lines = [f"GEOM-Drugs {figures['split']}, {figures['num_molecules']} molecules — {figures['coordinates']}",
             "", f"EDM GEOM stability: atom {100 * figures['atom_stability']:.2f} %, "
                 f"molecule {100 * figures['molecule_stability']:.2f} % (no charges: N+, O- count unstable)", "",
             "| bond route | connected | valid | largest-fragment valid | valid and connected |",
             "|---|---|---|---|---|"]
    for route, f in figures["routes"].items():
        lines.append(f"| {route} | {100 * f['connected']:.2f} % | {100 * f['validity']:.2f} % | "
                     f"{100 * f['largest_fragment_validity']:.2f} % | {100 * f['valid_and_connected']:.2f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="GEOM-Drugs data row: the cached molecules' own figures.")
    parser.add_argument("--split", required=True, choices=("train", "val", "test"))
    parser.add_argument("--source", default="rdkit_conformers", choices=sorted(SOURCES))
    parser.add_argument("--molecules", type=int, default=None, help="first N cached molecules (default: all)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", required=True, help="folder for geom_data_<split>.json and .md")
    args = parser.parse_args(argv)
    figures = data_figures(args.source, args.split, args.molecules, args.cache_dir, args.workers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"geom_data_{args.split}.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out / f"geom_data_{args.split}.md").write_text(markdown(figures))
    print(markdown(figures))
    return figures


if __name__ == "__main__":
    main()
