"""The PNG of each analysis of benchmarks/analyze.py (and the side-by-side alignment plot of
benchmarks/ablations.py), from the rows that analysis writes to its CSV."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = (("cka", "linear CKA"), ("cknna", "CKNNA"), ("cosine", "cosine similarity"))


def _save(figure, path: Path, title: str) -> None:
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _layers(rows: list[dict]) -> list[int]:
    return sorted({r["layer"] for r in rows})


def alignment_figure(rows: list[dict], path: Path, title: str) -> None:
    """One panel per metric against flow time t, one line per GE block (darker = deeper)."""
    layers = _layers(rows)
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.4))
    colours = plt.cm.viridis([i / max(1, len(layers) - 1) for i in range(len(layers))])
    for axis, (key, label) in zip(axes, METRICS):
        for layer, colour in zip(layers, colours):
            points = sorted((r["t"], r[key]) for r in rows if r["layer"] == layer)
            axis.plot(*zip(*points), marker="o", markersize=3, color=colour, label=f"block {layer}")
        axis.set_xlabel("flow time t of the denoise pass (1 = data)")
        axis.set_title(f"{label}: tokenize vs denoise pass", fontsize=9)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    _save(figure, path, title)


def alignment_headline(rows: list[dict]) -> dict:
    """Mean over blocks of each metric at every t, and per block at the largest t (headline for tables)."""
    times = sorted({r["t"] for r in rows})
    mean = {f"{t:g}": {key: sum(r[key] for r in rows if r["t"] == t) / len(_layers(rows)) for key, _ in METRICS}
            for t in times}
    last = [r for r in rows if r["t"] == times[-1]]
    return {"mean_over_blocks": mean, f"per_block_at_t={times[-1]:g}": {r["layer"]: {k: r[k] for k, _ in METRICS}
                                                                        for r in last}}


def alignment_comparison_figure(named_rows: dict[str, list[dict]], path: Path, title: str) -> None:
    """Ablations: per variant (a column) its CKA per block against t, on one scale, and the block mean of
    every variant in the last column."""
    names = list(named_rows)
    figure, axes = plt.subplots(1, len(names) + 1, figsize=(3.3 * (len(names) + 1), 3.2), sharey=True)
    for axis, name in zip(axes, names):
        rows = named_rows[name]
        layers = _layers(rows)
        colours = plt.cm.viridis([i / max(1, len(layers) - 1) for i in range(len(layers))])
        for layer, colour in zip(layers, colours):
            axis.plot(*zip(*sorted((r["t"], r["cka"]) for r in rows if r["layer"] == layer)), color=colour,
                      marker="o", markersize=2, label=f"block {layer}")
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("t (1 = data)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("linear CKA, tokenize vs denoise")
    axes[0].legend(fontsize=6)
    for name in names:
        rows = named_rows[name]
        times = sorted({r["t"] for r in rows})
        axes[-1].plot(times, [sum(r["cka"] for r in rows if r["t"] == t) / len(_layers(rows)) for t in times],
                      marker="o", markersize=2, label=name)
    axes[-1].set_title("mean over blocks", fontsize=8)
    axes[-1].set_xlabel("t (1 = data)")
    axes[-1].grid(alpha=0.3)
    axes[-1].legend(fontsize=6)
    _save(figure, path, title)


def weights_figure(roles: list[dict], path: Path, title: str) -> None:
    """Per GE module, per role: histogram entropy (bits per parameter) trained against initial."""
    modules = list(dict.fromkeys(r["module"] for r in roles))
    figure, axes = plt.subplots(1, len(modules), figsize=(6.0 * len(modules), 3.6), squeeze=False)
    for axis, module in zip(axes[0], modules):
        chosen = [r for r in roles if r["module"] == module]
        positions = range(len(chosen))
        axis.bar([p - 0.2 for p in positions], [r["entropy_initial_bits"] for r in chosen], width=0.4, label="initial")
        axis.bar([p + 0.2 for p in positions], [r["entropy_trained_bits"] for r in chosen], width=0.4, label="trained")
        axis.set_xticks(list(positions), [f"{r['role']}\n{r['parameters']:,}" for r in chosen], fontsize=7)
        axis.set_ylabel("histogram entropy, bits / parameter")
        axis.set_title(f"{module}: description-length proxy by role (parameters below)", fontsize=9)
        axis.grid(alpha=0.3, axis="y")
        axis.legend(fontsize=7)
    _save(figure, path, title)


def spectrum_figure(rows: list[dict], headline: dict, path: Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(5.2, 3.4))
    components = [r["component"] for r in rows]
    axis.bar(components, [r["share"] for r in rows], label="share of variance")
    axis.plot(components, [r["cumulative_share"] for r in rows], color="C1", marker="o", label="cumulative")
    axis.set_xlabel("principal component of the latent tokens")
    axis.set_ylim(0, 1.05)
    axis.set_title(f"effective rank {headline['effective_rank']:.2f} of {headline['channels']} channels "
                   f"({headline['tokens']} tokens)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    _save(figure, path, title)


def truncation_figure(rows: list[dict], path: Path, title: str) -> None:
    """Each reconstruction figure against the principal components kept."""
    keys = [k for k in rows[0] if k not in ("components", "variance_kept")]
    figure, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2), squeeze=False)
    components = [r["components"] for r in rows]
    for axis, key in zip(axes[0], keys):
        axis.plot(components, [r[key] for r in rows], marker="o")
        axis.set_title(key, fontsize=8)
        axis.set_xlabel("principal components kept")
        axis.grid(alpha=0.3)
    _save(figure, path, title)


def probe_figure(rows: list[dict], path: Path, title: str) -> None:
    """Molecules: R^2 per property for each feature set; images: accuracy against chance."""
    figure, axis = plt.subplots(figsize=(7.0, 3.4))
    if "accuracy" in rows[0]:
        axis.bar(["latent"], [rows[0]["accuracy"]], width=0.4)
        axis.axhline(rows[0]["chance"], color="k", linestyle="--", label="chance (largest class)")
        axis.set_ylabel("linear-probe accuracy (test)")
        axis.legend(fontsize=7)
    else:
        targets = list(dict.fromkeys(r["target"] for r in rows))
        feature_sets = list(dict.fromkeys(r["features"] for r in rows))
        width = 0.8 / len(feature_sets)
        for index, features in enumerate(feature_sets):
            values = {r["target"]: r["r2"] for r in rows if r["features"] == features}
            axis.bar([i + (index - (len(feature_sets) - 1) / 2) * width for i in range(len(targets))],
                     [max(values[t], -0.1) for t in targets], width=width, label=features)
        axis.set_xticks(range(len(targets)), targets, fontsize=7, rotation=15)
        axis.set_ylabel("held-out R² (ridge; below -0.1 clipped)")
        axis.axhline(0, color="k", linewidth=0.6)
        axis.legend(fontsize=7)
    axis.grid(alpha=0.3, axis="y")
    _save(figure, path, title)
