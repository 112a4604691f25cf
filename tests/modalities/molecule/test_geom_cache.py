"""The sharded GEOM-Drugs cache: shards in the split's fixed order, failures counted by reason, resumable."""
import gzip

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
from modalities.molecule.data import geom_cache  # noqa: E402
from modalities.molecule.data.geom_build import main as build_main  # noqa: E402
from modalities.molecule.data.geom_cache import build_cache, load_cached, shard_path  # noqa: E402
from modalities.molecule.data.geom_smiles import GeomSmilesMissing, read_split_smiles, split_order  # noqa: E402

# Small molecules (fast to embed) and two malformed SMILES: an unclosed ring and a non-kekulisable ring.
SMILES = ["CCO", "c1ccccc1O", "C1CC", "C[N+](C)(C)C", "CC(=O)[O-]", "c1cccc1", "CC#N", "OC1CCCC1"]
BAD = {2: "C1CC", 5: "c1cccc1"}


def _build(tmp_path, limit=None, workers=0, shard_size=3, smiles=SMILES):
    return build_cache("rdkit_conformers", "train", smiles, limit=limit, workers=workers, shard_size=shard_size,
                       cache_dir=tmp_path)


def test_split_order_is_a_fixed_permutation():
    assert sorted(split_order(8).tolist()) == list(range(8))
    np.testing.assert_array_equal(split_order(8), split_order(8))


def test_malformed_smiles_are_counted_and_the_rest_of_the_shard_is_kept(tmp_path):
    summary = _build(tmp_path)
    assert summary["molecules"] == 6 and summary["failures"] == {"parse": 2}
    data = load_cached("rdkit_conformers", "train", None, tmp_path)
    assert sorted(data.source_index.tolist()) == [0, 1, 3, 4, 6, 7]
    assert data.smiles == [SMILES[i] for i in data.source_index.tolist()]
    assert data.attempted == 8 and data.failure_counts["parse"] == 2
    failures = geom_cache.failure_messages("rdkit_conformers", "train", tmp_path)
    assert sorted(f["index"] for f in failures) == sorted(BAD)
    for failure in failures:  # one clear message naming the item
        assert f"#{failure['index']} ({BAD[failure['index']]})" in failure["message"]
        assert "cannot parse SMILES" in failure["message"]


def test_molecules_come_in_the_split_order_with_their_charges(tmp_path):
    _build(tmp_path)
    data = load_cached("rdkit_conformers", "train", None, tmp_path)
    kept = [i for i in split_order(len(SMILES)).tolist() if i not in BAD]
    assert data.source_index.tolist() == kept
    for m, index in enumerate(kept):
        z, q, x = data.molecule(m)
        assert x.shape == (len(z), 3)
        assert int(q.sum()) == {3: 1, 4: -1}.get(index, 0)  # tetramethylammonium +1, acetate -1
    first = load_cached("rdkit_conformers", "train", 2, tmp_path)
    assert len(first) == 2 and first.source_index.tolist() == kept[:2]


def test_interrupted_build_resumes_without_recomputing_finished_shards(tmp_path, monkeypatch):
    real, calls = geom_cache._produce, []

    def interrupted(task):
        calls.append(task[2])
        if len(calls) == 5:  # in shard 1 (molecules 3..5 of the order)
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(geom_cache, "_produce", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path)
    assert shard_path("rdkit_conformers", "train", 0, tmp_path).exists()
    assert not shard_path("rdkit_conformers", "train", 1, tmp_path).exists()
    assert not list(shard_path("rdkit_conformers", "train", 1, tmp_path).parent.glob("*.tmp*"))
    before = shard_path("rdkit_conformers", "train", 0, tmp_path).stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(geom_cache, "_produce", lambda task: calls.append(task[2]) or real(task))
    summary = _build(tmp_path)
    assert summary["shards_reused"] == [0] and summary["shards_built"] == [1, 2]
    assert calls == split_order(len(SMILES)).tolist()[3:]  # only the molecules of unfinished shards
    assert shard_path("rdkit_conformers", "train", 0, tmp_path).stat().st_mtime_ns == before
    assert summary["molecules"] == 6 and summary["failures"] == {"parse": 2}


def test_limit_covers_whole_shards_and_a_later_call_extends_the_cache(tmp_path):
    assert _build(tmp_path, limit=4)["shards_built"] == [0, 1]
    summary = _build(tmp_path)
    assert summary["shards_reused"] == [0, 1] and summary["shards_built"] == [2]


def test_unusable_shards_are_rebuilt_with_a_warning(tmp_path):
    _build(tmp_path)
    shard_path("rdkit_conformers", "train", 1, tmp_path).write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="shard_00001.pt: unreadable shard"):
        assert _build(tmp_path)["shards_built"] == [1]
    other = SMILES[:7] + ["CCCl"]  # another split file: every shard's digest differs
    with pytest.warns(UserWarning, match="split_digest"):
        assert _build(tmp_path, smiles=other)["shards_built"] == [0, 1, 2]


def test_tampered_shard_is_refused_when_loading(tmp_path):
    _build(tmp_path)
    path = shard_path("rdkit_conformers", "train", 0, tmp_path)
    record = torch.load(path, weights_only=True)
    record["positions"] = record["positions"][:-1]
    torch.save(record, path)
    with pytest.raises(ValueError, match="shard_00000.pt: atom arrays do not match"):
        load_cached("rdkit_conformers", "train", None, tmp_path)


def test_missing_cache_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="geom_build --split val"):
        load_cached("rdkit_conformers", "val", 10, tmp_path)


def test_worker_processes_give_the_same_shards(tmp_path):
    _build(tmp_path / "inline", workers=0)
    _build(tmp_path / "pool", workers=1)
    a = load_cached("rdkit_conformers", "train", None, tmp_path / "inline")
    b = load_cached("rdkit_conformers", "train", None, tmp_path / "pool")
    assert a.source_index.tolist() == b.source_index.tolist()
    torch.testing.assert_close(a.positions, b.positions)


def test_smiles_files_are_found_through_the_environment(tmp_path, monkeypatch):
    with gzip.open(tmp_path / "val.smi.gz", "wt") as handle:
        handle.write("CCO\n\nCCN\n")
    monkeypatch.delenv("UNITE_GEOM_SMILES", raising=False)
    with pytest.raises(GeomSmilesMissing, match="UNITE_GEOM_SMILES"):
        read_split_smiles("val", None)
    monkeypatch.setenv("UNITE_GEOM_SMILES", str(tmp_path))
    assert read_split_smiles("val", None) == ["CCO", "CCN"]
    with pytest.raises(GeomSmilesMissing, match="test.smi.gz"):
        read_split_smiles("test", None)


def test_command_line_builds_and_reports(tmp_path, capsys):
    with gzip.open(tmp_path / "train.smi.gz", "wt") as handle:
        handle.write("\n".join(SMILES) + "\n")
    report = build_main(["--split", "train", "--smiles-root", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                         "--workers", "0", "--shard-size", "4", "--report", str(tmp_path / "report.json")])
    assert report["coordinates"].endswith("not GEOM-CREST")
    assert report["molecules"] == 6 and report["failures"] == {"parse": 2}
    assert "failed (parse): GEOM-Drugs train #2 (C1CC)" in capsys.readouterr().out
