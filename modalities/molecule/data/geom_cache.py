"""Sharded, resumable cache of GEOM-Drugs molecules with coordinates, from either source:

- `rdkit_conformers`: RDKit ETKDGv3 + MMFF94 conformers of the split's SMILES (`geom_conformers.py`);
- `rdkit_folder`: the lowest-energy conformer of each molecule in a user's real GEOM `rdkit_folder`
  (`geom_rdkit_folder.py`).

Layout: `$UNITE_CACHE/geom_drugs/<source tag>/<split>/shard_00000.pt`, ... Shard k holds the molecules at
positions [k * shard_size, (k + 1) * shard_size) of the split's fixed shuffled order (`split_order`), so
the first k shards are a uniform random subset. A shard is written atomically (temporary file, fsync,
rename) once all its molecules are done, so an interrupted build loses at most the shard in progress and
the next build skips every finished shard. A molecule without coordinates is a counted failure in its
shard's record (`failures`: split, index, SMILES, reason, message); the rest of the shard is kept.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from modalities.molecule.data.geom_conformers import FAILURE_REASONS, Conformer, Failure, rdkit_conformer
from modalities.molecule.data.geom_smiles import split_order
from modalities.molecule.data.qm9 import default_cache_dir, save_atomically

SOURCES = {"rdkit_conformers": "rdkit_etkdgv3_mmff94_v1", "rdkit_folder": "rdkit_folder_v1"}
CACHE_VERSION = 1
DEFAULT_SHARD_SIZE = 1000  # ~70 s of one core per shard: an interruption loses at most that much per shard


def cache_root(source: str, cache_dir: str | Path | None) -> Path:
    """$UNITE_CACHE/geom_drugs/<source tag> (or `cache_dir` instead of $UNITE_CACHE)."""
    if source not in SOURCES:
        raise ValueError(f"unknown GEOM-Drugs source {source!r}: choose one of {sorted(SOURCES)}")
    return Path(cache_dir or default_cache_dir()) / "geom_drugs" / SOURCES[source]


def shard_path(source: str, split: str, shard: int, cache_dir: str | Path | None) -> Path:
    return cache_root(source, cache_dir) / split / f"shard_{shard:05d}.pt"


def split_digest(smiles: list[str]) -> str:
    """sha1 of the split's SMILES in file order: a shard built from other SMILES is never reused."""
    return hashlib.sha1("\n".join(smiles).encode()).hexdigest()


def _produce(task: tuple) -> Conformer | Failure:
    """One molecule (runs in a worker): task = (source, split, index, smiles, pickle path or None)."""
    source, split, index, smiles, pickle_path = task
    where = f"GEOM-Drugs {split} #{index} ({smiles})"
    if source == "rdkit_conformers":
        return rdkit_conformer(smiles, seed=index, where=where)
    from modalities.molecule.data.geom_rdkit_folder import lowest_energy_conformer
    if pickle_path is None:
        return Failure("not_in_summary", f"{where}: not listed (with a pickle) in the rdkit_folder's summary_drugs.json")
    return lowest_energy_conformer(pickle_path, where)


def _shard_record(meta: dict, indices: list[int], smiles: list[str], results: list, seconds: float) -> dict:
    """What one shard file holds: the kept molecules as flat arrays, and every failure with its reason."""
    kept = [(i, s, r) for i, s, r in zip(indices, smiles, results) if isinstance(r, Conformer)]
    failures = [{"index": i, "smiles": s, "reason": r.reason, "message": r.message}
                for i, s, r in zip(indices, smiles, results) if isinstance(r, Failure)]
    counts = Counter(f["reason"] for f in failures)
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([r.atomic_numbers.size for _, _, r in kept])

    def flat(name: str, dtype, shape: tuple) -> torch.Tensor:
        parts = [getattr(r, name) for _, _, r in kept]
        return torch.from_numpy(np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype=dtype))

    return {
        **meta, "attempted": len(results), "seconds": seconds,
        "atomic_numbers": flat("atomic_numbers", np.uint8, (0,)),  # [atoms]
        "formal_charges": flat("formal_charges", np.int8, (0,)),  # [atoms]
        "positions": flat("positions", np.float32, (0, 3)),  # [atoms, 3] Å
        "offsets": torch.from_numpy(offsets),  # [kept + 1]
        "source_index": torch.tensor([i for i, _, _ in kept], dtype=torch.int64),  # line in the split file
        "energy": torch.tensor([r.energy for _, _, r in kept], dtype=torch.float64),
        "smiles": [s for _, s, _ in kept],
        "failures": failures,
        "failure_counts": {reason: counts.get(reason, 0) for reason in FAILURE_REASONS},
    }


