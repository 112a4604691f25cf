import pytest
import torch
from e3nn import o3

from modalities.molecule.evaluation.reconstruction_metrics import kabsch_align, kabsch_rmsd
from modalities.molecule.model.losses import (ReconstructionLoss, aligned_coordinate_mse, centred_coordinate_mse,
                                              element_cross_entropy, pairwise_distance_mse)


def rigid_copy(points):
    return points @ o3.rand_matrix().T + torch.tensor([1.5, -2.0, 0.3])


def test_coordinate_losses_vanish_for_rotated_copy():
    torch.manual_seed(0)
    target = torch.randn(3, 7, 3)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[2, 5:] = False
    prediction = torch.stack([rigid_copy(t) for t in target])
    assert float(aligned_coordinate_mse(prediction, target, mask)) < 1e-10
    assert float(pairwise_distance_mse(prediction, target, mask)) < 1e-10
    assert float(kabsch_rmsd(prediction, target, mask).max()) < 1e-5


def test_mirror_image_is_not_aligned_away():
    torch.manual_seed(0)
    target = torch.randn(1, 6, 3)
    mask = torch.ones(1, 6, dtype=torch.bool)
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0])
    assert float(kabsch_rmsd(mirrored, target, mask)) > 0.1  # proper rotations only
    assert float(pairwise_distance_mse(mirrored, target, mask)) < 1e-10  # distances cannot see chirality


def test_aligned_mse_closed_form_for_translated_noise():
    target = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [0.0, 1.0, 0], [0.0, 0, 1.0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    moved = kabsch_align(target + 5.0, target, mask)
    assert torch.allclose(moved, target, atol=1e-5)


def test_padding_is_ignored_and_gradients_finite():
    torch.manual_seed(0)
    target = torch.randn(2, 5, 3)
    prediction = torch.randn(2, 5, 3, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    loss = aligned_coordinate_mse(prediction, target, mask) + pairwise_distance_mse(prediction, target, mask)
    loss.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad[1, 3:].abs().max() == 0
    logits = torch.zeros(2, 5, 4)
    elements = torch.zeros(2, 5, dtype=torch.long)
    assert torch.allclose(element_cross_entropy(logits, elements, mask), torch.log(torch.tensor(4.0)))


def test_centred_mse_ignores_translation_but_not_rotation():
    torch.manual_seed(0)
    target = torch.randn(2, 6, 3)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    shifted = target + torch.tensor([2.0, -1.0, 0.5])
    shifted[1, 4:] = 100.0  # padding: ignored
    assert float(centred_coordinate_mse(shifted, target, mask)) < 1e-10
    rotated = target @ o3.rand_matrix().T
    assert float(centred_coordinate_mse(rotated, target, mask)) > 0.1


def test_centred_mse_closed_form():
    """Two atoms at ±1 on x predicted at ±2 on x: each atom is 1 Å off, so the MSE is 1 Å²."""
    target = torch.tensor([[[1.0, 0, 0], [-1.0, 0, 0]]])
    prediction = 2 * target
    assert torch.allclose(centred_coordinate_mse(prediction, target, torch.ones(1, 2, dtype=torch.bool)),
                          torch.tensor(1.0))


def test_short_distance_mse_keeps_only_pairs_closer_than_cutoff():
    """Atoms at x = 0, 1, 3: the pairs closer than 1.5 Å in the target are (0, 1) only; stretching only the
    long pair changes nothing, stretching the short pair by 0.5 Å gives 0.25 Å²."""
    target = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    far_moved = torch.tensor([[[0.0, 0, 0], [1.0, 0, 0], [4.0, 0, 0]]])
    assert float(pairwise_distance_mse(far_moved, target, mask, cutoff=1.5)) < 1e-10
    assert float(pairwise_distance_mse(far_moved, target, mask)) > 0.1
    near_moved = torch.tensor([[[0.0, 0, 0], [1.5, 0, 0], [3.0, 0, 0]]])
    assert torch.allclose(pairwise_distance_mse(near_moved, target, mask, cutoff=1.5), torch.tensor(0.25))


def _loss(**changes):
    options = dict(element_weight=1.0, coordinate_weight=1.0, coordinate_frame="input", distance_weight=1.0,
                   short_distance_weight=1.0, short_distance_cutoff=2.0)
    options.update(changes)
    return ReconstructionLoss(**options)


def test_reconstruction_loss_is_the_weighted_sum_of_its_parts():
    torch.manual_seed(0)
    positions, predicted = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    logits, elements = torch.randn(2, 5, 4), torch.randint(0, 4, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.bool)
    loss, parts = _loss(element_weight=2.0, coordinate_weight=3.0, distance_weight=0.5,
                        short_distance_weight=0.25)(logits, predicted, elements, positions, mask)
    assert set(parts) == {"element_ce", "coordinate_mse", "distance_mse", "short_distance_mse"}
    expected = (2.0 * parts["element_ce"] + 3.0 * parts["coordinate_mse"] + 0.5 * parts["distance_mse"]
                + 0.25 * parts["short_distance_mse"])
    assert torch.allclose(loss, expected)
    _, parts = _loss(distance_weight=0.0, short_distance_weight=0.0)(logits, predicted, elements, positions, mask)
    assert set(parts) == {"element_ce", "coordinate_mse"}  # unweighted terms are not computed


def test_reconstruction_loss_of_perfect_prediction_is_zero_in_both_frames():
    torch.manual_seed(0)
    positions = torch.randn(2, 5, 3)
    elements = torch.randint(0, 4, (2, 5))
    logits = 1e4 * torch.nn.functional.one_hot(elements, 4).float()
    mask = torch.ones(2, 5, dtype=torch.bool)
    for frame, prediction in (("input", positions + 1.0), ("aligned", positions @ o3.rand_matrix().T)):
        loss, _ = _loss(coordinate_frame=frame)(logits, prediction, elements, positions, mask)
        assert float(loss) < 1e-8, frame


def test_reconstruction_loss_rejects_bad_options():
    with pytest.raises(ValueError, match="coordinate_frame"):
        _loss(coordinate_frame="kabsch")
    with pytest.raises(ValueError, match="short_distance_cutoff"):
        _loss(short_distance_cutoff=0.0)


def test_permutation_frame_forgives_swapped_equal_atoms_in_every_term():
    """Two hydrogens decoded in swapped order: zero loss under the permutation frame (coordinates and both
    distance terms), but not under the plain aligned frame."""
    torch.manual_seed(0)
    positions = torch.randn(1, 5, 3)
    elements = torch.tensor([[1, 0, 0, 2, 3]])
    logits = 1e4 * torch.nn.functional.one_hot(elements, 4).float()
    mask = torch.ones(1, 5, dtype=torch.bool)
    swapped = positions[:, [0, 2, 1, 3, 4]] @ o3.rand_matrix().T
    loss, parts = _loss(coordinate_frame="permutation")(logits, swapped, elements, positions, mask)
    assert float(loss) < 1e-8, parts
    loss, _ = _loss(coordinate_frame="aligned")(logits, swapped, elements, positions, mask)
    assert float(loss) > 1e-3
