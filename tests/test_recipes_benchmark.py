"""`python -m benchmarks.run recipes` end to end at its seconds-long `smoke` setting (molecules: l-DeTok trained
in a subprocess, evaluated from its checkpoints; AlignTok's row says why it has none)."""
import csv

from benchmarks import recipes


def test_recipes_benchmark_writes_table_rows_and_plot(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["recipes", "--setting", "smoke", "--modalities", "molecule", "--recipes", "ldetok",
                                     "aligntok", "--results-dir", str(tmp_path / "results"),
                                     "--work-dir", str(tmp_path / "work")])
    recipes.main()
    out = tmp_path / "results" / "recipes"
    rows = list(csv.DictReader(open(out / "rows.csv")))
    # points at 6 and 8 of 8 steps; l-DeTok's generator trains from step 5 on, so both can generate
    assert sorted((r["recipe"], int(r["step"])) for r in rows) == [("ldetok", 6), ("ldetok", 8)]
    assert all(r["samples_seen"] == str(int(r["step"]) * 16) for r in rows)
    table = (out / "table.md").read_text()
    assert "| aligntok | images only" in table and "| ldetok | 128 |" in table
    assert (out / "generation_vs_compute.png").stat().st_size > 1000 and (out / "run.json").is_file()
