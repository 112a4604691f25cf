"""Edges within each molecule of a batch, in pure torch (PyG's radius_graph needs pyg-lib, not on PyPI)."""
from __future__ import annotations

import torch
from torch_geometric.utils import to_dense_batch


def molecule_edges(positions: torch.Tensor, batch: torch.Tensor, cutoff: float | None) -> torch.Tensor:
    """Directed edges (source, target) between distinct atoms of the same molecule.

    positions: [total_atoms, 3] Å; batch: [total_atoms] molecule index, sorted (PyG convention).
    cutoff: keep pairs closer than this many Å; None = the complete graph (QM9-sized molecules).
    Returns edge_index [2, E] int64 into the flat atom arrays, ordered by (molecule, source, target).
    """
    dense, real = to_dense_batch(positions, batch)  # [B, Nmax, 3], [B, Nmax]
    b, n = real.shape
    keep = real[:, :, None] & real[:, None, :] & ~torch.eye(n, dtype=torch.bool, device=positions.device)
    if cutoff is not None:
        keep &= torch.cdist(dense, dense) < cutoff
    molecule, source, target = keep.nonzero(as_tuple=True)
    first_atom = torch.zeros(b, dtype=torch.long, device=positions.device)
    first_atom[1:] = torch.cumsum(real.sum(1), 0)[:-1]
    offset = first_atom[molecule]
    return torch.stack([offset + source, offset + target])
