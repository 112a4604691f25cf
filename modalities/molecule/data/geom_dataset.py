"""GEOM-Drugs as PyG `Data` objects for the molecule modality: atom type, centred coordinates (Å), atom count.

An *atom type* is an element with a formal charge: "C" (neutral carbon), "N+" (ammonium, nitro N), "O-"
(carboxylate, nitro O), "S+2". The model's atom classes are the config's list `modality.elements`, so a
formal charge enters the tokenizer as part of the atom's class and leaves the decoder the same way, with no
separate charge head. GEOM-Drugs (MiDi split, RDKit parse of all 243,480 training SMILES): 16 neutral
elements plus N+ (26,859 atoms), O- (16,771), N- (86), S- (30), S+ (11), P+ (5), O+ (4), C- (1).

The molecules come from the sharded cache (`geom_cache.py`), built beforehand with `geom_build.py`.
"""
from __future__ import annotations

import re
from collections import Counter

import torch
from e3nn import o3
from torch.utils.data import Dataset
from torch_geometric.data import Data

from modalities.molecule.data.dataset import SYMBOL_TO_Z, Z_TO_SYMBOL
from modalities.molecule.data.geom_cache import GeomMolecules, load_cached

_ATOM_TYPE = re.compile(r"^([A-Z][a-z]?)(?:([+-])(\d*))?$")
MAX_ABS_CHARGE = 8


def parse_atom_type(name: str) -> tuple[int, int]:
    """'N+' -> (7, 1); 'O-' -> (8, -1); 'S+2' -> (16, 2); 'C' -> (6, 0). ValueError naming the bad entry."""
    match = _ATOM_TYPE.match(str(name))
    if match is None or match.group(1) not in SYMBOL_TO_Z:
        raise ValueError(f"modality.elements entry {name!r} is not an atom type: write an element of "
                         f"{sorted(SYMBOL_TO_Z)} with an optional charge, e.g. 'N', 'N+', 'O-', 'S+2'")
    symbol, sign, size = match.groups()
    charge = 0 if sign is None else (1 if sign == "+" else -1) * int(size or 1)
    if abs(charge) > MAX_ABS_CHARGE:
        raise ValueError(f"modality.elements entry {name!r}: charge {charge} is beyond ±{MAX_ABS_CHARGE}")
    return SYMBOL_TO_Z[symbol], charge


def atom_type_name(atomic_number: int, charge: int) -> str:
    """(7, 1) -> 'N+'; (16, 2) -> 'S+2'; (6, 0) -> 'C'."""
    symbol = Z_TO_SYMBOL.get(int(atomic_number), f"Z{int(atomic_number)}")
    return symbol if charge == 0 else f"{symbol}{'+' if charge > 0 else '-'}{abs(charge) if abs(charge) > 1 else ''}"


def atom_type_table(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Atomic numbers [T] and formal charges [T] (int64) of the model's atom classes, in config order."""
    parsed = [parse_atom_type(n) for n in names]
    repeated = sorted({atom_type_name(*p) for p in parsed if parsed.count(p) > 1})
    if repeated:
        raise ValueError(f"modality.elements lists the atom types {repeated} more than once")
    return (torch.tensor([z for z, _ in parsed], dtype=torch.long),
            torch.tensor([q for _, q in parsed], dtype=torch.long))


def atom_classes(atomic_numbers: torch.Tensor, formal_charges: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor]
                 ) -> torch.Tensor:
    """[N] class of each atom in `table` (from `atom_type_table`), -1 for an atom type the table lacks."""
    z_table, q_table = table
    lookup = torch.full((119, 2 * MAX_ABS_CHARGE + 1), -1, dtype=torch.long)
    lookup[z_table, q_table + MAX_ABS_CHARGE] = torch.arange(len(z_table))
    inside = formal_charges.abs() <= MAX_ABS_CHARGE
    classes = torch.full_like(atomic_numbers, -1)
    classes[inside] = lookup[atomic_numbers[inside], formal_charges[inside] + MAX_ABS_CHARGE]
    return classes


class GeomDrugsDataset(Dataset):
    """One split of GEOM-Drugs from the cache; coordinates centred on the centroid (zero mean).

    subset: the first N cached molecules (a uniform random sample of the split: the cache walks it in a
    fixed shuffled order); None = every cached shard. random_rotation: each item turned by a fresh uniformly
    random rotation, input and target alike (as QM9Dataset)."""

    def __init__(self, split: str, source: str, atom_types: list[str], subset: int | None, cache_dir: str | None,
                 random_rotation: bool = False, data: GeomMolecules | None = None):
        self.split, self.random_rotation = split, random_rotation
        self.data = data if data is not None else load_cached(source, split, subset, cache_dir)
        self.classes = atom_classes(self.data.atomic_numbers, self.data.formal_charges, atom_type_table(atom_types))
        missing = self.classes < 0
        if missing.any():
            kinds = Counter(atom_type_name(z, q) for z, q in zip(self.data.atomic_numbers[missing].tolist(),
                                                                  self.data.formal_charges[missing].tolist()))
            first_atom = int(missing.nonzero()[0])
            m = int(torch.searchsorted(self.data.offsets, first_atom, right=True)) - 1
            raise ValueError(
                f"GEOM-Drugs {split}: atom types {dict(kinds)} are not in modality.elements {list(atom_types)} "
                f"(first in molecule {m}, split line {int(self.data.source_index[m])}: {self.data.smiles[m]}); "
                f"add them to modality.elements")

    def __len__(self) -> int:
        return len(self.data)

    def atom_counts(self) -> torch.Tensor:
        return self.data.num_atoms

    def __getitem__(self, i: int) -> Data:
        start, end = int(self.data.offsets[i]), int(self.data.offsets[i + 1])
        positions = self.data.positions[start:end]
        positions = positions - positions.mean(0, keepdim=True)
        if self.random_rotation:
            positions = positions @ o3.rand_matrix(dtype=positions.dtype).T
        return Data(element=self.classes[start:end], pos=positions, num_atoms=end - start, row=i)
