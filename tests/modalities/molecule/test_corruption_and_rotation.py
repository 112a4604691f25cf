"""ADiT's input corruption (masked elements, jittered atoms) and the training rotation of input and target."""
import pytest
import torch

from modalities.molecule.data.dataset import QM9Dataset
from modalities.molecule.model.corruption import AtomCorruption
from modalities.molecule.model.decoder import MoleculePrediction


def test_corruption_counts_mask_class_and_jitter_scale():
    element = torch.zeros(200, dtype=torch.long)
    pos = torch.zeros(200, 3)
    corrupt = AtomCorruption(element_mask_fraction=0.1, jitter_fraction=0.25, jitter_std=0.1)
    new_element, new_pos = corrupt(element, pos, mask_class=5, generator=torch.Generator().manual_seed(0))
    assert int((new_element == 5).sum()) == 20 and int((new_element == 0).sum()) == 180
    moved = new_pos.norm(dim=-1) > 0
    assert int(moved.sum()) == 50
    # per-axis std 0.1 Å: the moved atoms' coordinates have a sample std near 0.1
    assert abs(float(new_pos[moved].std()) - 0.1) < 0.02
    assert int(element.sum()) == 0 and float(pos.abs().sum()) == 0  # the inputs are left untouched


def test_zero_fractions_change_nothing():
    element, pos = torch.arange(5), torch.randn(5, 3)
    new_element, new_pos = AtomCorruption(0.0, 0.0, 0.1)(element, pos, mask_class=9)
    assert torch.equal(new_element, element) and torch.equal(new_pos, pos)


@pytest.mark.parametrize("key,value", [("element_mask_fraction", 1.5), ("jitter_fraction", -0.1),
                                       ("jitter_std", -1.0)])
def test_bad_corruption_options_are_named(key, value):
    options = dict(element_mask_fraction=0.1, jitter_fraction=0.1, jitter_std=0.1)
    options[key] = value
    with pytest.raises(ValueError, match=f"input_corruption.{key}"):
        AtomCorruption(**options)


@pytest.fixture(scope="module")
def qm9_data():
    from modalities.molecule.data.qm9 import load_qm9
    return load_qm9()


def test_random_rotation_keeps_the_shape_and_turns_each_draw(qm9_data):
    elements = ["H", "C", "N", "O", "F"]
    plain = QM9Dataset("train", "edm", elements, subset=3, cache_dir=None, data=qm9_data, random_rotation=False)
    turned = QM9Dataset("train", "edm", elements, subset=3, cache_dir=None, data=qm9_data, random_rotation=True)
    base = plain[2].pos
    first, second = turned[2].pos, turned[2].pos
    assert torch.allclose(torch.cdist(first, first), torch.cdist(base, base), atol=1e-4)
    assert torch.allclose(first.mean(0), torch.zeros(3), atol=1e-5)
    # a proper rotation: the best linear map from base to first has determinant +1
    rotation = torch.linalg.lstsq(base, first).solution
    assert torch.allclose(torch.linalg.det(rotation), torch.tensor(1.0), atol=1e-3)
    assert not torch.allclose(first, second, atol=1e-2)  # a fresh rotation on every read


def test_training_batch_rotation_is_shared_by_input_and_target(compose_config, qm9_data):
    """The rotated item is both what the embedder sees and what the loss compares with, so a perfect
    reconstruction of a rotated training batch has zero coordinate loss in the input frame."""
    from core.build import build_modality
    modality = build_modality(compose_config(["experiment=molecule_smoke"]))
    train = modality.dataset("train")
    assert train.random_rotation and not modality.dataset("test").random_rotation
    batch = modality.collate([train[i] for i in range(4)])
    elements, positions, mask = modality.dense_targets(batch)
    logits = 1e4 * torch.nn.functional.one_hot(elements, len(modality.elements)).float()
    loss, parts = modality.reconstruction_loss(MoleculePrediction(logits, positions, mask), batch)
    assert float(parts["coordinate_mse"]) < 1e-10 and float(loss) < 1e-6
