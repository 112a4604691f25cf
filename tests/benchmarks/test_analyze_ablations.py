"""`python -m benchmarks.run ablations` end to end at its seconds-long `smoke` setting on molecules: two variants
trained in subprocesses (one thread each), evaluated, analysed; one table, rows, the side-by-side alignment plot."""
import csv

from benchmarks import ablations


def test_ablations_write_table_rows_and_alignment_plot(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["ablations", "--setting", "smoke", "--modalities", "molecule",
                                     "--variants", "unite", "separate_weights", "--parallel", "2",
                                     "--results-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "work")])
    ablations.main()
    out = tmp_path / "results" / "ablations"
    rows = list(csv.DictReader(open(out / "rows.csv")))
    # the smoke setting evaluates steps 6 and 8 of 8; the final rows carry the analysis' headline figures
    assert sorted((r["variant"], int(r["step"])) for r in rows) == [("separate_weights", 6), ("separate_weights", 8),
                                                                   ("unite", 6), ("unite", 8)]
    final = [r for r in rows if r["step"] == "8"]
    assert all(0.0 <= float(r["alignment/cka@1"]) <= 1.0 and float(r["spectrum/effective_rank"]) >= 1.0 for r in final)
    table = (out / "table.md").read_text()
    assert "| unite | `(defaults)` |" in table and "| separate_weights | `recipe.share_weights=false` |" in table
    assert (out / "alignment_molecule.png").stat().st_size > 5000
    for variant in ("unite", "separate_weights"):
        folder = out / "analysis" / f"molecule_{variant}"
        assert (folder / "alignment.csv").is_file() and (folder / "weights_roles.csv").is_file()
    # separate weights: the recipe has two GEs, each in the weight analysis
    modules = {r["module"] for r in csv.DictReader(open(out / "analysis" / "molecule_separate_weights" /
                                                        "weights_roles.csv"))}
    assert modules == {"encoder", "separate_denoiser"}
