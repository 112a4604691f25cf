"""Write generated molecules as XYZ + SDF, a PNG grid of 2-D depictions, and their headline metrics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modalities.molecule.bond_perception import perceive
from modalities.molecule.files import write_sdf, write_xyz
from modalities.molecule.stability import check_stability, summarize_stability

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
        legends.append(f"#{index}  {Chem.MolToSmiles(flat)}")
        if len(drawn) == max_molecules:
            break
    if drawn:
        image = Draw.MolsToGridImage(drawn, molsPerRow=per_row, subImgSize=(250, 200), legends=legends)
        image.save(str(path))
    return len(drawn)


def write_molecule_samples(molecules: list[Molecule], out_dir: Path, route: str = "edm") -> dict:
    """samples.xyz, samples.sdf (bonds from `route`), samples.png; returns stability/validity figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_xyz(out_dir / "samples.xyz", [(z, x, f"generated {i}") for i, (z, x) in enumerate(molecules)])
    write_sdf(out_dir / "samples.sdf", [(z, x, f"generated {i}") for i, (z, x) in enumerate(molecules)], route=route)
    drawn = depiction_grid(molecules, out_dir / "samples.png", route, max_molecules=24, per_row=6)
    stability = summarize_stability([check_stability(z.numpy(), x.numpy().astype(np.float64)) for z, x in molecules])
    valid = [perceive(route, z.numpy(), x.numpy().astype(np.float64)).mol for z, x in molecules]
    from rdkit import Chem
    smiles = [Chem.MolToSmiles(Chem.RemoveHs(m, sanitize=False)) for m in valid if m is not None]
    return {"atom_stability": stability.atom_stability, "molecule_stability": stability.molecule_stability,
            f"validity_{route}": len(smiles) / max(len(molecules), 1),
            f"valid_and_unique_{route}": len(set(smiles)) / max(len(molecules), 1),
            "depicted": drawn, "files": str(out_dir)}
