"""Read and write molecules as XYZ (single or multi-molecule) and SDF files.

Two kinds of trouble are kept apart:
  * a malformed *file* (an atom count that is not a number, a coordinate that is not a number, a missing
    atom line, a broken bond block, no molecule at all) raises one `MoleculeFileError` naming the file
    and line -- the file has to be fixed;
  * a bad *molecule* in a well-formed file (unknown element, NaN coordinates, overlapping atoms, no
    atoms) is returned as a record with `problem` set; evaluation counts it invalid with that reason and
    carries on with the rest.
Readers ignore the bonds an SDF file carries: every bond route perceives bonds from the 3-D atoms, so
that files from any project are judged the same way. The total formal charge of an SDF record is kept.
A name ending in ".gz" (samples.xyz.gz, samples.sdf.gz) is gzip-compressed, for reading and writing; a
broken archive is a malformed file.
"""
from __future__ import annotations

import gzip
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase

from modalities.molecule.evaluation.bond_perception import input_problem, perceive
from modalities.molecule.evaluation.bond_tables import ATOMIC_NUMBER, SYMBOLS

MOLECULE_SUFFIXES = (".xyz", ".sdf", ".sd", ".mol")
GZIP_SUFFIX = ".gz"  # after a molecule suffix: samples.xyz.gz


class MoleculeFileError(ValueError):
    """A molecule file is malformed; the message names the file and the line."""


@dataclass
class MoleculeRecord:
    """One molecule as read from a file.

    atomic_numbers: [N] int64, 0 where the element could not be read.
    positions:      [N, 3] float32, Å.
    source:         "path:line" of the molecule's first line.
    name:           XYZ comment line or SDF title.
    charge:         total formal charge (SDF "M  CHG"/atom block); 0 for XYZ.
    problem:        why this molecule cannot be evaluated, or None.
    """

    atomic_numbers: torch.Tensor
    positions: torch.Tensor
    source: str = ""
    name: str = ""
    charge: int = 0
    problem: str | None = None


def molecule_suffix(path: str | Path) -> str | None:
    """The molecule file type of a name, compressed or not: 'a.XYZ' -> '.xyz', 'a.sdf.gz' -> '.sdf'; None if
    the name has no MOLECULE_SUFFIXES type."""
    name = Path(path).name.lower()
    if name.endswith(GZIP_SUFFIX):
        name = name[:-len(GZIP_SUFFIX)]
    suffix = Path(name).suffix
    return suffix if suffix in MOLECULE_SUFFIXES else None


def _compressed(path: Path) -> bool:
    return path.name.lower().endswith(GZIP_SUFFIX)


def read_text(path: str | Path) -> str:
    """A molecule file's text, decompressed when its name ends in .gz; an unreadable archive or a file that
    is not UTF-8 text raises MoleculeFileError naming the file."""
    path = Path(path)
    try:
        if _compressed(path):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise MoleculeFileError(f"{path}: not a readable gzip file ({error}); "
                                f"recompress it or drop the {GZIP_SUFFIX} suffix") from None
    except UnicodeDecodeError as error:
        raise MoleculeFileError(f"{path}: not a text file ({error})") from None


def write_text(path: str | Path, text: str) -> None:
    """Write text, gzip-compressed when the name ends in .gz. The archive records no file name or time, so
    the same molecules always give the same bytes (a committed file changes only when they do)."""
    path = Path(path)
    if not _compressed(path):
        path.write_text(text)
        return
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
        handle.write(text.encode("utf-8"))


def _element(token: str) -> int:
    """Atomic number of an element symbol ('C', 'cl', 'CL') or number ('6'); 0 if unknown."""
    if token.isdigit():
        z = int(token)
        return z if 0 < z < len(SYMBOLS) else 0
    return ATOMIC_NUMBER.get(token[:1].upper() + token[1:].lower(), 0)


def _record(numbers: list[int], coords: list[list[float]], source: str, name: str, charge: int,
            problem: str | None) -> MoleculeRecord:
    z = torch.tensor(numbers, dtype=torch.int64)
    x = torch.tensor(coords, dtype=torch.float32).reshape(-1, 3)
    if problem is None:
        problem = input_problem(z.numpy(), x.numpy())  # NaN/inf coordinates, overlapping atoms, no atoms
    return MoleculeRecord(z, x, source, name, charge, problem)


