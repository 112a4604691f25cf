"""Append-only training metrics: one JSON object per line (metrics.jsonl), the same rows as CSV, and a
plot of every logged training figure against the step (metrics.png)."""
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

    def plot(self) -> Path | None:
        """metrics.png beside metrics.csv: one panel per logged training figure (loss parts, grad norm,
        lr, throughput) against the step; None when nothing was logged."""
        rows = [row for row in self.rows() if "loss" in row] if self.enabled else []
        if not rows:
            return None
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        skip = {"step", "epoch", "wall_seconds", "skipped_steps"}
        keys = [k for k in rows[0] if k not in skip and isinstance(rows[0][k], (int, float))]
        columns = min(3, len(keys))
        lines = math.ceil(len(keys) / columns)
        figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 2.8 * lines), squeeze=False)
        steps = [row["step"] for row in rows]
        for ax, key in zip(axes.flat, keys):
            values = [row.get(key, float("nan")) for row in rows]
            ax.plot(steps, values, lw=1.2)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            if key == "grad_norm" and min(values) > 0:
                ax.set_yscale("log")  # early gradient norms span orders of magnitude
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        figure.tight_layout()
        path = self.csv.with_name("metrics.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path
