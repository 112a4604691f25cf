"""Append-only training metrics: one JSON object per line (metrics.jsonl) and the same rows as CSV."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path


class MetricsLog:
    def __init__(self, out_dir: Path, enabled: bool):
        self.jsonl = Path(out_dir) / "metrics.jsonl"
        self.csv = Path(out_dir) / "metrics.csv"
        self.enabled = enabled

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        row = {k: (float(v) if hasattr(v, "item") else v) for k, v in row.items()}
        with open(self.jsonl, "a") as handle:
            handle.write(json.dumps(row, allow_nan=True) + "\n")
        new_file = not self.csv.exists()
        with open(self.csv, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(["step", "key", "value"])
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
                    writer.writerow([row.get("step", ""), key, value])

    def rows(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
