import math

import pytest
import torch

from modalities.image.metrics import inception_score, patch_seam_ratio, psnr_per_image, ssim_per_image


def test_psnr_matches_its_closed_form():
    target = torch.zeros(3, 3, 8, 8)
    errors = torch.tensor([0.1, 0.01, 0.5])
    prediction = errors.view(3, 1, 1, 1).expand_as(target)  # MSE = c^2 -> PSNR = -20 log10(c) dB
    expected = torch.tensor([-20 * math.log10(c) for c in errors.tolist()])
    assert torch.allclose(psnr_per_image(prediction, target), expected, atol=1e-4)
    # one image's error does not leak into the others' values
    prediction = prediction.clone()
    prediction[1] = 0.2
    assert torch.allclose(psnr_per_image(prediction, target)[[0, 2]], expected[[0, 2]], atol=1e-4)


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    images = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim_per_image(images, images), torch.ones(2), atol=1e-5)
    noisy = (images + 0.2 * torch.randn_like(images)).clamp(0, 1)
    assert (ssim_per_image(noisy, images) < 0.9).all()


def test_inception_score_without_classifier_says_how_to_fix():
    with pytest.raises(ValueError, match="inception_score_classifier"):
        inception_score(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), None)
    with pytest.raises(FileNotFoundError, match="no such file"):
        inception_score(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), "/nonexistent/inception_logits.pt")


def test_patch_seam_ratio():
    torch.manual_seed(0)
    smooth = torch.linspace(0, 1, 16).view(1, 1, 1, 16) + torch.linspace(0, 1, 16).view(1, 1, 16, 1)
    assert torch.allclose(patch_seam_ratio(smooth.expand(2, 3, 16, 16), 4), torch.ones(2), atol=1e-5)
    blocks = torch.rand(1, 3, 4, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)  # constant 4 x 4 patches
    assert patch_seam_ratio(blocks + 0.01 * smooth, 4) > 50  # changes only at the borders
    noise = torch.rand(64, 3, 32, 32)
    assert abs(float(patch_seam_ratio(noise, 8).mean()) - 1) < 0.02
