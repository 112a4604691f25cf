"""Fixtures for the image tests: the offline CIFAR-10 JPEG archive (skip where it is absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# The checkout's sibling shared/ folder (as CI lays it out), else the env variable, else /work/shared.
_SIBLING = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar10-jpeg" / "cifar10_jpg.tgz"
CIFAR_ARCHIVE = Path(os.environ.get("UNITE_CIFAR10_JPEG", _SIBLING if _SIBLING.is_file()
                                    else "/work/shared/data/cifar10-jpeg/cifar10_jpg.tgz"))


@pytest.fixture(scope="session")
def cifar_archive() -> Path:
    if not CIFAR_ARCHIVE.is_file():
        pytest.skip(f"offline CIFAR-10 JPEG archive not found at {CIFAR_ARCHIVE} (set UNITE_CIFAR10_JPEG)")
    return CIFAR_ARCHIVE


@pytest.fixture(scope="session")
def cifar_root(cifar_archive) -> Path:
    """The unpacked archive (train/, test/) in the user's cache, unpacked once."""
    from modalities.image.datasets import cache_root, unpack_once
    return unpack_once(cifar_archive, cache_root(None) / "cifar10-jpeg")
