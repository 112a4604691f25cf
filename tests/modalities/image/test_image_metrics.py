import math

import pytest
import torch

from modalities.image.metrics import inception_score, psnr_per_image, ssim_per_image


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
