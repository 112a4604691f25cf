"""Why a molecule checkpoint's samples are (not) physically shaped, in four measurements:

    python -m benchmarks.run molecule_diagnosis CHECKPOINT [CHECKPOINT ...] [--molecules 300]
        [--samplers euler:50:0.5 euler:50:2 heun:50:1] [--name molecule_diagnosis]

1. Decoder gain: real test molecules are tokenized, their latents moved by N(0, sigma^2) per channel, and the
   mean displacement of the decoded atoms (Angstrom) is reported per sigma. It says how precise a generated latent
   must be for a given geometric precision (e.g. 1.5 Angstrom per unit: bonds within 0.05 Angstrom need a latent
   error below ~0.03 per channel).
2. Geometry of generated against real molecules: quantiles of each atom's nearest-neighbour distance, the radius
   of gyration over N^(1/3) (a global size that does not depend on the atom count), and atom pairs closer than
   0.8 Angstrom per molecule (no bond is that short in QM9). Noisy samples keep the size and widen the
   nearest-neighbour spread; collapsed ones shrink.
3. Prediction error against t: the RMS error of x1_hat(x_t, t) around the real latents next to that of x_t / t
   (a network worse than x_t / t near the data end caps its samples' precision; recipe.x_prediction_skip=edm).
4. Samplers: the C-C and C-H bond-length medians and atom stability of the samples under each
   `solver:steps:shift`, same seed. If none moves them, the imprecision is in the generator's latents, not in
   the integration.
Writes benchmarks/results/<name>/diagnosis.json and diagnosis.md (machine, load, commit).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks.molecule_curve import RESULTS, machine_record

TOO_CLOSE = 0.8  # Angstrom: shorter than any QM9 bond (H-H in H2 is 0.74, none in QM9; C-H is 1.09)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def geometry_summary(molecules: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Nearest-neighbour distance quantiles, mean radius of gyration / N^(1/3), and pairs closer than
    TOO_CLOSE per molecule, over (atomic_numbers, positions [N, 3]) pairs with N >= 2."""
    nearest, size, close = [], [], 0
    for _, positions in molecules:
        x = np.asarray(positions, dtype=np.float64)
        if len(x) < 2:
            raise ValueError(f"geometry_summary: a molecule with {len(x)} atom(s) has no nearest neighbour")
        centred = x - x.mean(axis=0)
        size.append(np.sqrt((centred ** 2).sum(axis=1).mean()) / len(x) ** (1 / 3))
        distances = np.linalg.norm(x[:, None] - x[None], axis=-1)
        np.fill_diagonal(distances, np.inf)
        nearest.extend(distances.min(axis=1))
        close += int((distances < TOO_CLOSE).sum()) // 2
    return {"nearest_neighbour_quantiles": dict(zip([f"q{int(q * 100):02d}" for q in QUANTILES],
                                                    np.quantile(nearest, QUANTILES).tolist())),
            "radius_of_gyration_over_cube_root_n": float(np.mean(size)),
            "pairs_closer_than_0.8_per_molecule": close / len(molecules)}


@torch.no_grad()
def decoder_gain(model, modality, batch, sigmas: tuple[float, ...], seed: int) -> dict:
    """Per sigma, when the clean latents move by N(0, sigma^2) per channel: the mean displacement (Angstrom) of
    the decoded atoms, and the atom and molecule stability of the decoded molecules (sigma 0 included): how
    precise a generated latent must be for stable molecules."""
    from modalities.molecule.evaluation.stability import check_stability, summarize_stability

    generator = torch.Generator().manual_seed(seed)
    observation = model.embedder(batch)
    z = model.encoder.tokenize(observation)
    clean = model.decoder(z, observation.layout).positions
    mask = observation.layout.mask
    gain, atom_stability, molecule_stability = {}, {}, {}
    for sigma in (0.0, *sigmas):
        decoded = model.decoder(z + sigma * torch.randn(z.shape, generator=generator), observation.layout)
        if sigma > 0:
            gain[f"{sigma:g}"] = float((decoded.positions - clean).norm(dim=-1)[mask].mean())
        stability = summarize_stability([check_stability(a.numpy(), x.double().numpy())
                                         for a, x in modality.to_molecules(decoded)])
        atom_stability[f"{sigma:g}"] = stability.atom_stability
        molecule_stability[f"{sigma:g}"] = stability.molecule_stability
    return {"displacement_by_sigma": gain, "atom_stability_by_sigma": atom_stability,
            "molecule_stability_by_sigma": molecule_stability, "latent_std": float(z[mask].std())}


