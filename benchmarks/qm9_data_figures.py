"""QM9's own molecules through the evaluation harness: the data figures papers report, for every bond route.

    python -m benchmarks.qm9_data_figures [--workers 2]

All 130,831 DFT geometries: EDM atom/molecule stability (published: 99.0 % / 95.2 %, EDM Table 1 "Data"),
validity / connectivity / uniqueness under each bond route, agreement of each route's SMILES with QM9's
own SMILES, novelty of the EDM test split against the EDM training split, and FCD between QM9 subsets.
Writes benchmarks/results/qm9_data_figures.json and .md.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rdkit import Chem

from modalities.molecule.evaluation.bond_perception import ROUTES
from modalities.molecule.evaluation.bond_tables import SYMBOLS
from modalities.molecule.evaluation.chemistry_metrics import novelty, reason_category
from modalities.molecule.evaluate import canonical_qm9_smiles, load_reference
from modalities.molecule.evaluation.fcd import FCDStatistics, chemnet_activations, frechet_distance, statistics_of_sets
from modalities.molecule.evaluation.metrics import assess_molecules
from modalities.molecule.data.qm9 import load_qm9
from modalities.molecule.evaluation.stability import summarize_stability

RESULTS = Path(__file__).resolve().parent / "results"
PUBLISHED = {"atom_stability": 0.990, "molecule_stability": 0.952}  # EDM (Hoogeboom et al. 2022), Table 1, "Data"


def stability_figures(assessments, qm9, splits) -> dict:
    out = {"all": summarize_stability([a.stability for a in assessments]).__dict__}
    for name, rows in splits.items():
        out[f"edm_{name}"] = summarize_stability([assessments[i].stability for i in rows]).__dict__
    unstable_by_element, atoms_by_element = Counter(), Counter()
    aromatic = charged = unstable = 0
    for i, a in enumerate(assessments):
        z, _ = qm9.molecule(i)
        atoms_by_element.update(SYMBOLS[int(v)] for v in z)
        unstable_by_element.update(SYMBOLS[int(z[k])] for k in a.stability.unstable_atoms)
        if not a.stability.molecule_stable:
            unstable += 1
            mol = Chem.MolFromSmiles(qm9.smiles[i])
            aromatic += mol is not None and any(atom.GetIsAromatic() for atom in mol.GetAtoms())
            charged += "+" in qm9.smiles[i] or "-" in qm9.smiles[i]
    out["unstable_atom_fraction_by_element"] = {e: unstable_by_element[e] / atoms_by_element[e] for e in atoms_by_element}
    out["unstable_molecules_aromatic_in_qm9_smiles"] = aromatic / unstable
    out["unstable_molecules_charged_in_qm9_smiles"] = charged / unstable
    return out


def route_figures(assessments, dataset_smiles, splits) -> dict:
    n = len(assessments)
    out = {}
    for k, route in enumerate(ROUTES):
        results = [a.chemistry[k] for a in assessments]
        valid = [r.smiles for r in results if r.valid]
        train = {results[i].smiles for i in splits["train"] if results[i].valid}
        test_valid = [results[i].smiles for i in splits["test"] if results[i].valid]
        out[route] = {
            "validity": len(valid) / n,
            "connected": sum(r.connected for r in results) / n,
            "uniqueness": len(set(valid)) / len(valid),
            "valid_and_unique": len(set(valid)) / n,
            "same_smiles_as_qm9": sum(r.valid and r.smiles == dataset_smiles[i] for i, r in enumerate(results)) / n,
            "edm_test_novelty_vs_train_same_route": novelty(test_valid, train),
            "edm_test_novelty_vs_train_dataset_smiles": novelty(test_valid, {dataset_smiles[i] for i in splits["train"]}),
            "invalid_reasons": dict(Counter(reason_category(r.reason) for r in results if not r.valid).most_common(5)),
        }
    return out


def fcd_figures(assessments, dataset_smiles, splits, reference) -> dict:
    rng = np.random.default_rng(0)
    train = rng.permutation(splits["train"])
    first = FCDStatistics.from_activations(chemnet_activations([dataset_smiles[i] for i in train[:10_000]]))
    second = FCDStatistics.from_activations(chemnet_activations([dataset_smiles[i] for i in train[10_000:20_000]]))
    out = {"train_10k_vs_disjoint_train_10k": frechet_distance(first, second),
           "train_10k_vs_test": frechet_distance(first, reference.test_statistics)}
    # The test geometries, perceived by each route, against the test split's own SMILES.
    perceived = statistics_of_sets({route: [assessments[i].chemistry[k].smiles for i in splits["test"]
                                            if assessments[i].chemistry[k].valid] for k, route in enumerate(ROUTES)})
    for route, stats in perceived.items():
        out[f"test_perceived_by_{route}_vs_test"] = frechet_distance(stats, reference.test_statistics)
    return out


def markdown(report: dict) -> str:
    s = report["stability"]["all"]
    lines = [
        "# QM9's own molecules through the evaluation harness", "",
        f"All {report['num_molecules']} QM9 molecules (DFT geometries, qm9pack). Stability uses EDM's bond table "
        "whatever the route; SMILES are canonical, largest fragment, no stereo.", "",
        "| figure | bond route | samples | ours % | published % (EDM Table 1, Data) |", "|---|---|---|---|---|",
        f"| atom stability, pooled (EDM's pooling) | edm | {s['num_molecules']} | {100 * s['atom_stability']:.2f} | 99.0 |",
        f"| atom stability, mean per molecule | edm | {s['num_molecules']} | {100 * s['per_molecule_atom_stability']:.2f} | — |",
        f"| molecule stability | edm | {s['num_molecules']} | {100 * s['molecule_stability']:.2f} | 95.2 |", "",
        "| bond route | samples | valid % | connected % | unique % | valid & unique % | same SMILES as QM9 % "
        "| test novelty vs train, same route % | test novelty vs train, QM9 SMILES % | FCD test (perceived) vs test |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for route, f in report["routes"].items():
        lines.append(f"| {route} | {report['num_molecules']} | {100 * f['validity']:.2f} | {100 * f['connected']:.2f} "
                     f"| {100 * f['uniqueness']:.2f} | {100 * f['valid_and_unique']:.2f} | {100 * f['same_smiles_as_qm9']:.2f} "
                     f"| {100 * f['edm_test_novelty_vs_train_same_route']:.2f} "
                     f"| {100 * f['edm_test_novelty_vs_train_dataset_smiles']:.2f} "
                     f"| {report['fcd'][f'test_perceived_by_{route}_vs_test']:.3f} |")
    f = report["fcd"]
    lines += ["", "| FCD (QM9 SMILES, EDM split) | value |", "|---|---|",
              f"| 10k train vs disjoint 10k train | {f['train_10k_vs_disjoint_train_10k']:.3f} |",
              f"| 10k train vs test split (13,083) | {f['train_10k_vs_test']:.3f} |", "",
              "Stability per EDM split (pooled atom % / molecule %): " + ", ".join(
                  f"{k[4:]} {100 * v['atom_stability']:.2f} / {100 * v['molecule_stability']:.2f}"
                  for k, v in report["stability"].items() if k.startswith("edm_")) + ".",
              "Unstable-atom fraction by element: " + ", ".join(
                  f"{e} {100 * v:.2f} %" for e, v in report["stability"]["unstable_atom_fraction_by_element"].items()) + ".",
              f"Of the EDM-unstable molecules, {100 * report['stability']['unstable_molecules_aromatic_in_qm9_smiles']:.1f} % "
              f"are aromatic and {100 * report['stability']['unstable_molecules_charged_in_qm9_smiles']:.1f} % "
              "zwitterionic according to QM9's own SMILES.", "",
              f"Wall time {report['wall_s']:.0f} s on {report['workers']} worker processes."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    qm9 = load_qm9()
    splits = {k: v.tolist() for k, v in qm9.split_indices("edm").items()}
    print(f"assessing {len(qm9)} molecules with routes {ROUTES} on {args.workers} processes ...")
    assessments = assess_molecules([qm9.molecule(i) for i in range(len(qm9))], ROUTES, args.workers)
    dataset_smiles = canonical_qm9_smiles()
    reference = load_reference("qm9", "edm", True, None, False, ROUTES, args.workers)
    report = {"num_molecules": len(qm9), "published": PUBLISHED,
              "stability": stability_figures(assessments, qm9, splits),
              "routes": route_figures(assessments, dataset_smiles, splits),
              "fcd": fcd_figures(assessments, dataset_smiles, splits, reference)}
    report["wall_s"], report["workers"] = time.perf_counter() - start, args.workers
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qm9_data_figures.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "qm9_data_figures.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
