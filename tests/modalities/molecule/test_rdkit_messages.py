"""RDKit's log lines during an evaluation: not printed, counted by kind, worker processes included."""
import numpy as np
import torch
from rdkit import Chem

from modalities.molecule.evaluate import evaluate_molecules, markdown_table
from modalities.molecule.evaluation.metrics import parallel_map
from modalities.molecule.evaluation.rdkit_messages import counting_rdkit_messages, message_kind
from modalities.molecule.evaluation.sample_writer import write_molecule_samples

from rdkit_warning import LONE_H, lone_hydrogen_warning  # its own light module: spawned workers import it


def test_message_kind_drops_time_stamp_and_numbers():
    assert message_kind(f"[05:00:01] {LONE_H}\n") == LONE_H
    assert message_kind("[12:34:56] Explicit valence for atom # 3 N, 4, is greater") == \
        "Explicit valence for atom # # N, #, is greater"


def test_counted_not_printed_and_nested_blocks_add_up(capfd):
    with counting_rdkit_messages() as outer:
        lone_hydrogen_warning(0)
        with counting_rdkit_messages() as inner:
            lone_hydrogen_warning(1)
            Chem.MolFromSmiles("C1CC")  # an ERROR line of another kind
    assert inner == {LONE_H: 1, "SMILES Parse Error: unclosed ring for input: 'C1CC'": 1}
    assert outer == {LONE_H: 2, "SMILES Parse Error: unclosed ring for input: 'C1CC'": 1}
    assert capfd.readouterr().err == ""


def test_worker_processes_send_their_counts_back():
    with counting_rdkit_messages() as counts:
        results = parallel_map(lone_hydrogen_warning, list(range(200)), workers=2, chunksize=50)
    assert results == list(range(200)) and counts == {LONE_H: 200}


def lone_hydrogen_molecule():
    """Water plus a hydrogen 3 Å away: EDM bonds nothing to it, so drawing it (RemoveHs) makes RDKit warn."""
    z = torch.tensor([8, 1, 1, 1])
    x = torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [3.0, 0, 0]])
    return z, x


def test_evaluation_files_count_messages_from_writing_and_drawing(tmp_path, capfd):
    write_molecule_samples([lone_hydrogen_molecule()] * 3, tmp_path, "edm", None, fcd=False, workers=0)
    assert capfd.readouterr().err.count("WARNING") == 0
    saved = (tmp_path / "evaluation.md").read_text()
    assert f"3 × `{LONE_H}`" in saved
    result = evaluate_molecules([lone_hydrogen_molecule()], None, routes=("edm",), fcd=False)
    assert result["rdkit_messages"] == {} and "RDKit messages" not in markdown_table(result)
    assert np.isfinite(result["stability"]["atom_stability"])
