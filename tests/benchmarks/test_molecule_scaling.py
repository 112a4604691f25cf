"""benchmarks/molecule_scaling.py: the visits-to-target fit against closed forms, budget checks, and the table."""
import math

import pytest

from benchmarks.molecule_scaling import DESIGNS, budget_steps, fits, markdown, visits_to_reach


def logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_a_logit_linear_curve_is_solved_exactly():
    # logit(y) = -6 + 1.5 log10(v) (0.82 at 1e5): y = 0.9 at log10 v = (logit(0.9) + 6) / 1.5
    visits = [1e3, 1e4, 1e5]
    values = [logistic(-6 + 1.5 * math.log10(v)) for v in visits]
    reached, extrapolated = visits_to_reach(visits, values, 0.9)
    assert extrapolated and math.isclose(math.log10(reached), (math.log(9) + 6) / 1.5, rel_tol=1e-9)


def test_a_measured_crossing_is_not_extrapolated_and_a_flat_curve_never_reaches():
    assert visits_to_reach([1e3, 1e4, 1e5], [0.5, 0.92, 0.95], 0.9) == (1e4, False)
    assert visits_to_reach([1e3, 1e4, 1e5], [0.5, 0.5, 0.4], 0.9) == (None, True)


def test_budgets_must_be_increasing_multiples_of_the_batch():
    assert budget_steps([640, 2560], 64) == [10, 40]
    with pytest.raises(SystemExit, match="multiple"):
        budget_steps([100], 64)
    with pytest.raises(SystemExit, match="increase"):
        budget_steps([2560, 640], 64)


def test_every_design_is_a_list_of_overrides_and_the_table_names_the_fit():
    assert set(DESIGNS) >= {"default", "self_conditioning", "truncated_snr", "beta_time", "whitening", "wide"}
    rows = [{"design": "default", "visits": v, "minutes": v / 1000, "generation/stability/atom_stability": a}
            for v, a in ((1000, 0.3), (4000, 0.5), (16000, 0.7))]
    fitted = fits(rows)
    assert fitted["default"]["extrapolated"] and fitted["default"]["visits_to_90"] > 16000
    assert math.isclose(fitted["default"]["cpu_minutes_to_90"], fitted["default"]["visits_to_90"] / 1000)
    table = markdown(rows, fitted, {"default": "the default"})
    assert "extrapolated" in table and "EDM reproduction" in table and table.count("| default |") == 4