def read_shard(path: Path, expected: dict | None = None) -> dict:
    """A finished shard; ValueError naming the file and what is wrong (unreadable, other metadata than
    `expected`, arrays that disagree with the offsets)."""
    try:
        record = torch.load(path, weights_only=True)
    except Exception as error:  # truncated or foreign file: torch raises several types
        raise ValueError(f"{path}: unreadable shard ({type(error).__name__}: {error})") from None
    if not isinstance(record, dict) or record.get("version") != CACHE_VERSION:
        raise ValueError(f"{path}: not a version-{CACHE_VERSION} GEOM-Drugs shard")
    wrong = {k: record.get(k) for k, v in (expected or {}).items() if record.get(k) != v}
    if wrong:
        raise ValueError(f"{path}: shard metadata {wrong} differ from the expected {expected}")
    atoms, kept = record["atomic_numbers"].numel(), record["offsets"].numel() - 1
    if (int(record["offsets"][-1]) != atoms or record["positions"].shape != (atoms, 3)
            or record["formal_charges"].numel() != atoms or len(record["smiles"]) != kept
            or record["source_index"].numel() != kept):
        raise ValueError(f"{path}: atom arrays do not match the offsets (truncated or tampered shard)")
    return record


def build_cache(source: str, split: str, smiles: list[str], limit: int | None, workers: int, shard_size: int,
                cache_dir: str | Path | None, pickle_paths: list[str | None] | None = None) -> dict:
    """Compute every missing shard covering the first `limit` molecules of the split's order (all if None).

    smiles: the whole split in file order; pickle_paths: per SMILES its rdkit_folder pickle (source
    `rdkit_folder` only). workers: processes (0 = this one). A finished shard is never recomputed; an
    unusable one (unreadable, built from other SMILES or another shard size) is rebuilt with a warning.
    Returns shards built and reused, molecules kept, failures by reason and the seconds spent, over the
    shards this call covers.
    """
    if shard_size < 1 or workers < 0:
        raise ValueError(f"shard_size={shard_size} must be >= 1 and workers={workers} >= 0")
    if (source == "rdkit_folder") != (pickle_paths is not None):
        raise ValueError("pickle_paths are needed for source 'rdkit_folder' and only there")
    order = split_order(len(smiles))
    covered = len(smiles) if limit is None else min(limit, len(smiles))
    digest = split_digest(smiles)

    def meta(k: int) -> dict:
        return {"version": CACHE_VERSION, "source": source, "split": split, "shard": k, "shard_size": shard_size,
                "split_size": len(smiles), "split_digest": digest}

    records, todo = {}, []
    for k in range((covered + shard_size - 1) // shard_size):
        path = shard_path(source, split, k, cache_dir)
        if path.exists():
            try:
                records[k] = read_shard(path, meta(k))
                continue
            except ValueError as error:  # an unusable shard is rebuilt, never used
                warnings.warn(f"GEOM-Drugs cache: {error}; rebuilding it.")
        todo.append(k)
    shard_indices = {k: [int(i) for i in order[k * shard_size:(k + 1) * shard_size]] for k in todo}
    tasks = [(source, split, i, smiles[i], None if pickle_paths is None else pickle_paths[i])
             for k in todo for i in shard_indices[k]]
    # one ordered stream over all missing shards keeps every worker busy across shard boundaries
    pool = get_context("spawn").Pool(workers) if workers and tasks else None
    bar = tqdm(total=len(tasks), desc=f"GEOM-Drugs {split} ({source})", unit="mol", disable=not tasks)
    try:
        stream = pool.imap(_produce, tasks, chunksize=1) if pool else map(_produce, tasks)
        pending = iter(todo)
        k = next(pending, None)
        results, start = [], time.perf_counter()
        for result in stream:
            results.append(result)
            bar.update()
            if len(results) == len(shard_indices[k]):
                record = _shard_record(meta(k), shard_indices[k], [smiles[i] for i in shard_indices[k]], results,
                                       time.perf_counter() - start)
                save_atomically(record, shard_path(source, split, k, cache_dir))
                records[k] = record
                bar.set_postfix(failures=sum(sum(r["failure_counts"].values()) for r in records.values()))
                k, results, start = next(pending, None), [], time.perf_counter()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    failures = Counter()
    for record in records.values():
        failures.update(record["failure_counts"])
    return {"shards_built": list(todo), "shards_reused": sorted(set(records) - set(todo)),
            "attempted": sum(r["attempted"] for r in records.values()), "attempted_built": len(tasks),
            "molecules": sum(len(r["smiles"]) for r in records.values()),
            "failures": {reason: failures[reason] for reason in FAILURE_REASONS if failures[reason]},
            "seconds_built": sum(records[k]["seconds"] for k in todo)}


def failure_messages(source: str, split: str, cache_dir: str | Path | None) -> list[dict]:
    """Every failure recorded in the split's consecutive shards (index, SMILES, reason, message)."""
    out, k = [], 0
    while (path := shard_path(source, split, k, cache_dir)).exists():
        out.extend(read_shard(path)["failures"])
        k += 1
    return out


@dataclass
class GeomMolecules:
    """Cached GEOM-Drugs molecules as flat tensors; molecule i owns atoms offsets[i]:offsets[i+1]."""

    atomic_numbers: torch.Tensor  # [total_atoms] int64
    formal_charges: torch.Tensor  # [total_atoms] int64
    positions: torch.Tensor  # [total_atoms, 3] float32, Å (not centred)
    offsets: torch.Tensor  # [M + 1] int64
    source_index: torch.Tensor  # [M] int64: line of the split's SMILES file
    smiles: list[str]  # [M] the split's SMILES
    attempted: int  # molecules tried in the shards read (kept + failed)
    failure_counts: dict[str, int]  # over the shards read

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_atoms(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def molecule(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(atomic numbers [n], formal charges [n], positions [n, 3] Å) of molecule i."""
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.atomic_numbers[start:end], self.formal_charges[start:end], self.positions[start:end]

    def first(self, m: int) -> "GeomMolecules":
        """The first m molecules (failure figures stay those of the shards read)."""
        end = int(self.offsets[m])
        return GeomMolecules(self.atomic_numbers[:end], self.formal_charges[:end], self.positions[:end],
                             self.offsets[:m + 1], self.source_index[:m], self.smiles[:m], self.attempted,
                             self.failure_counts)


def build_hint(source: str, split: str) -> str:
    if source == "rdkit_conformers":
        return f"build it with `python -m modalities.molecule.data.geom_build --split {split} --limit N`"
    return (f"build it with `python -m modalities.molecule.data.geom_build --split {split} --source rdkit_folder "
            f"--rdkit-folder <your rdkit_folder>`")


def load_cached(source: str, split: str, molecules: int | None, cache_dir: str | Path | None) -> GeomMolecules:
    """The first `molecules` cached molecules of the split, from consecutive shards starting at shard 0
    (None: every consecutive shard). FileNotFoundError saying how to build the cache when it holds fewer."""
    folder = cache_root(source, cache_dir) / split
    records, k, have = [], 0, 0
    while (molecules is None or have < molecules) and (path := folder / f"shard_{k:05d}.pt").exists():
        record = read_shard(path)
        if records and any(record[key] != records[0][key] for key in ("shard_size", "split_size", "split_digest")):
            raise ValueError(f"{path}: built from another split file or shard size than {folder}/shard_00000.pt; "
                             f"delete {folder} and rebuild")
        records.append(record)
        have += len(record["smiles"])
        k += 1
    if not records or (molecules is not None and have < molecules):
        raise FileNotFoundError(f"GEOM-Drugs cache {folder} holds {have} molecules in {len(records)} consecutive "
                                f"shards, {molecules or 'at least one shard'} asked for; {build_hint(source, split)}")
    counts = Counter()
    for record in records:
        counts.update(record["failure_counts"])
    offsets, total = [torch.zeros(1, dtype=torch.int64)], 0
    for record in records:
        offsets.append(record["offsets"][1:] + total)
        total += int(record["offsets"][-1])
    data = GeomMolecules(
        atomic_numbers=torch.cat([r["atomic_numbers"] for r in records]).long(),
        formal_charges=torch.cat([r["formal_charges"] for r in records]).long(),
        positions=torch.cat([r["positions"] for r in records]),
        offsets=torch.cat(offsets),
        source_index=torch.cat([r["source_index"] for r in records]),
        smiles=[s for r in records for s in r["smiles"]],
        attempted=sum(r["attempted"] for r in records),
        failure_counts={reason: counts[reason] for reason in FAILURE_REASONS},
    )
    return data if molecules is None else data.first(molecules)
