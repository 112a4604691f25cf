import torch
from e3nn import o3

from modalities.molecule.evaluation.reconstruction_metrics import kabsch_align, kabsch_rmsd
from modalities.molecule.model.losses import aligned_coordinate_mse, element_cross_entropy, pairwise_distance_mse


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
