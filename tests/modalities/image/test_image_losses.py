import logging

import pytest
import torch
import torch.nn as nn

from modalities.image.losses import ImageReconstructionLoss, l1_loss


class MeanSquaredDistance(nn.Module):
    """A stand-in perceptual network: per-image mean squared difference, [B]."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((x - y) ** 2).flatten(1).mean(1)


def test_l1_is_the_mean_absolute_error():
    target = torch.zeros(2, 3, 4, 4)
    prediction = torch.full_like(target, 0.25)
    assert l1_loss(prediction, target).item() == pytest.approx(0.25)


def test_perceptual_off_says_so_once_and_the_logs_record_it(caplog):
    with caplog.at_level(logging.WARNING, logger="modalities.image.losses"):
        loss_fn = ImageReconstructionLoss(l1_weight=1.0, perceptual_weight=1.0, perceptual_network=None)
    off_lines = [r for r in caplog.records if "perceptual (LPIPS) loss is OFF" in r.getMessage()]
    assert len(off_lines) == 1 and "perceptual_network is null" in off_lines[0].getMessage()
    loss, parts = loss_fn(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
    assert loss.item() == pytest.approx(1.0)
    assert parts["perceptual_on"].item() == 0.0 and "perceptual" not in parts
    assert loss_fn.describe() == "1.0*L1 (perceptual off)"


def test_perceptual_on_from_a_local_torchscript_file(tmp_path):
    path = tmp_path / "lpips_stand_in.pt"
    torch.jit.script(MeanSquaredDistance()).save(str(path))
    loss_fn = ImageReconstructionLoss(l1_weight=1.0, perceptual_weight=0.5, perceptual_network=str(path))
    prediction = torch.zeros(2, 3, 4, 4, requires_grad=True)
    loss, parts = loss_fn(prediction, torch.ones(2, 3, 4, 4))
    assert parts["perceptual_on"].item() == 1.0 and parts["perceptual"].item() == pytest.approx(1.0)
    assert loss.item() == pytest.approx(1.0 + 0.5 * 1.0)
    loss.backward()
    assert prediction.grad is not None and "LPIPS" in loss_fn.describe()


def test_missing_perceptual_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="modality.loss.perceptual_network=.*no such file"):
        ImageReconstructionLoss(1.0, 1.0, str(tmp_path / "missing.pt"))
    (tmp_path / "not_torchscript.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a loadable TorchScript"):
        ImageReconstructionLoss(1.0, 1.0, str(tmp_path / "not_torchscript.pt"))
