import pytest
import torch

from modalities.image.patches import grid_coordinates, patch_grid, patchify, sincos_2d, unpatchify


@pytest.mark.parametrize("size,patch,channels", [(32, 4, 3), (32, 8, 3), (16, 2, 1), (48, 16, 3)])
def test_patchify_unpatchify_round_trip(size, patch, channels):
    images = torch.randn(2, channels, size, size)
    tokens = patchify(images, patch)
    assert tokens.shape == (2, (size // patch) ** 2, patch * patch * channels)
    assert torch.equal(unpatchify(tokens, patch, size, size, channels), images)


def test_token_n_holds_the_patch_at_its_grid_cell():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    tokens = patchify(images, 4)  # 2 x 2 grid
    coords = grid_coordinates(2, 2)
    for n, (row, col) in enumerate(coords.long().tolist()):
        patch = images[:, :, 4 * row:4 * row + 4, 4 * col:4 * col + 4]  # [B, C, p, p]
        assert torch.equal(tokens[:, n], patch.permute(0, 2, 3, 1).reshape(2, -1))  # (row, col, channel) order


def test_size_not_divisible_by_patch_names_the_keys():
    with pytest.raises(ValueError, match=r"modality.image_size=30 is not divisible by modality.patch_size=4"):
        patch_grid(30, 4)
    with pytest.raises(ValueError, match="modality.patch_size"):
        patchify(torch.zeros(1, 3, 30, 30), 4)
    assert patch_grid(256, 16) == 16


def test_sincos_slots_are_distinct_per_position():
    emb = sincos_2d(64, 4, 4)
    assert emb.shape == (16, 64)
    distances = torch.cdist(emb, emb) + torch.eye(16)
    assert distances.min() > 0.1
