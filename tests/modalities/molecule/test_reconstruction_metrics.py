"""Kabsch alignment (proper rotations only), RMSD, atom-type accuracy, match rate."""
import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from modalities.molecule.evaluation.metrics import ReconstructionMetrics
from modalities.molecule.evaluation.reconstruction_metrics import (atom_type_accuracy, kabsch_align, kabsch_rmsd,
                                                                   match_verdicts, reconstruction_match,
                                                                   reconstruction_match_rates)


def random_rotations(b: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(b, 3, 3, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.linalg.det(q))[:, None, None]  # det = +1


def chiral_batch(generator):
    """[B, N, 3] random (hence chiral) point sets with a padding mask."""
    x = torch.randn(4, 9, 3, generator=generator, dtype=torch.float64)
    mask = torch.ones(4, 9, dtype=torch.bool)
    mask[1, 6:] = False
    mask[3, 4:] = False
    return x, mask


def test_rmsd_zero_for_rotated_and_translated_copy():
    g = torch.Generator().manual_seed(0)
    x, mask = chiral_batch(g)
    y = x @ random_rotations(4, g) + torch.randn(4, 1, 3, generator=g, dtype=torch.float64)
    y[~mask] = 1e3  # padding must not matter
    assert kabsch_rmsd(x, y, mask).abs().max() < 1e-10
    aligned = kabsch_align(x, y, mask)
    assert (aligned - y)[mask].abs().max() < 1e-10


def test_mirror_image_of_chiral_set_is_not_aligned():
    g = torch.Generator().manual_seed(1)
    x, mask = chiral_batch(g)
    mirror = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    rmsd = kabsch_rmsd(mirror @ random_rotations(4, g), x, mask)
    assert (rmsd > 0.1).all()  # an improper rotation would bring these to 0


def test_planar_set_and_its_mirror_align():
    # A planar set is achiral: its mirror image is a rotation of it, so RMSD 0 with proper rotations.
    x = torch.tensor([[0.0, 0, 0], [1.4, 0, 0], [2.1, 1.2, 0], [0.3, 2.0, 0]], dtype=torch.float64)
    assert kabsch_rmsd(x * torch.tensor([-1.0, 1, 1], dtype=torch.float64), x) < 1e-10


def test_single_and_batched_agree_and_translation_only():
    g = torch.Generator().manual_seed(2)
    x, mask = chiral_batch(g)
    y = x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    batched = kabsch_rmsd(x, y, mask)
    for b in range(4):
        assert kabsch_rmsd(x[b][mask[b]], y[b][mask[b]]) == pytest.approx(float(batched[b]), abs=1e-12)
    # A pure translation: RMSD 0.
    assert kabsch_rmsd(x[0], x[0] + torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64)) < 1e-10


def test_gradients_exact_and_finite_at_zero():
    g = torch.Generator().manual_seed(3)
    x, mask = chiral_batch(g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).requires_grad_(False)
    p = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: kabsch_rmsd(a, y, mask), (p,))
    zero = y.clone().requires_grad_(True)
    kabsch_rmsd(zero, y, mask).sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_float32_inputs_and_shape_errors():
    x = torch.randn(2, 5, 3)
    assert kabsch_rmsd(x, x).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        kabsch_rmsd(x, x[:, :4])
    with pytest.raises(ValueError, match="mask"):
        kabsch_rmsd(x, x, torch.ones(2, 4, dtype=torch.bool))


def test_atom_type_accuracy_ignores_padding():
    pred = torch.tensor([[6, 1, 1, 0], [8, 6, 6, 6]])
    target = torch.tensor([[6, 1, 8, 9], [8, 6, 6, 6]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    assert atom_type_accuracy(pred, target, mask) == (6, 7)


def embedded(smiles: str):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def test_match_same_molecule_and_mirror_image():
    z, x = embedded("C[C@H](N)C(=O)O")  # alanine
    rotated = x @ random_rotations(1, torch.Generator().manual_seed(4))[0].numpy() + 3.0
    assert reconstruction_match(z, rotated, z, x) is True
    mirror = x * np.array([-1.0, 1.0, 1.0])
    assert reconstruction_match(z, mirror, z, x) is False  # stereo from 3-D: enantiomers differ
    assert reconstruction_match(z, mirror, z, x, isomeric=False) is True


def test_match_is_none_when_target_invalid_and_false_when_prediction_invalid():
    z, x = embedded("CCO")
    nan = x.copy()
    nan[0] = np.nan
    assert reconstruction_match(z, x, z, nan) is None
    assert reconstruction_match(z, nan, z, x) is False


def test_reconstruction_metric_accumulates():
    z, x = embedded("CC(=O)NC")
    n = len(z)
    numbers = torch.zeros(2, n + 2, dtype=torch.long)
    positions = torch.zeros(2, n + 2, 3)
    mask = torch.zeros(2, n + 2, dtype=torch.bool)
    numbers[:, :n], positions[:, :n], mask[:, :n] = torch.from_numpy(z), torch.from_numpy(x).float(), True
    wrong = numbers.clone()
    wrong[1, 0] = 7  # one wrong atom type in molecule 1
    metric = ReconstructionMetrics()
    metric.update(wrong, positions + 1.0, numbers, positions, mask)
    out = metric.compute()
    assert out["atom_type_accuracy"] == pytest.approx((2 * n - 1) / (2 * n))
    assert out["molecule_type_accuracy"] == 0.5
    assert out["coordinate_rmsd"] < 1e-5
    # molecule 1 has a wrong atom type: a different molecule under both protocols
    for protocol in ("inchi_openbabel", "edm_smiles"):
        assert out[f"match_rate_{protocol}"] == 0.5 and out[f"match_comparable_{protocol}"] == 2


def test_match_verdicts_name_both_protocols_and_differ_on_a_stretched_bond():
    z, x = embedded("CC(C)=O")
    assert match_verdicts(z, x, z, x) == {"inchi_openbabel": True, "edm_smiles": True}
    # C=O stretched 5 %: 1.22 -> 1.28 Å, past EDM's double-bond cutoff (1.25 Å); same connectivity
    assert match_verdicts(z, 1.05 * x, z, x) == {"inchi_openbabel": True, "edm_smiles": False}


def test_reconstruction_match_rates_per_molecule_with_nan_for_invalid_targets():
    z, x = embedded("CCO")
    nan = x.copy()
    nan[0] = np.nan
    order = np.random.default_rng(0).permutation(len(z))
    predicted = [(torch.from_numpy(z[order]), torch.from_numpy(x[order]).float()), (z, x), (z, x)]
    targets = [(z, x), (z, nan), (*embedded("COC"),)]
    rates = reconstruction_match_rates(predicted, targets)
    assert sorted(rates) == ["match_rate_edm_smiles", "match_rate_inchi_openbabel"]
    for values in rates.values():
        assert values[0] == 1 and torch.isnan(values[1]) and values[2] == 0
    with pytest.raises(ValueError, match="2 predictions for 3 targets"):
        reconstruction_match_rates(predicted[:2], targets)