PROBE_TIMES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


@torch.no_grad()
def prediction_error_by_time(model, batch, times: tuple[float, ...], seed: int) -> dict:
    """Per t: RMS error per channel of the clean-latent prediction x1_hat(x_t, t) on x_t = t z + (1 - t) eps
    around the real molecules' latents z (with self-conditioning: its second pass, fed the first), beside
    that of the trivial estimate x_t / t. Where the network is worse than x_t / t (near the data end), its
    samples cannot be more precise than that error."""
    generator = torch.Generator().manual_seed(seed)
    z, layout = model.encode(batch)
    mask = layout.mask
    labels = model.denoiser.y_embedder.null_labels(z.shape[0], z.device)
    network, trivial = {}, {}
    for t in times:
        x_t = t * z + (1 - t) * torch.randn(z.shape, generator=generator)
        t_batch = torch.full((z.shape[0],), t)
        own = torch.zeros_like(x_t) if model.self_conditioning > 0 else None
        prediction = model.predict_clean(x_t, t_batch, labels, layout, None, own)
        if own is not None:
            prediction = model.predict_clean(x_t, t_batch, labels, layout, None, prediction)
        network[f"{t:g}"] = float(((prediction - z)[mask] ** 2).mean().sqrt())
        trivial[f"{t:g}"] = float(((x_t / t - z)[mask] ** 2).mean().sqrt())
    return {"network": network, "x_t_over_t": trivial}


def batch_molecules(modality, batch) -> list[tuple[np.ndarray, np.ndarray]]:
    """(element indices, positions) of each molecule of a collated batch."""
    elements, positions, mask = modality.dense_targets(batch)
    return [(e[m].numpy(), p[m].double().numpy()) for e, p, m in zip(elements, positions, mask)]


@torch.no_grad()
def sampler_row(model, modality, count: int, spec: str, seed: int) -> dict:
    from modalities.molecule.evaluation.bond_lengths import pooled_bond_lengths
    from modalities.molecule.evaluation.stability import check_stability, summarize_stability

    solver, steps, shift = spec.split(":")
    torch.manual_seed(seed)
    prediction, _, _ = model.generate(count, None, solver=solver, num_steps=int(steps), shift=float(shift),
                                      guidance_scale=1.0, guidance_interval=(0.0, 1.0), rtol=1e-4, atol=1e-4,
                                      device=torch.device("cpu"))
    molecules = [(a.numpy(), x.double().numpy()) for a, x in modality.to_molecules(prediction)]
    lengths, _, _ = pooled_bond_lengths(molecules)
    stability = summarize_stability([check_stability(a, x) for a, x in molecules])
    return {"sampler": spec, **{f"median_{bond}": float(np.median(lengths[bond])) if len(lengths.get(bond, ())) else None
                                for bond in ("C-C", "C-H")},
            "atom_stability": stability.atom_stability, "molecules": molecules}


