"""Shared test set-up: offline hubs, a fixed thread count, a composed config factory, --runslow."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def compose_config():
    """compose_config(overrides) -> the `train` config as `python -m core.train` would build it."""
    from hydra import compose, initialize_config_dir

    def compose_with(overrides: list[str], config_name: str = "train"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name, overrides=overrides)
    return compose_with
