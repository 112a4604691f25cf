"""The tokenize pass is permutation-equivariant; its latent is invariant to rotation and translation of
the input but changes under reflection of a chiral molecule."""
import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

from modalities.molecule.model.equivariant_embedder import EquivariantAtomEmbedder
from modalities.molecule.model.graph import molecule_edges
from small_models import small_ge

# (R)-CHFClBr-like chiral centre with QM9 elements: C bonded to H, F, O, N at a tetrahedron, distorted so
# that no mirror plane exists.
ELEMENTS = torch.tensor([1, 0, 4, 3, 2])  # C H F O N as indices into [H, C, N, O, F]
POSITIONS = torch.tensor([[0.0, 0.0, 0.0], [0.63, 0.63, 0.63], [-0.80, -0.75, 0.70], [-0.70, 0.82, -0.72],
                          [0.74, -0.70, -0.79]], dtype=torch.float64).float()


def build(seed=0):
    torch.manual_seed(seed)
    embedder = EquivariantAtomEmbedder(width=32, num_elements=5, hidden_irreps="8x0e + 4x0o + 4x1o + 4x1e",
                                       num_layers=3, sh_lmax=2, num_radial=8, radial_cutoff=6.0, graph_cutoff=None,
                                       average_neighbours=4.0, atom_count_histogram=torch.tensor([0, 0, 1, 1, 1, 1]))
    ge = small_ge(depth=2, latent_channels=4, num_classes=0, class_dropout=0.0)
    for p in ge.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return embedder.eval(), ge.eval()


def latents(embedder, ge, elements, positions, seed=7):
    batch = Batch.from_data_list([Data(element=elements, pos=positions, num_atoms=len(elements))])
    torch.manual_seed(seed)  # same pass-1 noise for every call
    with torch.no_grad():
        return ge.tokenize(embedder(batch))[0]


def test_rotation_and_translation_invariance():
    embedder, ge = build()
    base = latents(embedder, ge, ELEMENTS, POSITIONS)
    rotation = o3.rand_matrix()
    moved = POSITIONS @ rotation.T + torch.tensor([3.0, -1.0, 2.0])
    assert torch.allclose(latents(embedder, ge, ELEMENTS, moved), base, atol=1e-4)


def test_permutation_equivariance():
    embedder, ge = build()
    base = latents(embedder, ge, ELEMENTS, POSITIONS)
    perm = torch.tensor([3, 0, 4, 1, 2])
    # the pass-1 noise is drawn per slot, so permute it too: give each slot the noise of its atom
    torch.manual_seed(7)
    noise = torch.randn(1, 5, 4)
    def tokenize_with(elements, positions, slot_noise):
        batch = Batch.from_data_list([Data(element=elements, pos=positions, num_atoms=5)])
        obs = embedder(batch)
        with torch.no_grad():
            return ge(slot_noise, torch.zeros(1), None, obs.layout, obs, force_null_class=True)[0]
    a = tokenize_with(ELEMENTS, POSITIONS, noise)
    b = tokenize_with(ELEMENTS[perm], POSITIONS[perm], noise[:, perm])
    assert torch.allclose(a[perm], b, atol=1e-5)


def test_reflection_changes_latent_of_chiral_molecule():
    embedder, ge = build()
    base = latents(embedder, ge, ELEMENTS, POSITIONS)
    mirrored = POSITIONS * torch.tensor([-1.0, 1.0, 1.0])
    assert (latents(embedder, ge, ELEMENTS, mirrored) - base).abs().max() > 1e-3


def test_parity_odd_scalars_are_required():
    with pytest.raises(ValueError, match="0o"):
        EquivariantAtomEmbedder(width=8, num_elements=5, hidden_irreps="8x0e + 4x1o", num_layers=2, sh_lmax=1,
                                num_radial=4, radial_cutoff=5.0, graph_cutoff=None, average_neighbours=4.0,
                                atom_count_histogram=torch.ones(4))


def test_generation_layout_follows_histogram():
    embedder, _ = build()
    counts = embedder.atom_counts.sample(4000, torch.Generator().manual_seed(0))
    assert set(counts.tolist()) <= {2, 3, 4, 5}
    assert abs(float((counts == 2).float().mean()) - 0.25) < 0.03
    layout = embedder.generation_layout(6, torch.device("cpu"))
    assert layout.mask.shape[0] == 6 and bool((layout.mask.sum(1) >= 2).all())


def test_edges_complete_and_cutoff():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0], [0.0, 0, 0], [0.0, 2.0, 0]])
    batch = torch.tensor([0, 0, 0, 1, 1])
    complete = molecule_edges(pos, batch, None)
    assert complete.shape[1] == 3 * 2 + 2 * 1
    assert set(map(tuple, molecule_edges(pos, batch, 1.5).T.tolist())) == {(0, 1), (1, 0)}
