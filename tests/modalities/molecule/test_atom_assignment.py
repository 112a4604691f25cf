"""Optimal assignment within each element: permuted and rotated copies, the given order when it is best, padding."""
import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem
from scipy.spatial.transform import Rotation

from modalities.molecule.evaluation.atom_assignment import element_assignment, permutation_aware_rmsd, reorder
from modalities.molecule.evaluation.reconstruction_metrics import kabsch_rmsd
from modalities.molecule.model.losses import aligned_coordinate_mse, permutation_aware_coordinate_mse

SMILES = ["CC(C)(C)O", "c1ccccc1C(=O)N", "C", "OCC#N"]


def padded_batch():
    """[B, N] elements, [B, N, 3] positions (Å), [B, N] mask of MMFF molecules; padding filled with junk."""
    molecules = []
    for smiles in SMILES:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=0)
        AllChem.MMFFOptimizeMolecule(mol)
        molecules.append(([a.GetAtomicNum() for a in mol.GetAtoms()], mol.GetConformer().GetPositions()))
    n = max(len(z) for z, _ in molecules)
    elements = torch.full((len(SMILES), n), 99)
    positions = torch.full((len(SMILES), n, 3), 7.0, dtype=torch.float64)
    mask = torch.zeros(len(SMILES), n, dtype=torch.bool)
    for i, (z, x) in enumerate(molecules):
        elements[i, :len(z)], positions[i, :len(z)], mask[i, :len(z)] = torch.tensor(z), torch.from_numpy(x), True
    return elements, positions, mask


def shuffled_within_elements(elements, mask, seed):
    """[B, N] order that exchanges only atoms of equal element (a random permutation within each element)."""
    rng = np.random.default_rng(seed)
    order = torch.arange(mask.shape[1]).repeat(mask.shape[0], 1)
    for b in range(mask.shape[0]):
        for value in elements[b][mask[b]].unique():
            atoms = torch.nonzero(mask[b] & (elements[b] == value)).flatten()
            order[b, atoms] = atoms[torch.from_numpy(rng.permutation(len(atoms)))]
    return order


def rotated(positions, seed):
    rotations = torch.from_numpy(Rotation.random(positions.shape[0], random_state=seed).as_matrix())
    return positions @ rotations.transpose(1, 2) + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_for_a_permuted_and_rotated_copy(seed):
    elements, target, mask = padded_batch()
    order = shuffled_within_elements(elements, mask, seed)
    prediction = rotated(reorder(target, order), seed)
    assert (kabsch_rmsd(prediction, target, mask)[:2] > 0.3).all()  # the given order is far off
    assert permutation_aware_rmsd(prediction, target, mask, elements).max() < 1e-6
    loss = permutation_aware_coordinate_mse(prediction, target, mask, elements, frame_search=True)
    assert float(loss) < 1e-10


def test_without_frame_search_a_shuffled_rotated_copy_can_stay_unmatched():
    # why the metric searches frames: from the given order's alignment the rounds stop in a local optimum
    elements, target, mask = padded_batch()
    prediction = rotated(reorder(target, shuffled_within_elements(elements, mask, 0)), 0)
    assert permutation_aware_rmsd(prediction, target, mask, elements, frame_search=False).max() > 0.5


def swapped_equivalent_hydrogens(elements, target, mask, seed):
    """Order exchanging hydrogens only among those bonded to the same heavy atom (a methyl's three H)."""
    rng = np.random.default_rng(seed)
    order = torch.arange(mask.shape[1]).repeat(mask.shape[0], 1)
    for b in range(mask.shape[0]):
        atoms = torch.nonzero(mask[b]).flatten()
        hydrogens = atoms[elements[b, atoms] == 1]
        heavy = atoms[elements[b, atoms] != 1]
        nearest = heavy[torch.cdist(target[b, hydrogens], target[b, heavy]).argmin(1)]
        for centre in nearest.unique():
            group = hydrogens[nearest == centre]
            order[b, group] = group[torch.from_numpy(rng.permutation(len(group)))]
    return order


@pytest.mark.parametrize("seed", [0, 1])
def test_default_loss_undoes_swapped_equivalent_hydrogens_at_any_rotation(seed):
    elements, target, mask = padded_batch()
    prediction = rotated(reorder(target, swapped_equivalent_hydrogens(elements, target, mask, seed)), seed)
    assert float(aligned_coordinate_mse(prediction, target, mask)) > 0.1
    assert float(permutation_aware_coordinate_mse(prediction, target, mask, elements)) < 1e-10


def test_equals_plain_aligned_mse_when_the_order_is_already_best():
    elements, target, mask = padded_batch()
    noisy = target + 0.02 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    prediction = rotated(noisy, 3)
    order = element_assignment(prediction, target, mask, elements)
    assert torch.equal(order, torch.arange(mask.shape[1]).repeat(mask.shape[0], 1))
    assert torch.equal(permutation_aware_coordinate_mse(prediction, target, mask, elements),
                       aligned_coordinate_mse(prediction, target, mask))


def test_padding_is_left_in_place_and_ignored():
    elements, target, mask = padded_batch()
    order = shuffled_within_elements(elements, mask, seed=0)
    prediction = rotated(reorder(target, order), 0)
    found = element_assignment(prediction, target, mask, elements)
    assert torch.equal(found[~mask], torch.arange(mask.shape[1]).repeat(mask.shape[0], 1)[~mask])
    junk = prediction.clone()
    junk[~mask] = -1e3
    batched = permutation_aware_rmsd(junk, target, mask, elements)
    for b in range(mask.shape[0]):  # each molecule alone, unpadded, gives the same answer
        n = int(mask[b].sum())
        alone = permutation_aware_rmsd(junk[b:b + 1, :n], target[b:b + 1, :n], mask[b:b + 1, :n], elements[b:b + 1, :n])
        assert float(alone) == pytest.approx(float(batched[b]), abs=1e-9)


def test_gradient_flows_to_the_prediction_only_and_shapes_are_checked():
    elements, target, mask = padded_batch()
    prediction = (target + 0.1).float().requires_grad_(True)
    loss = permutation_aware_coordinate_mse(prediction, target.float(), mask, elements)
    loss.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad[~mask].abs().max() == 0
    with pytest.raises(ValueError, match="elements"):
        element_assignment(target, target, mask, elements[:, :3])
