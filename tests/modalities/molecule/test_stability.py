"""EDM atom/molecule stability: known molecules, pooling, and QM9's own figures (EDM: 99.0 % / 95.2 %)."""
import functools
import math

import numpy as np
import pytest

from modalities.molecule.evaluation.stability import StabilityResult, check_stability, summarize_stability
from known_molecules import TETRAHEDRON, benzene



def test_methane_is_stable():
    result = check_stability(np.array([6, 1, 1, 1, 1]), np.vstack([np.zeros(3), 1.09 * TETRAHEDRON]))
    assert result == StabilityResult(True, 5, 5, ())


def test_kekule_benzene_is_stable_but_dft_benzene_is_not():
    # EDM's table has no aromatic bond: at the DFT geometry (all C-C 1.3935 Å >= 134 + 5 pm) every C-C is
    # single, each C has 3 bonds, and benzene is unstable. A faithful port must reproduce that limitation.
    assert check_stability(*benzene(1.34, 1.46)).molecule_stable
    dft = check_stability(*benzene(1.3935, 1.3935))
    assert not dft.molecule_stable and dft.unstable_atoms == (0, 1, 2, 3, 4, 5) and dft.num_stable_atoms == 6


def test_charged_species_is_unstable():
    # NH4+: EDM allows N three bonds only, whatever the charge.
    result = check_stability(np.array([7, 1, 1, 1, 1]), np.vstack([np.zeros(3), 1.03 * TETRAHEDRON]))
    assert not result.molecule_stable and result.unstable_atoms == (0,)


def test_radical_is_unstable():
    z = np.array([6, 1, 1, 1])
    x = np.array([[0, 0, 0], [1.08, 0, 0], [-0.54, 0.9353, 0], [-0.54, -0.9353, 0]])
    assert check_stability(z, x).unstable_atoms == (0,)


def test_stretched_bond_breaks_stability():
    c2 = 1.53 * TETRAHEDRON[0]
    hydrogens = [1.09 * TETRAHEDRON[k] for k in (1, 2, 3)] + [c2 - 1.09 * TETRAHEDRON[k] for k in (1, 2, 3)]
    z = np.array([6, 6, 1, 1, 1, 1, 1, 1])
    assert check_stability(z, np.vstack([np.zeros(3), c2, hydrogens])).molecule_stable
    stretched = np.vstack([np.zeros(3), 2.0 / 1.53 * c2, hydrogens[:3], [2.0 / 1.53 * c2 - h for h in hydrogens[:3]]])
    result = check_stability(z, stretched)
    assert not result.molecule_stable and result.unstable_atoms == (0, 1)


def test_empty_molecule_is_unstable():
    assert not check_stability(np.zeros(0, dtype=int), np.zeros((0, 3))).molecule_stable


def test_pooled_versus_per_molecule_atom_stability():
    results = [StabilityResult(True, 2, 2, ()), StabilityResult(False, 6, 8, (0, 1))]
    summary = summarize_stability(results)
    assert summary.atom_stability == pytest.approx(8 / 10)  # EDM pools atoms over the set
    assert summary.per_molecule_atom_stability == pytest.approx((1 + 6 / 8) / 2)
    assert summary.molecule_stability == 0.5 and summary.num_atoms == 10


@functools.lru_cache(maxsize=1)
def qm9():
    from modalities.molecule.data.qm9 import load_qm9
    return load_qm9()


def stability_of(rows) -> "object":
    data = qm9()
    return summarize_stability([check_stability(*(t.numpy() for t in data.molecule(int(i)))) for i in rows])


def test_qm9_random_subset_matches_edm_published_molecule_stability():
    rows = np.random.default_rng(2024).choice(len(qm9()), 2000, replace=False)
    summary = stability_of(rows)
    # Binomial standard error of a 2,000-molecule estimate of p = 0.952: sqrt(p(1-p)/n) = 0.48 points;
    # allow 3 standard errors (a false alarm once in ~370 seeds; this seed is fixed).
    tolerance = 3 * math.sqrt(0.952 * 0.048 / 2000)
    assert abs(summary.molecule_stability - 0.952) < tolerance
    assert 0.985 < summary.atom_stability < 0.998


def test_qm9_full_dataset_molecule_stability_within_0p2_points():
    # All 130,831 molecules (~6 s). Published (EDM, Table 1 "Data"): 95.2 %; atom stability 99.0 %.
    summary = stability_of(range(len(qm9())))
    assert abs(summary.molecule_stability - 0.952) < 0.002
    # This port gives 99.36 % pooled (99.22 % per molecule), higher than the published 99.0 %: see the
    # benchmark report (benchmarks/results/qm9_data_figures.md) for the discussion.
    assert abs(summary.atom_stability - 0.9936) < 0.0005
