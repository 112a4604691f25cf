"""The equivariant encoder and the tokenize pass: permutation-equivariant always; with invariant tokens the
latent is invariant to rotation and translation but changes under reflection of a chiral molecule; with
frame tokens (the default) the features rotate with the molecule exactly as their irreps say, translation
changes nothing, and symmetry-equivalent atoms (methane's H) get different tokens."""
import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

from modalities.molecule.model.corruption import AtomCorruption
from modalities.molecule.model.equivariant_embedder import EquivariantAtomEmbedder
from modalities.molecule.model.graph import molecule_edges
from small_models import small_ge

# (R)-CHFClBr-like chiral centre with QM9 elements: C bonded to H, F, O, N at a tetrahedron, distorted so
# that no mirror plane exists.
ELEMENTS = torch.tensor([1, 0, 4, 3, 2])  # C H F O N as indices into [H, C, N, O, F]
POSITIONS = torch.tensor([[0.0, 0.0, 0.0], [0.63, 0.63, 0.63], [-0.80, -0.75, 0.70], [-0.70, 0.82, -0.72],
                          [0.74, -0.70, -0.79]], dtype=torch.float64).float()


NO_CORRUPTION = AtomCorruption(element_mask_fraction=0.0, jitter_fraction=0.0, jitter_std=0.0)
# methane: C at the centre, four H at a regular tetrahedron (C-H 1.09 Å); the four H are equivalent
METHANE_ELEMENTS = torch.tensor([1, 0, 0, 0, 0])
METHANE = torch.tensor([[0.0, 0.0, 0.0], [1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) * torch.tensor(
    [[0.0], [1.09 / 3 ** 0.5], [1.09 / 3 ** 0.5], [1.09 / 3 ** 0.5], [1.09 / 3 ** 0.5]])


def make_embedder(tokens="invariant", hidden_irreps="8x0e + 4x0o + 4x1o + 4x1e", index_slots="none"):
    return EquivariantAtomEmbedder(width=32, num_elements=5, tokens=tokens, hidden_irreps=hidden_irreps,
                                   num_layers=3, sh_lmax=2, num_radial=8, radial_cutoff=6.0, graph_cutoff=None,
                                   average_neighbours=4.0, coordinate_hidden=16, index_slots=index_slots,
                                   atom_count_histogram=torch.tensor([0, 0, 1, 1, 1, 1]),
                                   corruption=NO_CORRUPTION)


def build(seed=0, tokens="invariant"):
    torch.manual_seed(seed)
    embedder = make_embedder(tokens)
    ge = small_ge(depth=2, latent_channels=4, num_classes=0, class_dropout=0.0)
    for p in ge.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return embedder.eval(), ge.eval()


def latents(embedder, ge, elements, positions, seed=7):
    batch = Batch.from_data_list([Data(element=elements, pos=positions, num_atoms=len(elements))])
    torch.manual_seed(seed)  # same pass-1 noise for every call
    with torch.no_grad():
        return ge.tokenize(embedder(batch))[0]


def test_invariant_tokens_are_invariant_to_rotation_and_translation():
    embedder, ge = build()
    base = latents(embedder, ge, ELEMENTS, POSITIONS)
    rotation = o3.rand_matrix()
    moved = POSITIONS @ rotation.T + torch.tensor([3.0, -1.0, 2.0])
    assert torch.allclose(latents(embedder, ge, ELEMENTS, moved), base, atol=1e-4)


@pytest.mark.parametrize("tokens", ["invariant", "frame"])
def test_permutation_equivariance(tokens):
    embedder, ge = build(tokens=tokens)
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


@pytest.mark.parametrize("tokens", ["invariant", "frame"])
def test_reflection_flips_parity_odd_scalars_of_chiral_molecule(tokens):
    """A mirror image keeps every true scalar (0e) and flips every pseudoscalar (0o), which are not zero for
    a chiral centre, so mirror images get different tokens under both token kinds."""
    torch.manual_seed(0)
    embedder = make_embedder(tokens).double()
    irreps = embedder.layers[-1].irreps_out
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    base = _features(embedder, ELEMENTS, POSITIONS.double())
    mirrored = _features(embedder, ELEMENTS, POSITIONS.double() @ mirror)
    for (_, ir), part in zip(irreps, irreps.slices()):
        if ir.l == 0:
            sign = 1.0 if ir.p == 1 else -1.0
            assert torch.allclose(mirrored[:, part], sign * base[:, part], atol=1e-6 * base.abs().max())
            if ir.p == -1:
                assert base[:, part].abs().max() > 1e-3
    batch = lambda pos: Batch.from_data_list([Data(element=ELEMENTS, pos=pos.float(), num_atoms=5)])
    with torch.no_grad():
        embedder = embedder.float()
        difference = embedder(batch(POSITIONS @ mirror.float())).tokens - embedder(batch(POSITIONS)).tokens
    assert difference.abs().max() > 1e-5


def test_parity_odd_scalars_are_required():
    with pytest.raises(ValueError, match="0o"):
        make_embedder(hidden_irreps="8x0e + 4x1o")


def test_unknown_token_kind_is_named():
    with pytest.raises(ValueError, match="modality.embedder.tokens"):
        make_embedder(tokens="frames")


def _features(embedder, elements, positions):
    with torch.no_grad():
        return embedder.atom_features(elements, positions, torch.zeros(len(elements), dtype=torch.long))


def test_frame_features_rotate_as_their_irreps():
    """Every e3nn channel of a frame token transforms exactly as declared: the last layer's irreps by their
    Wigner matrices, the element embedding not at all."""
    torch.manual_seed(0)
    embedder = make_embedder("frame").double()
    positions = POSITIONS.double()
    rotation = o3.rand_matrix(dtype=torch.float64)
    irreps = embedder.layers[-1].irreps_out
    n_irreps, n_elements = irreps.dim, embedder.element_embedding.embedding_dim
    base = _features(embedder, ELEMENTS, positions)
    turned = _features(embedder, ELEMENTS, positions @ rotation.T)
    expected = torch.cat([base[:, :n_irreps] @ irreps.D_from_matrix(rotation).T, base[:, n_irreps:]], dim=-1)
    assert base.shape[1] == n_irreps + n_elements
    # e3nn's kernels are not all float64 inside: agreement to ~1e-7 of the features' scale
    assert torch.allclose(turned, expected, atol=1e-6 * float(base.abs().max()))
    assert not torch.allclose(turned, base, atol=1e-3)


def _tokens(embedder, elements, positions):
    batch = Batch.from_data_list([Data(element=elements, pos=positions, num_atoms=len(elements))])
    with torch.no_grad():
        return embedder(batch).tokens[0]


def test_frame_tokens_ignore_translation_but_follow_rotation():
    torch.manual_seed(0)
    embedder = make_embedder("frame").eval()
    torch.nn.init.normal_(embedder.to_tokens[-1].weight)  # the zero-initialised environment map, switched on
    base = _tokens(embedder, ELEMENTS, POSITIONS)
    assert torch.allclose(_tokens(embedder, ELEMENTS, POSITIONS + torch.tensor([3.0, -1.0, 2.0])), base, atol=1e-4)
    assert not torch.allclose(_tokens(embedder, ELEMENTS, POSITIONS @ o3.rand_matrix().T), base, atol=1e-2)


def test_frame_tokens_start_as_coordinate_tokens():
    """The environment map starts at zero, so an untrained frame token is its coordinate token."""
    torch.manual_seed(0)
    embedder = make_embedder("frame").eval()
    batch = torch.zeros(len(ELEMENTS), dtype=torch.long)
    assert torch.allclose(_tokens(embedder, ELEMENTS, POSITIONS),
                          embedder.coordinate_tokens(ELEMENTS, POSITIONS, batch), atol=1e-6)


def test_methane_hydrogens_get_different_frame_tokens_but_equal_invariant_tokens():
    for tokens, differ in (("frame", True), ("invariant", False)):
        torch.manual_seed(0)
        embedder = make_embedder(tokens)
        batch = Batch.from_data_list([Data(element=METHANE_ELEMENTS, pos=METHANE, num_atoms=5)])
        with torch.no_grad():
            hydrogens = embedder(batch).tokens[0, 1:]  # [4, D]
        gap = (hydrogens[:, None] - hydrogens[None]).norm(dim=-1).max() / hydrogens.norm(dim=-1).mean()
        assert bool(gap > 0.01) == differ, (tokens, float(gap))


def test_generation_layout_follows_histogram():
    embedder, _ = build()
    counts = embedder.atom_counts.sample(4000, torch.Generator().manual_seed(0))
    assert set(counts.tolist()) <= {2, 3, 4, 5}
    assert abs(float((counts == 2).float().mean()) - 0.25) < 0.03
    layout = embedder.generation_layout(6, torch.device("cpu"))
    assert layout.mask.shape[0] == 6 and bool((layout.mask.sum(1) >= 2).all())
    assert layout.slots is None  # index_slots=none: the latent tokens are a set


def test_index_slots_reach_both_passes_and_generation_alike():
    """With index_slots=sinusoidal, slot i of a training molecule and slot i of a generated one carry the
    same embedding of i, so what the denoiser learned about atom i applies when it generates."""
    embedder = make_embedder(index_slots="sinusoidal")
    batch = Batch.from_data_list([Data(element=METHANE_ELEMENTS, pos=METHANE, num_atoms=5)] * 2)
    with torch.no_grad():
        training = embedder(batch).layout
    generated = embedder.generation_layout(3, torch.device("cpu"))
    assert training.slots.shape == (2, 5, 32) and generated.slots.shape[:2] == generated.mask.shape
    n = min(5, generated.slots.shape[1])
    assert torch.equal(training.slots[0, :n], generated.slots[0, :n]) and torch.equal(training.slots[0], training.slots[1])
    assert training.slots.stride(0) == 0  # one table for the batch: a view through LatentLayout.repeat


def test_edges_complete_and_cutoff():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0], [0.0, 0, 0], [0.0, 2.0, 0]])
    batch = torch.tensor([0, 0, 0, 1, 1])
    complete = molecule_edges(pos, batch, None)
    assert complete.shape[1] == 3 * 2 + 2 * 1
    assert set(map(tuple, molecule_edges(pos, batch, 1.5).T.tolist())) == {(0, 1), (1, 0)}
