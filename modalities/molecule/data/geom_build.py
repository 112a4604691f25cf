"""Build (or resume) the GEOM-Drugs coordinate cache of one split, from the command line.

    python -m modalities.molecule.data.geom_build --split train --limit 5000 --workers 1
    python -m modalities.molecule.data.geom_build --split test --source rdkit_folder --rdkit-folder ~/rdkit_folder

The SMILES come from --smiles-root or $UNITE_GEOM_SMILES; the cache goes under --cache-dir or $UNITE_CACHE
(`geom_cache.py` for the layout). Interrupt it at any time: the next call skips every finished shard.
RDKit-source molecules are "RDKit conformers, not GEOM-CREST"; the report says so.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from modalities.molecule.data.geom_cache import DEFAULT_SHARD_SIZE, SOURCES, build_cache, cache_root, failure_messages
from modalities.molecule.data.geom_smiles import SPLITS, read_split_smiles

LABEL = {"rdkit_conformers": "RDKit conformers (ETKDGv3 + MMFF94), not GEOM-CREST",
         "rdkit_folder": "GEOM-CREST conformers (rdkit_folder), lowest energy per molecule"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Cache GEOM-Drugs molecules with 3-D coordinates, in shards.")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--source", default="rdkit_conformers", choices=sorted(SOURCES))
    parser.add_argument("--limit", type=int, default=None,
                        help="molecules to cover (rounded up to whole shards, in the split's fixed shuffled order); "
                             "default: the whole split")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (0: in this process)")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)
    parser.add_argument("--smiles-root", default=None, help="folder of {train,val,test}.smi.gz "
                                                            "(default: $UNITE_GEOM_SMILES)")
    parser.add_argument("--rdkit-folder", default=None, help="real GEOM rdkit_folder (source rdkit_folder; "
                                                             "default: $UNITE_GEOM_RDKIT_FOLDER)")
    parser.add_argument("--cache-dir", default=None, help="default: $UNITE_CACHE or ~/.cache/unite")
    parser.add_argument("--report", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    smiles = read_split_smiles(args.split, args.smiles_root)
    pickle_paths = None
    if args.source == "rdkit_folder":
        from modalities.molecule.data.geom_rdkit_folder import pickle_paths_for, rdkit_folder
        pickle_paths = pickle_paths_for(smiles, rdkit_folder(args.rdkit_folder))
    summary = build_cache(args.source, args.split, smiles, limit=args.limit, workers=args.workers,
                          shard_size=args.shard_size, cache_dir=args.cache_dir, pickle_paths=pickle_paths)
    report = {"coordinates": LABEL[args.source], "split": args.split, "workers": args.workers,
              "cache": str(cache_root(args.source, args.cache_dir) / args.split), **summary,
              "seconds_per_molecule_built": (summary["seconds_built"] / summary["attempted_built"]
                                             if summary["attempted_built"] else None)}
    failures = failure_messages(args.source, args.split, args.cache_dir)
    print(json.dumps(report, indent=2))
    for failure in failures[:10]:
        print(f"  failed ({failure['reason']}): {failure['message']}")
    if args.report:
        Path(args.report).write_text(json.dumps({**report, "failure_examples": failures[:20]}, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
