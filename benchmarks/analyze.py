"""What a checkpoint's Generative Encoder has learned, one CSV + PNG per analysis:

    python -m benchmarks.run analyze CHECKPOINT [--analyses alignment weights spectrum truncation probe]
        [--samples 256] [--times 0 0.1 ... 1] [--max-items 2048] [--topk 10] [--probe-items 2000 1000]
        [--weights ema|raw] [--batch-size 64] [--seed 0] [--threads 1] [--name NAME] [--results-dir DIR]

alignment   per GE block: linear CKA, CKNNA (k = --topk) and the mean cosine similarity between the tokenize
            pass's activations at the latent positions (the first --samples test samples) and the denoise
            pass's on the same samples' latents noised to x_t = t z + (1 - t) eps, for each flow time t of
            --times (t = 1 is data; images: the samples' own classes, molecules: unconditional). Items are the
            real latent tokens, at most --max-items of them (a fixed random subset, the same in both passes).
            The denoise pass is the recipe's denoiser: UNITE's GE itself, or its separate denoiser
            (recipe.share_weights=false), or a staged recipe's generator on its standardised latents.
weights     the paper's description-length proxy: per parameter tensor of every GE of the recipe, the
            histogram entropy of its weights (256 bins over its range, bits per parameter), trained against
            initial, by role (core/analysis/parameters.py: normalisation, modulation, conditioning,
            attention, mlp, other). The initial weights are rebuilt from the run's config and
            trainer.seed as core/train.py builds them (seed, then build_recipe).
spectrum    PCA spectrum of the clean latent tokens of the --samples test samples, and its effective rank.
truncation  the modality's reconstruction figures when the latents are projected onto their top k principal
            axes (fitted on the same tokens), k = 0 ... C.
probe       what the latent knows. Molecules: held-out R^2 of a ridge regression of each QM9 property
            (qm9pack's columns: dipole, polarisability, HOMO, LUMO, HOMO-LUMO gap, Cv) from the latent
            pooled over atoms (mean and std per channel), fitted on the first --probe-items[0] validation
            molecules, scored on the first --probe-items[1] test molecules, beside the element-count
            baseline and both together. Images: logistic-regression accuracy of the class from the flattened
            latent (core/linear_probe.py; train / test split).
Writes benchmarks/results/analysis/<name>/<analysis>.csv and .png, summary.json (headline figures) and
run.json (checkpoint, step, options, machine). The model is the checkpoint's EMA weights unless --weights raw.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from core.analysis.activations import latent_block_outputs
from core.analysis.parameters import role_summary, weight_entropy_rows
from core.analysis.regression import ridge_probe
from core.analysis.similarity import per_layer_alignment
from core.analysis.spectra import effective_rank, pca_basis, pca_spectrum, truncate_to_components
from core.generative_encoder import GenerativeEncoder
from core.recipes.staged import StagedRecipe
from core.transport import interpolate

ANALYSES = ("alignment", "weights", "spectrum", "truncation", "probe")
DEFAULT_TIMES = tuple(round(0.1 * i, 1) for i in range(11))


class AnalysisError(ValueError):
    """A checkpoint or option that an analysis cannot use; the message says which and why."""


# ---------------------------------------------------------------------------------------------- loading
def load_run(checkpoint: Path, weights: str):
    """(model in eval mode, its modality, the run config, step) of a step_*.pt file. The modality reads the
    whole validation/test split (the analyses take its first items) and computes no FID (no Inception)."""
    from core.build import build_modality, build_recipe
    from core.checkpoint import load_checkpoint
    from core.sample import WEIGHTS, upgrade_checkpoint
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise AnalysisError(f"analyze: checkpoint {checkpoint} does not exist (give a step_*.pt file of a run's "
                            "checkpoints/ folder)")
    if weights not in WEIGHTS:
        raise AnalysisError(f"analyze: --weights {weights!r}: choose one of {sorted(WEIGHTS)}")
    state = load_checkpoint(checkpoint, map_location="cpu")
    run_cfg, state_dict = upgrade_checkpoint(OmegaConf.create(state["config"]), state[WEIGHTS[weights]])
    run_cfg = data_config(run_cfg)
    modality = build_modality(run_cfg)
    model = build_recipe(run_cfg, modality)
    model.load_state_dict(state_dict)
    return model.eval(), modality, run_cfg, state["step"]


def data_config(run_cfg: DictConfig) -> DictConfig:
    """The run's config with data-only changes (core/build.py DATA_ONLY_MODALITY_KEYS): whole evaluation
    splits, no FID; AlignTok's foundation encoder rebuilt without its pretrained file (the checkpoint holds it)."""
    run_cfg.modality.eval_subset = None
    if "fid" in run_cfg.modality.evaluation:
        run_cfg.modality.evaluation.fid = False
    if "foundation" in run_cfg.recipe:
        run_cfg.recipe.foundation.weights = "random"
    return run_cfg


