"""The real GEOM-Drugs files, for users who have them: the `rdkit_folder` of Axelrod & Gomez-Bombarelli.

Online users get `rdkit_folder.tar.gz` from Harvard Dataverse (doi:10.7910/DVN/JNGTDF). Its layout:

    rdkit_folder/summary_drugs.json   {SMILES: {"pickle_path": "drugs/<name>.pickle", "charge": ..., ...}}
    rdkit_folder/drugs/<name>.pickle  {"smiles": ..., "conformers": [{"rd_mol": RDKit Mol with H and one
                                       conformer, "totalenergy": Hartree, "boltzmannweight": ...}, ...]}

Each split SMILES is looked up in the summary, first as written, then by canonical SMILES (the MiDi split's
SMILES are RDKit-canonical, GEOM's keys are not always); the molecule's lowest-`totalenergy` conformer
becomes its coordinates (one conformer per molecule, like the RDKit source; EDM uses the 30 lowest).
A pickle that cannot be read, or lacks those fields, is one counted failure naming the file.
Pickles execute code when read: read only GEOM files you trust (the Dataverse ones).
"""
from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

from modalities.molecule.data.geom_conformers import Conformer, Failure, conformer_from_mol

RDKIT_FOLDER_ENV = "UNITE_GEOM_RDKIT_FOLDER"
SUMMARY_FILE = "summary_drugs.json"


class GeomFolderMissing(FileNotFoundError):
    """The rdkit_folder (or its summary) is not where the config or the environment says."""


def rdkit_folder(path: str | Path | None) -> Path:
    """`path`, else $UNITE_GEOM_RDKIT_FOLDER; GeomFolderMissing naming both when neither holds the summary."""
    root = path if path is not None else os.environ.get(RDKIT_FOLDER_ENV)
    if not root:
        raise GeomFolderMissing(
            f"the real-GEOM source needs the unpacked rdkit_folder: set geom_build --rdkit-folder or "
            f"${RDKIT_FOLDER_ENV} to the folder holding {SUMMARY_FILE} (from Harvard Dataverse rdkit_folder.tar.gz)")
    folder = Path(root)
    if not (folder / SUMMARY_FILE).is_file():
        raise GeomFolderMissing(f"{folder} has no {SUMMARY_FILE}; point geom_build --rdkit-folder (or "
                                f"${RDKIT_FOLDER_ENV}) at the unpacked rdkit_folder itself")
    return folder


def read_summary(folder: Path) -> dict[str, str | None]:
    """SMILES -> pickle path relative to `folder` (None where GEOM lists no pickle); ValueError naming the
    file when the summary is not a JSON object of objects."""
    path = folder / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable JSON file ({error}); re-extract rdkit_folder.tar.gz") from None
    if not isinstance(summary, dict) or not all(isinstance(v, dict) for v in summary.values()):
        raise ValueError(f"{path}: expected an object mapping SMILES to objects with 'pickle_path'")
    return {smiles: entry.get("pickle_path") for smiles, entry in summary.items()}


def pickle_paths_for(split_smiles: list[str], folder: Path) -> list[str | None]:
    """Per split SMILES, the absolute path of its pickle, or None when the summary does not list one."""
    from modalities.molecule.evaluation.chemistry_metrics import canonicalize_smiles

    summary = read_summary(folder)
    found = [summary.get(s) for s in split_smiles]
    if any(f is None for f in found):  # second chance: canonical SMILES, computed for the summary once
        by_canonical = {}
        for key, relative in summary.items():
            canonical = canonicalize_smiles(key, isomeric=True)
            if canonical is not None and relative is not None:
                by_canonical.setdefault(canonical, relative)
        found = [f if f is not None else by_canonical.get(canonicalize_smiles(s, isomeric=True) or "")
                 for s, f in zip(split_smiles, found)]
    return [None if f is None else str(folder / f) for f in found]


def lowest_energy_conformer(pickle_path: str | Path, where: str) -> Conformer | Failure:
    """The conformer of lowest `totalenergy` in one GEOM pickle, or a `pickle` / `no_conformer` / `element`
    Failure whose message names `where` and the file."""
    where = f"{where} [{pickle_path}]"
    try:
        with open(pickle_path, "rb") as handle:
            record = pickle.load(handle)
    except Exception as error:  # truncated, not a pickle, a missing module: all mean "unreadable GEOM pickle"
        return Failure("pickle", f"{where}: cannot read the pickle ({type(error).__name__}: {error})")
    conformers = record.get("conformers") if isinstance(record, dict) else None
    if not isinstance(conformers, list):
        return Failure("pickle", f"{where}: expected a dict with a 'conformers' list, got {type(record).__name__}")
    usable = [c for c in conformers if isinstance(c, dict) and c.get("rd_mol") is not None
              and isinstance(c.get("totalenergy"), (int, float)) and math.isfinite(c["totalenergy"])]
    if not usable:
        return Failure("no_conformer", f"{where}: none of its {len(conformers)} conformers has an 'rd_mol' and "
                                       f"a finite 'totalenergy'")
    best = min(usable, key=lambda c: c["totalenergy"])
    mol = best["rd_mol"]
    if not hasattr(mol, "GetConformer"):
        return Failure("pickle", f"{where}: 'rd_mol' is a {type(mol).__name__}, not an RDKit molecule")
    return conformer_from_mol(mol, -1, float(best["totalenergy"]), where)