def diagnose(checkpoint: Path, count: int, samplers: list[str], seed: int, split: str = "test") -> dict:
    from omegaconf import OmegaConf

    from core.sample import load_for_sampling

    model, modality, _, step = load_for_sampling(checkpoint, OmegaConf.create({}), torch.device("cpu"))
    data = modality.dataset(split)
    batch = modality.collate([data[i] for i in range(min(count, len(data)))])  # the first `count` molecules, once
    report = {"checkpoint": str(checkpoint), "step": step, "split": split,
              "decoder_gain": decoder_gain(model, modality, batch, (0.02, 0.05, 0.1, 0.2), seed),
              "prediction_error": prediction_error_by_time(model, batch, PROBE_TIMES, seed),
              "real": geometry_summary(batch_molecules(modality, batch)), "samplers": []}
    for spec in samplers:
        row = sampler_row(model, modality, count, spec, seed)
        molecules = [m for m in row.pop("molecules") if len(m[1]) >= 2]
        report["samplers"].append({**row, "generated": geometry_summary(molecules)})
    return report


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def markdown(reports: list[dict]) -> str:
    lines = ["| checkpoint | step | gain σ=0.05 / 0.1 / 0.2 (Å) | set | sampler | NN q05 / q50 / q95 (Å) | "
             "Rg/N^⅓ | pairs < 0.8 Å | C–C median | C–H median | atom stab. |", "|" + "---|" * 11]
    for r in reports:
        gain = r["decoder_gain"]["displacement_by_sigma"]
        g = " / ".join(f"{gain[s]:.3f}" for s in ("0.05", "0.1", "0.2"))
        name = Path(r["checkpoint"]).parent.parent.name
        q = r["real"]["nearest_neighbour_quantiles"]
        lines.append(f"| {name} | {r['step']} | {g} | real | — | {q['q05']:.3f} / {q['q50']:.3f} / {q['q95']:.3f} | "
                     f"{r['real']['radius_of_gyration_over_cube_root_n']:.3f} | "
                     f"{r['real']['pairs_closer_than_0.8_per_molecule']:.2f} | | | |")
        for s in r["samplers"]:
            q = s["generated"]["nearest_neighbour_quantiles"]
            lines.append(f"| | | | generated | {s['sampler']} | {q['q05']:.3f} / {q['q50']:.3f} / {q['q95']:.3f} | "
                         f"{s['generated']['radius_of_gyration_over_cube_root_n']:.3f} | "
                         f"{s['generated']['pairs_closer_than_0.8_per_molecule']:.2f} | {_cell(s['median_C-C'])} | "
                         f"{_cell(s['median_C-H'])} | {s['atom_stability']:.3f} |")
    lines += ["", "Decoded real latents moved by N(0, σ²) per channel: atom / molecule stability (%)", "",
              "| checkpoint | " + " | ".join(f"σ={s}" for s in reports[0]["decoder_gain"]["atom_stability_by_sigma"]) + " |",
              "|---|" + "---|" * len(reports[0]["decoder_gain"]["atom_stability_by_sigma"])]
    for r in reports:
        g = r["decoder_gain"]
        cells = [f"{100 * g['atom_stability_by_sigma'][s]:.1f} / {100 * g['molecule_stability_by_sigma'][s]:.1f}"
                 for s in g["atom_stability_by_sigma"]]
        lines.append(f"| {Path(r['checkpoint']).parent.parent.name} | " + " | ".join(cells) + " |")
    times = list(reports[0]["prediction_error"]["network"])
    lines += ["", "RMS error per channel of x1_hat(x_t, t) around the real latents: network / trivial x_t / t", "",
              "| checkpoint | " + " | ".join(f"t={t}" for t in times) + " |", "|---|" + "---|" * len(times)]
    for r in reports:
        e = r["prediction_error"]
        lines.append(f"| {Path(r['checkpoint']).parent.parent.name} | "
                     + " | ".join(f"{e['network'][t]:.3f} / {e['x_t_over_t'][t]:.3f}" for t in times) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--molecules", type=int, default=300, help="real molecules (of --split) and samples per measurement")
    parser.add_argument("--samplers", nargs="+", default=["euler:50:0.5", "euler:50:2", "euler:200:1", "heun:50:1"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="test", help="the real molecules of the gain and geometry rows "
                        "(train for a memorisation run: the molecules it learned)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="molecule_diagnosis")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record = {**machine_record(), "threads": args.threads}
    reports = [diagnose(c, args.molecules, args.samplers, args.seed, args.split) for c in args.checkpoints]
    record["load_average_at_end"] = os.getloadavg()
    out = args.results_dir / args.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnosis.json").write_text(json.dumps({"machine": record, "reports": reports}, indent=2))
    table = markdown(reports)
    (out / "diagnosis.md").write_text(f"# {args.name}\n\n{args.molecules} {args.split} molecules and {args.molecules} samples "
                                      f"per row (seed {args.seed}, EMA weights); see the module docstring for what "
                                      f"each column measures.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