def initial_model(run_cfg: DictConfig, modality):
    """The recipe at its initial weights: core/train.py seeds every generator with trainer.seed, then builds."""
    from core.build import build_recipe
    from core.train import seed_everything
    with torch.random.fork_rng():
        seed_everything(run_cfg.trainer.seed)
        return build_recipe(run_cfg, modality).eval()


def first_batches(modality, split: str, count: int, batch_size: int) -> list:
    """The first `count` items of `split` (fixed order), collated in batches."""
    dataset = modality.dataset(split)
    if count < 1:
        raise AnalysisError(f"analyze: --samples {count} must be >= 1")
    count = min(count, len(dataset))
    return [modality.collate([dataset[i] for i in range(first, min(first + batch_size, count))])
            for first in range(0, count, batch_size)]


def tokenizer_and_denoiser(model) -> tuple[GenerativeEncoder, GenerativeEncoder]:
    tokenizer = getattr(model, "encoder", None)
    if not isinstance(tokenizer, GenerativeEncoder):
        raise AnalysisError(f"analyze alignment: {type(model).__name__}'s tokenizer is "
                            f"{type(tokenizer).__name__}, not a Generative Encoder (alignment compares the GE's two "
                            "passes: recipes unite, two_stage, ldetok)")
    return tokenizer, model.denoiser


def generator_target(model, z: torch.Tensor) -> torch.Tensor:
    """The denoiser's data end x_1: z itself (UNITE) or the staged recipes' standardised z."""
    return model.standardize(z) if isinstance(model, StagedRecipe) else z


