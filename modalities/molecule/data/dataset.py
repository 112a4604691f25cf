"""QM9 as PyG `Data` objects: element index, centred coordinates (Å), atom count."""
from __future__ import annotations

import torch
from e3nn import o3
from torch.utils.data import Dataset
from torch_geometric.data import Data

from modalities.molecule.data.qm9 import ELEMENT_TO_Z, QM9Molecules, load_qm9

Z_TO_SYMBOL = {1: "H", 5: "B", 6: "C", 7: "N", 8: "O", 9: "F", 13: "Al", 14: "Si", 15: "P", 16: "S", 17: "Cl",
               33: "As", 35: "Br", 53: "I", 80: "Hg", 83: "Bi"}
SYMBOL_TO_Z = {symbol: z for z, symbol in Z_TO_SYMBOL.items()}


def element_vocabulary(symbols: list[str]) -> torch.Tensor:
    """Atomic numbers of the model's element classes, in config order."""
    unknown = [s for s in symbols if s not in SYMBOL_TO_Z]
    if unknown:
        raise ValueError(f"modality.elements has unknown symbols {unknown}; known: {sorted(SYMBOL_TO_Z)}")
    return torch.tensor([SYMBOL_TO_Z[s] for s in symbols], dtype=torch.long)


class QM9Dataset(Dataset):
    """One split of QM9 (EDM or ADiT scheme); coordinates centred on the centroid (zero mean).

    random_rotation: each item is turned by a fresh uniformly random rotation (torch's global RNG, which
    checkpoints carry). The item is both the tokenizer's input and the reconstruction target, so input and
    target are always rotated alike; used for the training split of frame-carrying tokens."""

    def __init__(self, split: str, split_scheme: str, elements: list[str], subset: int | None,
                 cache_dir: str | None, data: QM9Molecules | None = None, random_rotation: bool = False):
        self.random_rotation = random_rotation
        self.data = data if data is not None else load_qm9(cache_dir)
        splits = self.data.split_indices(split_scheme)
        if split not in splits:
            raise ValueError(f"unknown split {split!r}: choose one of {sorted(splits)}")
        rows = splits[split]
        self.rows = rows if subset is None else rows[:subset]
        vocabulary = element_vocabulary(elements)
        self.z_to_class = torch.full((int(vocabulary.max()) + 1,), -1, dtype=torch.long)
        self.z_to_class[vocabulary] = torch.arange(len(vocabulary))
        missing = set(ELEMENT_TO_Z.values()) - set(vocabulary.tolist())
        if missing:
            raise ValueError(f"modality.elements {elements} lacks QM9 elements with Z in {sorted(missing)}")

    def __len__(self) -> int:
        return len(self.rows)

    def atom_counts(self) -> torch.Tensor:
        return self.data.num_atoms[self.rows]

    def __getitem__(self, i: int) -> Data:
        row = int(self.rows[i])
        atomic_numbers, positions = self.data.molecule(row)
        positions = positions - positions.mean(0, keepdim=True)
        if self.random_rotation:
            positions = positions @ o3.rand_matrix(dtype=positions.dtype).T
        return Data(element=self.z_to_class[atomic_numbers], pos=positions, num_atoms=len(atomic_numbers),
                    row=row)
