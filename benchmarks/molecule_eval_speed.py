"""Time the molecule evaluation harness on 10,000 QM9 molecules: per-route cost and the full evaluation.

    python -m benchmarks.molecule_eval_speed [--num 10000] [--workers 2]

Molecules: the first `--num` molecules of QM9's EDM test split (DFT geometries, 18 atoms on average).
Measured: (1) each bond route alone, one process, ms per molecule; (2) EDM stability alone; (3) ChemNet
activations for 10,000 SMILES; (4) `evaluate_molecules` with all routes and FCD on `--workers`
processes, reference statistics already cached (their one-time build is timed separately when missing).
Writes benchmarks/results/molecule_eval_speed.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from modalities.molecule.evaluation.bond_perception import ROUTES
from modalities.molecule.evaluate import evaluate_molecules, load_reference
from modalities.molecule.evaluation.fcd import chemnet_activations
from modalities.molecule.evaluation.metrics import assess_molecules
from modalities.molecule.data.qm9 import load_qm9

RESULTS = Path(__file__).resolve().parent / "results"


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    qm9 = load_qm9()
    rows = qm9.split_indices("edm")["test"][: args.num].tolist()
    molecules = [qm9.molecule(i) for i in rows]
    n = len(molecules)
    print(f"{n} QM9 molecules (EDM test split), {sum(len(z) for z, _ in molecules) / n:.1f} atoms on average")

    per_route = {}
    _, seconds = timed(assess_molecules, molecules, (), 0)
    per_route["stability only (EDM table)"] = seconds
    for route in ROUTES:
        _, seconds = timed(assess_molecules, molecules, (route,), 0)
        per_route[f"{route} (+ stability)"] = seconds
        print(f"  {route}: {1e3 * seconds / n:.3f} ms/molecule, one process")

    smiles = [qm9.smiles[i] for i in rows]
    chemnet_activations(smiles[:64])  # warm-up (weights load, kernel set-up)
    _, chemnet_seconds = timed(chemnet_activations, smiles)

    reference, reference_seconds = timed(load_reference, "qm9", "edm", True, None, False, ROUTES, args.workers)
    result, total_seconds = timed(evaluate_molecules, molecules, reference, workers=args.workers)

    report = {
        "num_molecules": n,
        "molecules": "QM9 EDM test split, first rows, DFT geometries",
        "hardware": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "chemnet_torch_threads": 1,
                     "torch": torch.__version__, "python": platform.python_version(),
                     "load_average_1_5_15_min_at_end": os.getloadavg()},  # other jobs on the machine skew timings
        "per_route_one_process_s": per_route,
        "per_route_ms_per_molecule": {k: 1e3 * v / n for k, v in per_route.items()},
        "chemnet_activations_s": chemnet_seconds,
        "reference_load_s": reference_seconds,
        "evaluate_molecules": {"workers": args.workers, "routes": list(ROUTES), "fcd": True,
                               "wall_s": total_seconds, "molecules_per_s": n / total_seconds,
                               "breakdown_s": result["timing_s"]},
        "figures": {"stability": result["stability"],
                    "routes": {r: {k: v for k, v in f.items() if k != "invalid_reasons"}
                               for r, f in result["routes"].items()}},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "molecule_eval_speed.json").write_text(json.dumps(report, indent=2))

    print(f"\n| step | processes | wall s | ms / molecule |\n|---|---|---|---|")
    for name, seconds in per_route.items():
        print(f"| {name} | 1 | {seconds:.1f} | {1e3 * seconds / n:.3f} |")
    print(f"| ChemNet activations ({n} SMILES) | 1 (1 torch thread) | {chemnet_seconds:.1f} "
          f"| {1e3 * chemnet_seconds / n:.3f} |")
    print(f"| evaluate_molecules: all routes + FCD | {args.workers} | {total_seconds:.1f} | {1e3 * total_seconds / n:.3f} |")
    print(f"\nreference load (cached): {reference_seconds:.1f} s; wrote {RESULTS / 'molecule_eval_speed.json'}")


if __name__ == "__main__":
    main()