# ---------------------------------------------------------------------------------------------- analyses
@torch.no_grad()
def alignment(model, modality, batches: list, times: tuple[float, ...], max_items: int, topk: int,
              seed: int) -> list[dict]:
    """Rows (t, layer, cka, cknna, cosine, items): tokenize-pass against denoise-pass block outputs."""
    tokenizer, denoiser = tokenizer_and_denoiser(model)
    generator = torch.Generator().manual_seed(seed)
    # the compared tokens are chosen before any pass runs, so only they are kept (GPU-sized runs: 10^5 tokens)
    masks = [model.embedder(batch).layout.mask for batch in batches]
    total = sum(int(mask.sum()) for mask in masks)
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.randperm(total, generator=generator)[:max_items]] = True
    tokenized: list[list[torch.Tensor]] = []
    denoised: dict[float, list[list[torch.Tensor]]] = {t: [] for t in times}
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the tokenize pass draws its input noise
        start = 0
        for batch, mask in zip(batches, masks):
            keep = chosen[start:start + int(mask.sum())]  # of this batch's real tokens, in mask order
            start += int(mask.sum())
            observation = model.embedder(batch)
            layout = observation.layout
            n_lat = layout.mask.shape[1]
            blocks, z = latent_block_outputs(tokenizer, lambda: tokenizer.tokenize(observation), n_lat)
            tokenized.append([b[layout.mask][keep] for b in blocks])  # [kept tokens, D] per block
            target = generator_target(model, z)
            noise = torch.randn(target.shape, generator=generator)
            labels = modality.batch_labels(batch)
            no_drop = torch.zeros(target.shape[0], dtype=torch.bool)  # the samples' own classes, never dropped
            for t in times:
                t_batch = torch.full((target.shape[0],), float(t))
                x_t = interpolate(noise, target, t_batch)
                blocks, _ = latent_block_outputs(
                    denoiser, lambda: denoiser.denoise(x_t, t_batch, labels, layout, no_drop), n_lat)
                denoised[t].append([b[layout.mask][keep] for b in blocks])

    def stack(parts: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        return [torch.cat([part[layer] for part in parts]) for layer in range(len(parts[0]))]
    first = stack(tokenized)
    rows = []
    for t in times:
        for row in per_layer_alignment(first, stack(denoised[t]), topk):
            rows.append({"t": t, **row, "items": int(chosen.sum())})
    return rows


@torch.no_grad()
def clean_latents(model, batches: list, seed: int) -> list[tuple[torch.Tensor, object]]:
    """(z [B, N, C], layout) per batch, the tokenize pass's input noise drawn under `seed`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return [model.encode(batch) for batch in batches]


def real_tokens(latents: list[tuple[torch.Tensor, object]]) -> torch.Tensor:
    return torch.cat([z[layout.mask] for z, layout in latents]).double()  # [tokens, C]


def variance_shares(variance: torch.Tensor) -> torch.Tensor:
    """Each component's share of the total variance (all 0 for a constant latent, e.g. at initialisation)."""
    total = variance.sum()
    return variance / total if total > 0 else torch.zeros_like(variance)


def spectrum(latents) -> tuple[list[dict], dict]:
    """Rows per principal component (variance, share, cumulative share) and {effective_rank, tokens, channels}."""
    tokens = real_tokens(latents)
    variance = pca_spectrum(tokens)
    share = variance_shares(variance)
    rows = [{"component": i + 1, "variance": float(v), "share": float(s), "cumulative_share": float(c)}
            for i, (v, s, c) in enumerate(zip(variance, share, share.cumsum(0)))]
    summary = {"effective_rank": effective_rank(tokens - tokens.mean(0)), "tokens": len(tokens),
               "channels": tokens.shape[1]}
    return rows, summary


@torch.no_grad()
def truncation(model, modality, batches: list, latents) -> list[dict]:
    """Rows per k (components kept): the mean of each of the modality's per-sample reconstruction figures
    (NaN values left out, as core/evaluation.py does) and the latent variance the k components keep."""
    tokens = real_tokens(latents)
    mean, axes = pca_basis(tokens)
    share = variance_shares(pca_spectrum(tokens)).cumsum(0)
    rows = []
    for k in range(axes.shape[1] + 1):
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for batch, (z, layout) in zip(batches, latents):
            prediction = model.decode(truncate_to_components(z, mean, axes, k), layout)
            for key, values in modality.reconstruction_metrics(prediction, batch).items():
                values = values.double().cpu()
                defined = ~torch.isnan(values)
                sums[key] = sums.get(key, 0.0) + float(values[defined].sum())
                counts[key] = counts.get(key, 0) + int(defined.sum())
        modality.reconstruction_split_metrics()  # forget any split-level accumulator
        rows.append({"components": k, "variance_kept": float(share[k - 1]) if k else 0.0,
                     **{key: sums[key] / counts[key] if counts[key] else float("nan") for key in sums}})
    return rows


def weights(model, initial) -> tuple[list[dict], list[dict]]:
    """(one row per tensor of every GE child of the recipe, the per-role summary of each GE)."""
    children = [(name, child) for name, child in model.named_children() if isinstance(child, GenerativeEncoder)]
    start = dict(initial.named_children())
    rows, summary = [], []
    for name, child in children:
        child_rows = weight_entropy_rows(child, start[name])
        rows += [{"module": name, **row} for row in child_rows]
        summary += [{"module": name, **row} for row in role_summary(child_rows)]
    return rows, summary


@torch.no_grad()
def pooled_molecule_features(model, modality, split: str, count: int, batch_size: int, seed: int):
    """(latent mean and std over atoms [n, 2C], element counts [n, E], QM9 properties [n, P], property names)."""
    from modalities.molecule.data.qm9 import PROPERTY_COLUMNS
    batches = first_batches(modality, split, count, batch_size)
    latents = clean_latents(model, batches, seed)
    pooled, composition, rows = [], [], []
    for batch, (z, layout) in zip(batches, latents):
        real = layout.mask.unsqueeze(-1).double()
        atoms = real.sum(1)
        mean = (z.double() * real).sum(1) / atoms
        std = (((z.double() - mean[:, None]) ** 2 * real).sum(1) / atoms).sqrt()
        pooled.append(torch.cat([mean, std], dim=1))
        elements, _, mask = modality.dense_targets(batch)
        counts = torch.nn.functional.one_hot(elements, len(modality.elements)) * mask.unsqueeze(-1)
        composition.append(counts.sum(1).double())
        rows.append(batch.row)
    properties = modality.dataset(split).data.properties[torch.cat(rows)].double()
    return torch.cat(pooled), torch.cat(composition), properties, PROPERTY_COLUMNS


def probe(model, modality, run_cfg: DictConfig, items: tuple[int, int], batch_size: int, seed: int) -> list[dict]:
    """Molecules: rows (property, features, r2, fit_items, test_items); images: one row of class accuracy."""
    name = run_cfg.modality.name
    if name == "image":
        from core.linear_probe import linear_probe
        figures = linear_probe(model, modality, train_items=items[0], eval_items=items[1], eval_split="test",
                               batch_size=batch_size, device=torch.device("cpu"))
        return [{"target": "class", "features": "latent (flattened)", "accuracy": figures["linear_probe_accuracy"],
                 "chance": figures["linear_probe_chance"], "fit_items": figures["linear_probe_train_items"],
                 "test_items": figures["linear_probe_eval_items"]}]
    if name != "molecule":
        raise AnalysisError(f"analyze probe: no probe targets for modality {name!r} (molecule: QM9 properties, "
                            "image: classes)")
    if run_cfg.modality.dataset != "qm9":
        raise AnalysisError(f"analyze probe: the molecule probe regresses QM9's property columns; this run's "
                            f"modality.dataset is {run_cfg.modality.dataset!r}")
    fit = pooled_molecule_features(model, modality, "val", items[0], batch_size, seed)
    test = pooled_molecule_features(model, modality, "test", items[1], batch_size, seed)
    feature_sets = {"latent (mean, std over atoms)": (fit[0], test[0]), "element counts": (fit[1], test[1]),
                    "latent + element counts": (torch.cat(fit[:2], 1), torch.cat(test[:2], 1))}
    rows = []
    for features, (fit_x, test_x) in feature_sets.items():
        r2 = ridge_probe(fit_x, fit[2], test_x, test[2])
        rows += [{"target": column, "features": features, "r2": float(value), "fit_items": len(fit_x),
                  "test_items": len(test_x)} for column, value in zip(fit[3], r2)]
    return rows


# ---------------------------------------------------------------------------------------------- files
def write_csv(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def analyze(checkpoint: Path, analyses: list[str], out: Path, *, samples: int, times: tuple[float, ...],
            max_items: int, topk: int, probe_items: tuple[int, int], weights_name: str, batch_size: int,
            seed: int) -> dict:
    """Run `analyses` on `checkpoint`, write their files under `out`; returns the headline figures."""
    from benchmarks import analyze_figures as figures
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown:
        raise AnalysisError(f"analyze: unknown analyses {unknown}; choose from {list(ANALYSES)}")
    model, modality, run_cfg, step = load_run(checkpoint, weights_name)
    out.mkdir(parents=True, exist_ok=True)
    recipe = run_cfg.recipe._target_.split(".")[-1]
    title = f"{Path(checkpoint).parent.parent.name} step {step} ({run_cfg.modality.name}, {recipe})"
    batches = first_batches(modality, "test", samples, batch_size)
    summary: dict = {"checkpoint": str(checkpoint), "step": step, "modality": run_cfg.modality.name,
                     "recipe": recipe, "samples": min(samples, len(modality.dataset("test"))), "seconds": {}}
    latents = clean_latents(model, batches, seed) if {"spectrum", "truncation"} & set(analyses) else None
    for name in analyses:
        started = time.monotonic()
        if name == "alignment":
            rows = alignment(model, modality, batches, times, max_items, topk, seed)
            write_csv(rows, out / "alignment.csv")
            figures.alignment_figure(rows, out / "alignment.png", title)
            summary["alignment"] = figures.alignment_headline(rows)
        elif name == "weights":
            rows, roles = weights(model, initial_model(run_cfg, modality))
            write_csv(rows, out / "weights.csv")
            write_csv(roles, out / "weights_roles.csv")
            figures.weights_figure(roles, out / "weights.png", title)
            summary["weights"] = roles
        elif name == "spectrum":
            rows, headline = spectrum(latents)
            write_csv(rows, out / "spectrum.csv")
            figures.spectrum_figure(rows, headline, out / "spectrum.png", title)
            summary["spectrum"] = headline
        elif name == "truncation":
            rows = truncation(model, modality, batches, latents)
            write_csv(rows, out / "truncation.csv")
            figures.truncation_figure(rows, out / "truncation.png", title)
            summary["truncation"] = rows
        else:
            rows = probe(model, modality, run_cfg, probe_items, batch_size, seed)
            write_csv(rows, out / "probe.csv")
            figures.probe_figure(rows, out / "probe.png", title)
            summary["probe"] = rows
        summary["seconds"][name] = round(time.monotonic() - started, 2)
        print(f"analyze: {name} done in {summary['seconds'][name]:.1f} s -> {out}", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main() -> None:
    from benchmarks.molecule_curve import RESULTS, machine_record
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--analyses", nargs="+", default=list(ANALYSES), choices=ANALYSES)
    parser.add_argument("--samples", type=int, default=256, help="test samples of alignment, spectrum, truncation")
    parser.add_argument("--times", type=float, nargs="+", default=list(DEFAULT_TIMES), help="flow times (1 = data)")
    parser.add_argument("--max-items", type=int, default=2048, help="latent tokens compared by the alignment")
    parser.add_argument("--topk", type=int, default=10, help="CKNNA's nearest neighbours")
    parser.add_argument("--probe-items", type=int, nargs=2, default=[2000, 1000], metavar=("FIT", "TEST"))
    parser.add_argument("--weights", default="ema", help="ema | raw")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default=None, help="results folder name (default: <run folder>_step<step>)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS / "analysis")
    args = parser.parse_args()
    if any(not 0.0 <= t <= 1.0 for t in args.times):
        raise SystemExit(f"analyze: --times {args.times} must lie in [0, 1] (flow time, 1 = data)")
    torch.set_num_threads(args.threads)
    name = args.name or f"{args.checkpoint.resolve().parent.parent.name}_{args.checkpoint.stem}"
    out = args.results_dir / name
    record = {**machine_record(), "threads": args.threads, "options": {k: str(v) for k, v in vars(args).items()}}
    try:
        analyze(args.checkpoint, args.analyses, out, samples=args.samples, times=tuple(args.times),
                max_items=args.max_items, topk=args.topk, probe_items=tuple(args.probe_items),
                weights_name=args.weights, batch_size=args.batch_size, seed=args.seed)
    except AnalysisError as error:
        raise SystemExit(str(error)) from None
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
