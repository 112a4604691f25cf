"""Fixtures for the image tests: the offline CIFAR-10 JPEG archive named by $UNITE_CIFAR10_JPEG (CI sets it
when the archive is present); tests that need it are skipped without it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cifar_archive() -> Path:
    archive = os.environ.get("UNITE_CIFAR10_JPEG")
    if archive is None or not Path(archive).is_file():
        pytest.skip(f"offline CIFAR-10 JPEG archive not found (UNITE_CIFAR10_JPEG={archive!r})")
    return Path(archive)


@pytest.fixture(scope="session")
def cifar_root(cifar_archive) -> Path:
    """The unpacked archive (train/, test/) in the user's cache, unpacked once."""
    from modalities.image.datasets import cache_root, unpack_once
    return unpack_once(cifar_archive, cache_root(None) / "cifar10-jpeg")
