"""The GEOM-Drugs split as SMILES (MiDi / EQGAT-diff split: 243,480 / 30,434 / 30,434), and its fixed order.

The files `{train,val,test}.smi.gz` (one SMILES a line) are found in `smiles_root`, else in the folder
named by $UNITE_GEOM_SMILES. The files are sorted alphabetically, so the first N lines are a biased
subset (all bromides first); every cache and subset therefore walks a split in one fixed shuffled order,
`split_order` (numpy seed 0), and "the first N molecules" is a uniform random sample of the split.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

SMILES_ENV = "UNITE_GEOM_SMILES"
SPLITS = ("train", "val", "test")
SPLIT_SIZES = {"train": 243_480, "val": 30_434, "test": 30_434}
ORDER_SEED = 0


class GeomSmilesMissing(FileNotFoundError):
    """The split's SMILES file is not where the config or the environment says."""


def smiles_folder(smiles_root: str | Path | None) -> Path:
    """`smiles_root`, else $UNITE_GEOM_SMILES; raises GeomSmilesMissing naming both when neither is set."""
    root = smiles_root if smiles_root is not None else os.environ.get(SMILES_ENV)
    if not root:
        raise GeomSmilesMissing(
            f"GEOM-Drugs needs the split's SMILES files: set ${SMILES_ENV} (or geom_build --smiles-root) to "
            f"the folder holding train.smi.gz, val.smi.gz and test.smi.gz (shared/data/geom-drugs-smiles/ here).")
    return Path(root)


def read_split_smiles(split: str, smiles_root: str | Path | None) -> list[str]:
    """Every SMILES of the split, in file order (line i of the file is index i)."""
    if split not in SPLITS:
        raise ValueError(f"unknown GEOM-Drugs split {split!r}: choose one of {SPLITS}")
    path = smiles_folder(smiles_root) / f"{split}.smi.gz"
    if not path.is_file():
        raise GeomSmilesMissing(f"{path} does not exist; ${SMILES_ENV} or geom_build --smiles-root must "
                                f"name the folder with {split}.smi.gz")
    with gzip.open(path, "rt") as handle:
        return [line.strip() for line in handle if line.strip()]


def split_order(num_molecules: int) -> np.ndarray:
    """[num_molecules] int64: the fixed shuffled order in which caches and subsets walk a split."""
    return np.random.RandomState(ORDER_SEED).permutation(num_molecules).astype(np.int64)
