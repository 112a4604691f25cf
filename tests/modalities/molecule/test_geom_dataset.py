"""GEOM-Drugs through the molecule modality: atom types with formal charges, the dataset, a short training run."""
import pytest
import torch

pytest.importorskip("rdkit")
from core.build import build_modality  # noqa: E402
from core.train import train  # noqa: E402
from modalities.molecule.data.geom_cache import build_cache, load_cached  # noqa: E402
from modalities.molecule.data.geom_dataset import (GeomDrugsDataset, atom_classes, atom_type_name,  # noqa: E402
                                                   atom_type_table, parse_atom_type)

# Tetramethylammonium (N+), acetate (O-), nitrobenzene (N+ and O-), and three neutral molecules.
SMILES = ["CCO", "C[N+](C)(C)C", "CC(=O)[O-]", "c1ccccc1O", "CC#N", "O=[N+]([O-])c1ccccc1"]
TYPES = ["H", "C", "N", "O", "N+", "O-"]
GEOM_PRESET = "experiment=geom_drugs_smoke"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("geom_cache")
    for split in ("train", "test"):
        build_cache("rdkit_conformers", split, SMILES, limit=None, workers=0, shard_size=4, cache_dir=root)
    return root


@pytest.mark.parametrize("name, expected", [("C", (6, 0)), ("N+", (7, 1)), ("O-", (8, -1)), ("S+2", (16, 2)),
                                            ("Cl", (17, 0)), ("Bi", (83, 0))])
def test_atom_types_parse_and_print_back(name, expected):
    assert parse_atom_type(name) == expected
    assert atom_type_name(*expected) == name


@pytest.mark.parametrize("name", ["Xx", "n+", "N++", "C+9", ""])
def test_bad_atom_type_names_the_entry(name):
    with pytest.raises(ValueError, match="modality.elements entry"):
        parse_atom_type(name)


def test_repeated_atom_type_is_refused():
    with pytest.raises(ValueError, match=r"\['N\+'\] more than once"):
        atom_type_table(["N", "N+", "N+1"])


def test_atom_classes_tell_charges_apart():
    table = atom_type_table(TYPES)
    z = torch.tensor([7, 7, 8, 8, 16, 7])
    q = torch.tensor([0, 1, -1, 0, 0, -1])
    assert atom_classes(z, q, table).tolist() == [2, 4, 5, 3, -1, -1]


def test_dataset_items_are_centred_and_carry_their_charges(cache):
    dataset = GeomDrugsDataset("train", "rdkit_conformers", TYPES, None, str(cache))
    z_table, q_table = atom_type_table(TYPES)
    assert len(dataset) == len(SMILES)
    for i in range(len(dataset)):
        item = dataset[i]
        z, q, _ = dataset.data.molecule(i)
        assert torch.equal(z_table[item.element], z) and torch.equal(q_table[item.element], q)
        assert item.pos.mean(0).abs().max() < 1e-5 and item.num_atoms == len(z)
    assert dataset.atom_counts().tolist() == dataset.data.num_atoms.tolist()


def test_an_atom_type_outside_the_vocabulary_names_the_molecule(cache):
    with pytest.raises(ValueError, match=r"\{'N\+': .*not in modality.elements.*add them"):
        GeomDrugsDataset("train", "rdkit_conformers", ["H", "C", "N", "O", "O-"], None, str(cache))


def test_modality_builds_geom_datasets_from_the_config(compose_config, cache):
    cfg = compose_config([GEOM_PRESET, f"modality.cache_dir={cache}", "modality.train_subset=null"])
    modality = build_modality(cfg)
    train_set = modality.dataset("train")
    assert isinstance(train_set, GeomDrugsDataset) and len(train_set) == len(SMILES)
    assert modality.atom_count_histogram().shape == (182,)
    charged = {atom_type_name(z, q) for z, q in zip(modality.atomic_numbers.tolist(), modality.formal_charges.tolist())}
    assert {"N+", "O-", "Hg", "Bi"} <= charged and len(charged) == len(modality.elements)


def test_geom_dataset_without_its_options_says_which_config_to_use(compose_config):
    cfg = compose_config(["modality=molecule", "modality.dataset=geom_drugs"])
    with pytest.raises(ValueError, match="modality=molecule_geom_drugs"):
        build_modality(cfg)


@pytest.fixture()
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_smoke_preset_trains_on_a_built_cache(compose_config, cache, tmp_path, one_thread):
    cfg = compose_config([GEOM_PRESET, f"modality.cache_dir={cache}", "modality.train_subset=null",
                          "modality.eval_subset=null", "trainer.max_steps=3", "trainer.batch_size=4",
                          "trainer.eval_batch_size=4", "trainer.threads=1", "sampler.num_samples=2",
                          "sampler.batch_size=2", f"trainer.out_dir={tmp_path}"])
    summary = train(cfg)
    assert summary["steps"] == 3 and 0.0 <= summary["reconstruction/element_accuracy"] <= 1.0
    assert (tmp_path / "samples" / "samples.sdf").is_file()


def test_cached_molecules_load_in_the_order_the_preset_reads(cache):
    first = load_cached("rdkit_conformers", "train", 3, cache)
    assert first.source_index.tolist() == load_cached("rdkit_conformers", "train", None, cache).source_index[:3].tolist()
