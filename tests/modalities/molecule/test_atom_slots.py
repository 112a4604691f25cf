"""The atom-index slot embedding (modalities/molecule/model/atom_slots.py) against its formula."""
import math

import pytest
import torch

from modalities.molecule.model.atom_slots import AtomIndexSlots, sinusoidal_index_embedding


def test_sinusoidal_embedding_is_the_formula():
    table = sinusoidal_index_embedding(5, 8)
    for i in range(5):
        for k in range(4):
            w = 10000.0 ** (-k / 4)
            assert table[i, k].item() == pytest.approx(math.sin(i * w), abs=1e-6)
            assert table[i, 4 + k].item() == pytest.approx(math.cos(i * w), abs=1e-6)


def test_rows_differ_for_every_index_of_a_drug_size_molecule():
    table = sinusoidal_index_embedding(181, 128)  # GEOM-Drugs' largest molecule
    distances = torch.cdist(table, table) + torch.eye(181) * 1e3
    assert float(distances.min()) > 0.5


def test_none_leaves_a_set_and_unknown_kinds_are_named():
    mask = torch.tensor([[True, True, False]])
    assert AtomIndexSlots("none", 8).layout(mask).slots is None
    assert AtomIndexSlots("sinusoidal", 8).layout(mask).slots.shape == (1, 3, 8)
    with pytest.raises(ValueError, match="modality.embedder.index_slots='learned'"):
        AtomIndexSlots("learned", 8)
    with pytest.raises(ValueError, match="even width"):
        sinusoidal_index_embedding(3, 7)