def _float(token: str, path: Path, line_no: int, line: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise MoleculeFileError(f"{path}:{line_no}: coordinate {token!r} is not a number in line {line!r}") from None


def _atom(element: str, coordinates: list[str], path: Path, line_no: int, line: str,
          problem: str | None) -> tuple[int, list[float], str | None]:
    """One atom line: (atomic number, [x, y, z] Å, the molecule's first problem so far or a new one).
    An unparsable number is a malformed file (raises); an unknown element or NaN is a bad molecule."""
    xyz = [_float(t, path, line_no, line) for t in coordinates]
    z = _element(element)
    if problem is None and z == 0:
        problem = f"unknown element {element!r} at line {line_no}"
    if problem is None and not all(math.isfinite(v) for v in xyz):
        problem = f"non-finite coordinates at line {line_no}: {line.strip()!r}"
    return z, xyz, problem


def read_xyz(path: str | Path) -> list[MoleculeRecord]:
    """All molecules of an XYZ file, .xyz or .xyz.gz (one or several blocks; blank lines between blocks allowed).

    Each block: atom count; comment; one line per atom "Element x y z [extra columns]" in Å. The element
    may be a symbol or an atomic number.
    """
    path = Path(path)
    lines = read_text(path).splitlines()
    records, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        start = i + 1  # 1-based line number of the atom count
        try:
            count = int(lines[i].split()[0])
            if count < 0 or len(lines[i].split()) != 1:
                raise ValueError
        except ValueError:
            raise MoleculeFileError(f"{path}:{start}: expected an atom count, got {lines[i]!r}") from None
        if i + 1 >= len(lines):
            raise MoleculeFileError(f"{path}:{start}: file ends after the atom count (no comment line)")
        name = lines[i + 1].strip()
        numbers, coords, problem = [], [], None
        for k in range(count):
            line_no = start + 2 + k
            if i + 2 + k >= len(lines):
                raise MoleculeFileError(f"{path}:{line_no}: file ends inside a molecule: {count} atoms "
                                        f"announced at line {start}, {k} found")
            line = lines[i + 2 + k]
            tokens = line.split()
            if len(tokens) < 4:
                raise MoleculeFileError(f"{path}:{line_no}: expected 'Element x y z', got {line!r}")
            z, xyz, problem = _atom(tokens[0], tokens[1:4], path, line_no, line, problem)
            numbers.append(z)
            coords.append(xyz)
        records.append(_record(numbers, coords, f"{path}:{start}", name, 0, problem))
        i += 2 + count
    if not records:
        raise MoleculeFileError(f"{path}:1: empty file, no molecule found")
    return records


def _check_v2000(block: list[str], path: Path, first: int) -> tuple[list[int], list[list[float]], str | None]:
    """Atoms, coordinates and a molecule problem of one V2000 record; raises for malformed lines.

    block: the record's lines; first: 1-based file line number of block[0].
    """
    if len(block) < 4:
        raise MoleculeFileError(f"{path}:{first}: record has {len(block)} lines, a MOL block needs at least 4")
    counts = block[3]
    try:
        num_atoms, num_bonds = int(counts[0:3]), int(counts[3:6])
    except ValueError:
        raise MoleculeFileError(f"{path}:{first + 3}: bad counts line {counts!r} "
                                "(atoms in columns 1-3, bonds in 4-6)") from None
    if len(block) < 4 + num_atoms + num_bonds:
        raise MoleculeFileError(f"{path}:{first + len(block) - 1}: record ends early: counts line "
                                f"{first + 3} announces {num_atoms} atoms and {num_bonds} bonds")
    numbers, coords, problem = [], [], None
    for k in range(num_atoms):
        line, line_no = block[4 + k], first + 4 + k
        tokens = line.split()
        if len(tokens) < 4:
            raise MoleculeFileError(f"{path}:{line_no}: expected an atom line 'x y z Element ...', got {line!r}")
        z, xyz, problem = _atom(tokens[3], tokens[:3], path, line_no, line, problem)
        numbers.append(z)
        coords.append(xyz)
    for k in range(num_bonds):
        line, line_no = block[4 + num_atoms + k], first + 4 + num_atoms + k
        try:
            a, b, order = int(line[0:3]), int(line[3:6]), int(line[6:9])
            if not (1 <= a <= num_atoms and 1 <= b <= num_atoms and order >= 1):
                raise ValueError
        except ValueError:
            raise MoleculeFileError(f"{path}:{line_no}: bad bond line {line!r} (atoms 1..{num_atoms}, "
                                    "order >= 1)") from None
    return numbers, coords, problem


def read_sdf(path: str | Path) -> list[MoleculeRecord]:
    """All molecules of an SDF (or single MOL) file, plain or .gz, V2000 checked line by line, V3000 via RDKit."""
    path = Path(path)
    lines = read_text(path).splitlines()
    blocks, start = [], 0
    for i, line in enumerate(lines + ["$$$$"]):
        if line.strip() == "$$$$":
            if any(l.strip() for l in lines[start:i]):
                blocks.append((start, lines[start:i]))
            start = i + 1
    if not blocks:
        raise MoleculeFileError(f"{path}:1: empty file, no molecule found")
    records = []
    for offset, block in blocks:
        first = offset + 1
        v3000 = len(block) > 3 and "V3000" in block[3]
        numbers, coords, problem = ([], [], None) if v3000 else _check_v2000(block, path, first)
        with rdBase.BlockLogs():
            mol = Chem.MolFromMolBlock("\n".join(block), sanitize=False, removeHs=False, strictParsing=True)
        if mol is None and problem is None:
            raise MoleculeFileError(f"{path}:{first}: RDKit cannot parse the record starting here "
                                    "(check its atom, bond and property blocks and 'M  END')")
        charge = 0
        if mol is not None:
            charge = sum(atom.GetFormalCharge() for atom in mol.GetAtoms())
            if v3000:
                numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
                coords = mol.GetConformer().GetPositions().tolist() if mol.GetNumConformers() else []
                if mol.GetNumConformers() == 0:
                    problem = "record has no coordinates"
        records.append(_record(numbers, coords, f"{path}:{first}", block[0].strip(), charge, problem))
    return records


def read_molecules(path: str | Path) -> list[MoleculeRecord]:
    """Molecules of one .xyz/.sdf/.sd/.mol file (each also as .gz), or of every such file in a folder
    (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if molecule_suffix(p))
        if not files:
            raise MoleculeFileError(f"{path}: folder holds no {'/'.join(MOLECULE_SUFFIXES)} file (nor its .gz)")
        return [record for f in files for record in read_molecules(f)]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    suffix = molecule_suffix(path)
    if suffix == ".xyz":
        return read_xyz(path)
    if suffix in (".sdf", ".sd", ".mol"):
        return read_sdf(path)
    raise MoleculeFileError(f"{path}: unknown molecule file type {''.join(path.suffixes)!r}; use one of "
                            f"{MOLECULE_SUFFIXES}, each optionally followed by {GZIP_SUFFIX}")


Molecule = MoleculeRecord | tuple  # (atomic_numbers [N], positions [N, 3]) or (..., name)


def _unpack(molecule: Molecule, index: int) -> tuple[np.ndarray, np.ndarray, str, int]:
    if isinstance(molecule, MoleculeRecord):
        return (molecule.atomic_numbers.numpy(), molecule.positions.numpy(), molecule.name or f"molecule {index}",
                molecule.charge)
    z, x, *rest = molecule
    z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return z.astype(np.int64), x.astype(np.float64), str(rest[0]) if rest else f"molecule {index}", 0


def write_xyz(path: str | Path, molecules: Iterable[Molecule]) -> None:
    """Write molecules as one multi-molecule XYZ file (Å, 6 decimals; gzip when the name ends in .gz);
    element 0 is written as 'X'."""
    out = []
    for index, molecule in enumerate(molecules):
        z, x, name, _ = _unpack(molecule, index)
        out.append(str(len(z)))
        out.append(name.replace("\n", " "))
        out += [f"{SYMBOLS[int(zi)] if 0 < zi < len(SYMBOLS) else 'X'} {a:.6f} {b:.6f} {c:.6f}"
                for zi, (a, b, c) in zip(z, x)]
    write_text(path, "\n".join(out) + "\n")


def _atoms_only(z: np.ndarray, x: np.ndarray) -> Chem.Mol:
    mol = Chem.RWMol()
    for zi in z:
        mol.AddAtom(Chem.Atom(int(zi)))
    conf = Chem.Conformer(len(z))
    for i, p in enumerate(x):
        conf.SetAtomPosition(i, [float(v) for v in p])
    mol.AddConformer(conf, assignId=True)
    return mol.GetMol()


def write_sdf(path: str | Path, molecules: Iterable[Molecule | Chem.Mol], route: str = "edm") -> None:
    """Write molecules to an SDF file.

    An RDKit Mol is written with its own bonds. Atoms + coordinates get bonds from `route` (the bonded
    graph is written even when it does not sanitise, so a reader sees what the route saw); when the route
    gives no bonds (bad input, xyz2mol failure) the atoms alone are written. Properties `bond_route` and
    `invalid_reason` record what happened. A name ending in .gz is written gzip-compressed.
    """
    buffer = io.StringIO()  # written in one go below, compressed or not
    writer = Chem.SDWriter(buffer)
    try:
        for index, molecule in enumerate(molecules):
            if isinstance(molecule, Chem.Mol):
                mol, reason, used_route = Chem.Mol(molecule), "", "file"
            else:
                z, x, name, charge = _unpack(molecule, index)
                if z.ndim != 1 or x.shape != (len(z), 3):
                    raise ValueError(f"write_sdf: molecule {index} has atomic numbers of shape {z.shape} and "
                                     f"positions of shape {x.shape}; want [N] and [N, 3]")
                result = perceive(route, z, x, charge)
                mol = result.mol or result.graph or _atoms_only(z, x)
                reason, used_route = result.reason, route if (result.mol or result.graph) else "none"
                mol.SetProp("_Name", name)
            mol.UpdatePropertyCache(strict=False)
            mol.SetProp("bond_route", used_route)
            mol.SetProp("invalid_reason", reason)
            with rdBase.BlockLogs():
                try:
                    writer.write(mol)
                except Exception:  # an unsanitised graph with aromatic flags cannot be kekulised
                    writer.SetKekulize(False)
                    writer.write(mol)
                    writer.SetKekulize(True)
    finally:
        writer.close()
    write_text(path, buffer.getvalue())
