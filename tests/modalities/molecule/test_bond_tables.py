"""EDM's bond tables and bond-order rule, checked against EDM's published figures and its own rule."""
import itertools

import numpy as np
import pytest

from modalities.molecule.evaluation.bond_tables import (ALLOWED_VALENCES, DOUBLE_BOND_PM, MARGIN_DOUBLE_PM, MARGIN_SINGLE_PM,
                                             MARGIN_TRIPLE_PM, SINGLE_BOND_PM, SYMBOLS, TRIPLE_BOND_PM, as_symbol,
                                             bond_order, bond_order_matrix, is_allowed_valence)

QM9_ELEMENTS = ("H", "C", "N", "O", "F")


def test_margins_and_spot_values_are_edms():
    assert (MARGIN_SINGLE_PM, MARGIN_DOUBLE_PM, MARGIN_TRIPLE_PM) == (10, 5, 3)
    assert SINGLE_BOND_PM[("C", "C")] == 154 and DOUBLE_BOND_PM[("C", "C")] == 134 and TRIPLE_BOND_PM[("C", "C")] == 120
    assert SINGLE_BOND_PM[("H", "C")] == 109 and DOUBLE_BOND_PM[("C", "O")] == 120 and TRIPLE_BOND_PM[("N", "N")] == 110
    assert len(SINGLE_BOND_PM) == 64 and len(DOUBLE_BOND_PM) == 9 and len(TRIPLE_BOND_PM) == 4


def test_every_qm9_pair_has_a_single_bond_length():
    for a, b in itertools.combinations_with_replacement(QM9_ELEMENTS, 2):
        assert bond_order(a, b, 0.5) >= 1, (a, b)


def test_higher_orders_are_shorter():
    for pair, double in DOUBLE_BOND_PM.items():
        assert double < SINGLE_BOND_PM.get(pair, SINGLE_BOND_PM.get(pair[::-1]))
    for pair, triple in TRIPLE_BOND_PM.items():
        assert triple < DOUBLE_BOND_PM[pair]


@pytest.mark.parametrize("distance, order", [
    (1.80, 0), (1.641, 0), (1.639, 1), (1.53, 1), (1.391, 1), (1.389, 2), (1.34, 2), (1.231, 2), (1.229, 3), (1.20, 3)])
def test_carbon_carbon_thresholds(distance, order):
    # C-C: single < 154 + 10 pm, double < 134 + 5 pm, triple < 120 + 3 pm (strict).
    assert bond_order("C", "C", distance) == order


def test_double_without_triple_entry_and_single_only_pairs():
    assert bond_order("O", "O", 1.20) == 2  # O=O has a double length, no triple
    assert bond_order("C", "F", 1.0) == 1  # C-F has only a single length, however short
    assert bond_order("H", "H", 0.74) == 1


def test_symbols_and_atomic_numbers_agree_and_order_is_symmetric():
    rng = np.random.default_rng(0)
    for _ in range(500):
        a, b = rng.choice(QM9_ELEMENTS, 2)
        d = float(rng.uniform(0.9, 1.8))
        za, zb = SYMBOLS.index(a), SYMBOLS.index(b)
        assert bond_order(a, b, d) == bond_order(b, a, d) == bond_order(za, zb, d)


def test_pair_without_table_entry_never_bonds():
    assert bond_order("He", "C", 1.0) == 0
    assert bond_order("Xe", "Xe", 0.5) == 0


def test_matrix_matches_scalar_rule():
    rng = np.random.default_rng(1)
    z = rng.choice([1, 6, 7, 8, 9], 12)
    x = rng.uniform(-1.5, 1.5, (12, 3))
    m = bond_order_matrix(z, x)
    assert (m == m.T).all() and (np.diag(m) == 0).all()
    for i, j in itertools.combinations(range(12), 2):
        assert m[i, j] == bond_order(int(z[i]), int(z[j]), float(np.linalg.norm(x[i] - x[j])))


def test_allowed_valences():
    assert [ALLOWED_VALENCES[e] for e in QM9_ELEMENTS] == [(1,), (4,), (3,), (2,), (1,)]
    assert is_allowed_valence("P", 5) and is_allowed_valence(15, 3) and not is_allowed_valence("N", 4)
    assert not is_allowed_valence("He", 0)  # no EDM entry: never stable


def test_as_symbol_rejects_bad_atomic_numbers():
    assert as_symbol(6) == "C" and as_symbol("Cl") == "Cl"
    with pytest.raises(ValueError, match="outside"):
        as_symbol(0)
