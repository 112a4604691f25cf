"""Evaluate a set of 3-D molecules: EDM stability, and per bond route validity, connectivity, uniqueness,
novelty (vs the reference training split) and FCD (vs the reference test split).

    python -m modalities.molecule.evaluate samples.sdf|samples.xyz[.gz]|folder --reference qm9 --split edm \
        [--routes edm xyz2mol openbabel] [--workers N] [--no-fcd] [--stereo] [--out results.json]

prints Markdown tables (each row names its bond route, sample count and reference split) and writes JSON.
`evaluate_molecules` is the same thing for molecules in memory (what `core.sample` calls).

Novelty follows EDM: the training geometries are run through the same bond route and a generated SMILES is
novel if that route never produced it (first run: 3-6 min for QM9 on 2 cores, then cached); novelty against the
dataset's own SMILES is reported next to it. FCD compares with the test split's own SMILES. Bond lengths per bond
type are compared with the test split's (Wasserstein-1, Å; rule in `evaluation/bond_lengths.py`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from modalities.molecule.evaluation.bond_lengths import BOND_TYPES, bond_length_report, pooled_bond_lengths
from modalities.molecule.evaluation.bond_perception import ROUTES, input_problem
from modalities.molecule.evaluation.chemistry_metrics import canonicalize_smiles, novelty
from modalities.molecule.evaluation.fcd import FCDStatistics, cached_reference_statistics, frechet_distance, statistics_of_sets
from modalities.molecule.evaluation.files import MoleculeFileError, read_molecules
from modalities.molecule.evaluation.metrics import MoleculeMetrics, assess_molecules, molecule_arrays
from modalities.molecule.evaluation.rdkit_messages import counting_rdkit_messages

REFERENCES = ("qm9",)
PERCEIVED_CACHE_VERSION = 2  # bump when a bond route changes what it perceives
BOND_LENGTH_CACHE_VERSION = 1  # bump when bond_lengths.BOND_RULE changes


@dataclass
class Reference:
    """What generated molecules are compared with.

    route_train_smiles: per bond route, the training geometries' SMILES as that route perceives them --
        EDM's novelty reference (a generated molecule is novel if the same route never produced its SMILES
        from a training molecule), so a route's own quirks cannot pass for novelty;
    dataset_train_smiles: the dataset's own SMILES of the training split, canonicalised (route-independent,
        reported as `novelty_vs_dataset_smiles`);
    test_statistics: ChemNet statistics of the test split's dataset SMILES, for FCD;
    test_bond_lengths: the test split's bond lengths (Å) by bond type, and how many molecules gave them.
    """

    name: str  # "qm9/edm"
    route_train_smiles: dict[str, set[str]]
    dataset_train_smiles: set[str]
    num_train: int
    test_statistics: FCDStatistics | None
    num_test: int
    test_bond_lengths: dict[str, np.ndarray] | None = None
    num_test_bond_molecules: int = 0


def _cache_dir(cache_dir: str | Path | None) -> Path:
    from modalities.molecule.data.qm9 import default_cache_dir
    return Path(cache_dir) if cache_dir else default_cache_dir()


def announce_cache(what: str, path: Path) -> None:
    """One line on stderr before a reference cache is built, so a first evaluation's minutes of work are
    not silent."""
    print(f"building a reference cache (first run only): {what} -> {path}", file=sys.stderr, flush=True)


def _cached_lines(path: Path, expected: int, make, what: str) -> list[str]:
    """Lines of a cache file, or `make()` written there first (announced as `what`); a file of the wrong
    length is rebuilt."""
    if path.exists():
        lines = path.read_text().split("\n")
        if len(lines) == expected:
            return lines
    announce_cache(what, path)
    lines = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return lines


def _qm9_digest(qm9) -> str:
    return hashlib.blake2b("\n".join(qm9.smiles).encode(), digest_size=8).hexdigest()


def canonical_qm9_smiles(cache_dir: str | Path | None = None, isomeric: bool = False) -> list[str]:
    """QM9's own SMILES (all 130,831, row order) in RDKit canonical form ("" if unparsable); cached."""
    from modalities.molecule.data.qm9 import load_qm9
    qm9 = load_qm9(cache_dir)
    path = _cache_dir(cache_dir) / "molecule_eval" / f"qm9_dataset_{'iso' if isomeric else 'flat'}_{_qm9_digest(qm9)}.txt"
    return _cached_lines(path, len(qm9), lambda: [canonicalize_smiles(s, isomeric) or "" for s in
                                                  tqdm(qm9.smiles, desc="QM9 SMILES, canonical", unit="molecule")],
                         f"QM9's own {len(qm9):,} SMILES in canonical form (novelty vs dataset SMILES, FCD)")


