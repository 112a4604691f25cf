"""The e3nn encoder's radius graph (pure torch, `model/graph.py`) against a brute-force double loop, at
GEOM-Drugs sizes: molecules of very different atom counts in one batch."""
import torch

from modalities.molecule.model.graph import molecule_edges


def _brute_force(positions: torch.Tensor, batch: torch.Tensor, cutoff: float | None) -> set[tuple[int, int]]:
    edges = set()
    for i in range(len(positions)):
        for j in range(len(positions)):
            if i != j and batch[i] == batch[j] and (cutoff is None or float((positions[i] - positions[j]).norm()) < cutoff):
                edges.add((i, j))
    return edges


def _random_batch(sizes: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # drug-like density: atoms spread over a box growing with the atom count (~1 atom per 10 Å^3)
    positions = [torch.rand(n, 3, generator=generator) * (10.0 * n) ** (1 / 3) for n in sizes]
    batch = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    return torch.cat(positions), batch


def test_radius_graph_equals_brute_force_for_mixed_sizes():
    positions, batch = _random_batch([3, 181, 1, 47, 12], seed=0)
    for cutoff in (1.5, 5.0, None):
        edges = molecule_edges(positions, batch, cutoff)
        assert edges.dtype == torch.long and edges.shape[0] == 2
        found = list(map(tuple, edges.T.tolist()))
        assert len(found) == len(set(found))  # no duplicate edge
        assert set(found) == _brute_force(positions, batch, cutoff)


def test_radius_graph_is_the_same_for_each_molecule_alone():
    """Batching changes only the atom offsets, never which pairs are neighbours."""
    sizes = [60, 5, 120]
    positions, batch = _random_batch(sizes, seed=1)
    together = set(map(tuple, molecule_edges(positions, batch, 5.0).T.tolist()))
    alone, start = set(), 0
    for n in sizes:
        single = molecule_edges(positions[start:start + n], torch.zeros(n, dtype=torch.long), 5.0)
        alone |= {(i + start, j + start) for i, j in single.T.tolist()}
        start += n
    assert together == alone


def test_cutoff_is_strict():
    positions = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.5, 0.0, 0.0]])
    batch = torch.zeros(3, dtype=torch.long)
    assert set(map(tuple, molecule_edges(positions, batch, 2.0).T.tolist())) == set()
    assert set(map(tuple, molecule_edges(positions, batch, 2.5).T.tolist())) == {(0, 1), (1, 0)}  # 2.5 Å apart: out
    assert set(map(tuple, molecule_edges(positions, batch, 2.6).T.tolist())) == {(0, 1), (1, 0), (1, 2), (2, 1)}
