"""benchmarks/molecule_diagnosis.py: the geometry summary against closed forms, and the whole diagnosis on a
smoke checkpoint (well-formed report, never a figure of merit)."""
import json
import math

import numpy as np
import pytest

from benchmarks.molecule_diagnosis import diagnose, geometry_summary, markdown
from core.train import train


def test_two_atoms_one_angstrom_apart():
    summary = geometry_summary([(np.array([6, 6]), np.array([[0.0, 0, 0], [1.0, 0, 0]]))])
    assert all(math.isclose(q, 1.0) for q in summary["nearest_neighbour_quantiles"].values())
    # each atom 0.5 from the centre: Rg = 0.5, over 2^(1/3)
    assert math.isclose(summary["radius_of_gyration_over_cube_root_n"], 0.5 / 2 ** (1 / 3))
    assert summary["pairs_closer_than_0.8_per_molecule"] == 0.0


def test_scaling_scales_distances_and_counts_close_pairs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 3)) * 1.5
    base, half = geometry_summary([(np.zeros(9), x)]), geometry_summary([(np.zeros(9), 0.5 * x)])
    for key, value in base["nearest_neighbour_quantiles"].items():
        assert math.isclose(half["nearest_neighbour_quantiles"][key], 0.5 * value)
    assert math.isclose(half["radius_of_gyration_over_cube_root_n"], 0.5 * base["radius_of_gyration_over_cube_root_n"])
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert half["pairs_closer_than_0.8_per_molecule"] == ((d < 1.6).sum() - 9) // 2


def test_single_atom_is_named():
    with pytest.raises(ValueError, match="1 atom"):
        geometry_summary([(np.array([6]), np.zeros((1, 3)))])


def test_diagnosis_of_a_smoke_checkpoint(compose_config, tmp_path):
    train(compose_config(["experiment=molecule_smoke", "trainer.max_steps=2", "trainer.evaluate_at_end=false",
                          f"trainer.out_dir={tmp_path}"]))
    report = diagnose(tmp_path / "checkpoints" / "step_000000002.pt", 8, ["euler:4:1"], 0)
    gain = report["decoder_gain"]["displacement_by_sigma"]
    assert set(gain) == {"0.02", "0.05", "0.1", "0.2"} and all(v >= 0 for v in gain.values())
    for figure in ("atom_stability_by_sigma", "molecule_stability_by_sigma"):  # sigma 0: the plain reconstruction
        stability = report["decoder_gain"][figure]
        assert set(stability) == {"0", *gain} and all(0 <= v <= 1 for v in stability.values())
    assert report["samplers"][0]["sampler"] == "euler:4:1"
    json.dumps(report)  # the report is written as JSON
    error = report["prediction_error"]
    assert set(error["network"]) == set(error["x_t_over_t"]) and all(v >= 0 for v in error["network"].values())
    # header, rule, real row, one sampler row; then two tables of (blank, title, blank, header, rule, one row)
    assert markdown([report]).count("\n") == 3 + 6 + 6