def perceived_qm9_smiles(route: str, cache_dir: str | Path | None = None, isomeric: bool = False,
                         workers: int = 1) -> list[str]:
    """SMILES of every QM9 geometry (row order) as bond route `route` perceives it ("" if invalid); cached.

    First call: about 40 s (edm), 45 s (xyz2mol), 80 s (openbabel) of one core for all 130,831 molecules.
    """
    from modalities.molecule.data.qm9 import load_qm9
    qm9 = load_qm9(cache_dir)
    name = f"qm9_{route}_v{PERCEIVED_CACHE_VERSION}_{'iso' if isomeric else 'flat'}_{_qm9_digest(qm9)}.txt"

    def make() -> list[str]:
        molecules = [qm9.molecule(i) for i in range(len(qm9))]
        assessed = assess_molecules(molecules, (route,), workers, isomeric, progress=f"QM9 SMILES, {route} route")
        return [a.chemistry[0].smiles or "" for a in assessed]
    what = (f"SMILES of all {len(qm9):,} QM9 geometries as bond route {route!r} perceives them (novelty), "
            f"{workers} worker(s)")
    return _cached_lines(_cache_dir(cache_dir) / "molecule_eval" / name, len(qm9), make, what)


def qm9_test_bond_lengths(split: str = "edm", cache_dir: str | Path | None = None) -> tuple[dict[str, np.ndarray], int]:
    """Bond lengths (Å) of the test split by bond type (`bond_lengths.BOND_RULE`) and the number of molecules
    they come from; cached as .npz (a few seconds to build)."""
    from modalities.molecule.data.qm9 import load_qm9
    qm9 = load_qm9(cache_dir)
    name = f"qm9_{split}_test_bond_lengths_v{BOND_LENGTH_CACHE_VERSION}_{_qm9_digest(qm9)}.npz"
    path = _cache_dir(cache_dir) / "molecule_eval" / name
    if path.exists():
        try:
            with np.load(path) as blob:
                return {k: blob[k] for k in blob.files if k != "molecules"}, int(blob["molecules"])
        except Exception:  # a truncated or foreign file: rebuild below
            pass
    rows = qm9.split_indices(split)["test"].tolist()
    announce_cache(f"bond lengths of the {split} test split's {len(rows):,} molecules", path)
    molecules = map(qm9.molecule, tqdm(rows, desc="QM9 test bond lengths", unit="molecule"))
    lengths, used, _ = pooled_bond_lengths((z.numpy(), x.numpy()) for z, x in molecules)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")  # np.savez keeps a name ending in .npz
    np.savez(tmp, molecules=used, **lengths)
    tmp.replace(path)
    return lengths, used


def load_reference(name: str = "qm9", split: str = "edm", fcd: bool = True, cache_dir: str | Path | None = None,
                   isomeric: bool = False, routes: Sequence[str] = ROUTES, workers: int = 1) -> Reference:
    """Reference split: training SMILES per route and from the dataset, and ChemNet statistics of the test split."""
    if name != "qm9":
        raise ValueError(f"unknown reference {name!r}: choose one of {REFERENCES} (or none)")
    from modalities.molecule.data.qm9 import load_qm9
    rows = load_qm9(cache_dir).split_indices(split)
    train_rows, test_rows = rows["train"].tolist(), rows["test"].tolist()
    dataset = canonical_qm9_smiles(cache_dir, isomeric)
    per_route = {}
    for route in routes:
        perceived = perceived_qm9_smiles(route, cache_dir, isomeric, workers)
        per_route[route] = {perceived[i] for i in train_rows} - {""}
    test = [dataset[i] for i in test_rows if dataset[i]]
    stats = cached_reference_statistics(test, f"qm9_{split}_test", _cache_dir(cache_dir)) if fcd else None
    bond_lengths, bond_molecules = qm9_test_bond_lengths(split, cache_dir)
    return Reference(f"{name}/{split}", per_route, {dataset[i] for i in train_rows} - {""}, len(train_rows),
                     stats, len(test_rows), bond_lengths, bond_molecules)


