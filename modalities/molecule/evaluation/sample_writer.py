"""Write generated molecules as XYZ + SDF, a PNG grid of 2-D depictions, and their evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from modalities.molecule.evaluation.bond_lengths import BOND_TYPES, HEADLINE_MEDIANS
from modalities.molecule.evaluation.bond_perception import perceive
from modalities.molecule.evaluation.chemistry_metrics import canonical_smiles
from modalities.molecule.evaluation.files import write_sdf, write_xyz
from modalities.molecule.evaluation.rdkit_messages import counting_rdkit_messages

Molecule = tuple[torch.Tensor, torch.Tensor]  # atomic numbers [n], positions [n, 3] Å


def depiction_grid(molecules: list[Molecule], path: Path, route: str, max_molecules: int,
                   per_row: int) -> int:
    """PNG grid of 2-D depictions (hydrogens hidden) of the molecules whose bonds the route perceives
    and which sanitise; returns how many were drawn."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, Draw

    drawn, legends = [], []
    for index, (z, x) in enumerate(molecules):
        result = perceive(route, z.numpy(), x.numpy().astype(np.float64))
        if result.mol is None:
            continue
        flat = Chem.RemoveHs(result.mol, sanitize=False)
        AllChem.Compute2DCoords(flat)
        drawn.append(flat)
        legends.append(f"#{index}  {canonical_smiles(result.mol)}")
        if len(drawn) == max_molecules:
            break
    if drawn:
        image = Draw.MolsToGridImage(drawn, molsPerRow=per_row, subImgSize=(250, 200), legends=legends)
        image.save(str(path))
    return len(drawn)


def headline(result: dict) -> dict:
    """Flat numbers of an evaluation for the run's metrics log: stability, per-route figures, bond-length W1
    per bond type (`bond_w1/C-C`, ...; None without a reference or without such bonds) and the median C-C and
    C-H lengths (`bond_median/C-C`, Å)."""
    flat = {f"stability/{k}": v for k, v in result["stability"].items() if isinstance(v, (int, float))}
    for route, figures in result["routes"].items():
        flat.update({f"{route}/{k}": v for k, v in figures.items() if isinstance(v, (int, float))})
    lengths = result["bond_lengths"]
    w1 = lengths.get("w1_angstrom", {})
    flat.update({f"bond_w1/{kind}": w1.get(kind) for kind in BOND_TYPES})
    flat.update({f"bond_median/{kind}": lengths["median_angstrom"][kind] for kind in HEADLINE_MEDIANS})
    return flat


def write_molecule_samples(molecules: list[Molecule], out_dir: Path, split: str, reference: str | None,
                           fcd: bool, workers: int, route: str = "edm") -> dict:
    """samples.xyz, samples.sdf (bonds from `route`), samples.png, evaluation.json/.md; returns headline figures.

    The evaluation is the full harness (EDM stability, validity under every bond route, uniqueness,
    novelty against the reference's training split, FCD against its test split, bond lengths). RDKit's log
    lines from writing, drawing and evaluating are not printed but counted in "rdkit_messages"."""
    from modalities.molecule.evaluate import evaluate_molecules, markdown_table

    out_dir.mkdir(parents=True, exist_ok=True)
    named = [(z, x, f"generated {i}") for i, (z, x) in enumerate(molecules)]
    with counting_rdkit_messages() as messages:
        write_xyz(out_dir / "samples.xyz", named)
        write_sdf(out_dir / "samples.sdf", named, route=route)
        drawn = depiction_grid(molecules, out_dir / "samples.png", route, max_molecules=24, per_row=6)
        result = evaluate_molecules(molecules, reference, split, workers=workers, fcd=fcd and reference is not None)
    result["rdkit_messages"] = dict(messages.most_common())  # the evaluation's own and the writers'
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2))
    (out_dir / "evaluation.md").write_text(markdown_table(result) + "\n")
    return {**headline(result), "depicted": drawn, "files": str(out_dir)}