def evaluate_molecules(molecules: Sequence, reference: Reference | str | None = "qm9", split: str = "edm",
                       routes: Sequence[str] = ROUTES, workers: int = 0, fcd: bool = True,
                       isomeric: bool = False, cache_dir: str | Path | None = None) -> dict:
    """All molecule metrics for a list of (atomic_numbers [n], positions [n, 3] Å) pairs or MoleculeRecords.

    reference: a `Reference`, a reference name ("qm9", with `split`), or None (no novelty, no FCD).
    Returns a JSON-ready dict; fractions in [0, 1]. Bad molecules are counted invalid, never raised.
    RDKit's log lines are not printed: "rdkit_messages" counts them by kind (worker processes included).
    """
    with counting_rdkit_messages() as messages:
        result = _evaluate(molecules, reference, split, routes, workers, fcd, isomeric, cache_dir)
    result["rdkit_messages"] = dict(messages.most_common())
    return result


def _evaluate(molecules: Sequence, reference: Reference | str | None, split: str, routes: Sequence[str],
              workers: int, fcd: bool, isomeric: bool, cache_dir: str | Path | None) -> dict:
    start = time.perf_counter()
    if isinstance(reference, str):
        reference = load_reference(reference, split, fcd, cache_dir, isomeric, routes, max(workers, 1))
    loaded = time.perf_counter()
    assessments = assess_molecules(molecules, routes, workers, isomeric)
    assessed = time.perf_counter()
    metric = MoleculeMetrics(routes, reference.route_train_smiles if reference else None, workers, isomeric)
    metric.update(assessments=assessments)
    values = metric.compute()
    n = len(molecules)
    result = {
        "num_molecules": n,
        "reference": None if reference is None else {
            "name": reference.name,
            "novelty_against": f"train split ({reference.num_train} molecules) as perceived by the same route",
            "fcd_against": f"test split, {reference.num_test} molecules" if reference.test_statistics else None},
        "settings": {"routes": list(routes), "workers": workers, "stereo_in_smiles": isomeric,
                     "smiles": "largest fragment, canonical, explicit H removed",
                     "fcd_on": "SMILES of all valid molecules (duplicates kept) vs the test split's own SMILES"},
        "stability": {"bond_route": "edm", **{k: values[k] for k in
                      ("atom_stability", "per_molecule_atom_stability", "molecule_stability")}},
        "routes": {},
    }
    with_fcd = fcd and reference is not None and reference.test_statistics is not None
    generated = statistics_of_sets({route: metric.smiles[route] for route in routes}) if with_fcd else {}
    for route in routes:
        figures = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith(f"{route}/")}
        if reference is not None:
            figures["novelty_vs_dataset_smiles"] = novelty(metric.smiles[route], reference.dataset_train_smiles)
        figures["invalid_reasons"] = dict(metric.reasons[route].most_common(5))
        if with_fcd:  # None when fewer than two molecules are valid
            stats = generated[route]
            figures["fcd"] = None if stats is None else frechet_distance(stats, reference.test_statistics)
        result["routes"][route] = figures
    arrays = [molecule_arrays(molecule) for molecule in molecules]
    problems = []
    for i, (molecule, (z, x, _, problem)) in enumerate(zip(molecules, arrays)):
        problem = problem or input_problem(z, x)
        if problem:
            problems.append({"index": i, "source": getattr(molecule, "source", ""), "reason": problem})
    result["problems"] = problems
    # a file's problem (unknown element, no coordinates) is also an input problem: pooled_bond_lengths skips it
    lengths, used, left_out = pooled_bond_lengths((z, x) for z, x, _, _ in arrays)
    with_lengths = reference is not None and reference.test_bond_lengths is not None
    result["bond_lengths"] = bond_length_report(lengths, used, left_out,
                                                reference.test_bond_lengths if with_lengths else None,
                                                reference.num_test_bond_molecules if with_lengths else 0)
    if with_lengths:
        result["reference"]["bond_lengths_against"] = f"test split, {reference.num_test_bond_molecules} molecules"
    done = time.perf_counter()
    result["timing_s"] = {"reference": loaded - start, "per_molecule_checks": assessed - loaded,
                          "fcd_and_aggregation": done - assessed, "total": done - start}
    return result


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _number(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def bond_length_table(result: dict) -> list[str]:
    """Markdown lines: W1 (Å) per bond type against the reference, medians and bonds per molecule of both."""
    b = result["bond_lengths"]
    ref = result["reference"]["name"] if result["reference"] else "none"
    rows = [(f"W1 (Å) vs {ref} test", b.get("w1_angstrom"), 4),
            (f"median (Å), {b['molecules_used']} samples", b["median_angstrom"], 3),
            ("median (Å), reference", b.get("reference_median_angstrom"), 3),
            ("bonds per molecule, samples", b["bonds_per_molecule"], 2),
            ("bonds per molecule, reference", b.get("reference_bonds_per_molecule"), 2)]
    lines = ["| bond lengths | " + " | ".join(BOND_TYPES) + " |", "|---|" + "---|" * len(BOND_TYPES)]
    lines += [f"| {name} | " + " | ".join(_number(values.get(t), digits) for t in BOND_TYPES) + " |"
              for name, values, digits in rows if values is not None]
    lines.append(f"\nBonds: {b['rule']}; {b['molecules_used']} molecules used, {b['molecules_left_out']} left out.")
    return lines


def markdown_table(result: dict) -> str:
    """Markdown tables: EDM stability, one row per bond route, bond lengths per bond type."""
    n = result["num_molecules"]
    ref = result["reference"]["name"] if result["reference"] else "none"
    s = result["stability"]
    lines = [
        "| bond route | samples | reference | atom stable % (pooled) | atom stable % (per molecule) | molecule stable % |",
        "|---|---|---|---|---|---|",
        f"| edm (stability) | {n} | {ref} | {_pct(s['atom_stability'])} | {_pct(s['per_molecule_atom_stability'])} "
        f"| {_pct(s['molecule_stability'])} |",
        "",
        "| bond route | samples | reference | valid % | connected % | unique % | valid & unique % | novel % | FCD (test) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for route, f in result["routes"].items():
        fcd = f.get("fcd")
        lines.append(f"| {route} | {n} | {ref} | {_pct(f['validity'])} | {_pct(f['connected'])} "
                     f"| {_pct(f['uniqueness'])} | {_pct(f['valid_and_unique'])} | {_pct(f.get('novelty'))} "
                     f"| {'—' if fcd is None else f'{fcd:.3f}'} |")
    return "\n".join(lines + [""] + bond_length_table(result) + rdkit_message_lines(result))


def rdkit_message_lines(result: dict) -> list[str]:
    """One Markdown line counting RDKit's silenced log lines by kind (none when there were none)."""
    messages = result.get("rdkit_messages") or {}
    if not messages:
        return []
    counts = "; ".join(f"{count} × `{kind}`" for kind, count in messages.items())
    return [f"\nRDKit messages (not printed, counted by kind): {counts}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modalities.molecule.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="an .xyz/.sdf file (or .xyz.gz/.sdf.gz) or a folder of them")
    parser.add_argument("--reference", default="qm9", choices=[*REFERENCES, "none"])
    parser.add_argument("--split", default="edm", choices=["edm", "adit"])
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes for the per-molecule checks (default: CPU count, at most 8)")
    parser.add_argument("--no-fcd", action="store_true", help="skip FCD (ChemNet)")
    parser.add_argument("--stereo", action="store_true", help="keep 3-D stereochemistry in SMILES")
    parser.add_argument("--cache-dir", default=None, help="where reference SMILES/statistics are cached")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)
    try:
        molecules = read_molecules(args.path)
    except (MoleculeFileError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    reference = None if args.reference == "none" else args.reference
    result = evaluate_molecules(molecules, reference, args.split, args.routes, args.workers, not args.no_fcd,
                                args.stereo, args.cache_dir)
    result["input"] = str(args.path)
    print(markdown_table(result))
    if result["problems"]:
        print(f"\n{len(result['problems'])} molecule(s) could not be evaluated (counted invalid):")
        for p in result["problems"][:10]:
            print(f"  {p['source'] or p['index']}: {p['reason']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
