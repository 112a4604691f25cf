"""Fréchet ChemNet Distance (Preuer et al. 2018) with fcd-torch's ChemNet, offline.

The ChemNet weights ship inside the `fcd-torch` wheel (`fcd_torch/ChemNet_v0.13_pretrained.pt`), so no
download happens. ChemNet and its SMILES encoding are fcd-torch's (SMILES canonicalised by RDKit, its
default); activations are the 512-d penultimate layer. The batching loop and the Fréchet distance are
ours (fcd-torch's use `np.row_stack` and `sqrtm(disp=...)`, both deprecated); a test checks that they give
fcd-torch's value. Statistics of a reference split are cached as .npz files keyed by a hash of the
reference SMILES, so a changed reference can never reuse a stale cache.
"""
from __future__ import annotations

import hashlib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

CHEMNET_DIM = 512
STATISTICS_VERSION = 1
_CHEMNET = {}


def _fcd_torch():
    try:
        import fcd_torch
        from fcd_torch.utils import SmilesDataset, load_imported_model
    except ImportError as error:
        raise ImportError("FCD needs the fcd-torch wheel, which carries ChemNet's weights: "
                          "`python -m pip install fcd-torch torch==<your torch version>`") from error
    return fcd_torch, SmilesDataset, load_imported_model


def chemnet(device: str = "cpu") -> torch.nn.Module:
    """ChemNet in eval mode, loaded once per process from the fcd-torch wheel's weight file."""
    if device not in _CHEMNET:
        fcd_torch, _, load_imported_model = _fcd_torch()
        weights = Path(fcd_torch.__file__).parent / "ChemNet_v0.13_pretrained.pt"
        if not weights.is_file():
            raise FileNotFoundError(f"fcd-torch is installed but its ChemNet weights are missing: {weights}; "
                                    "reinstall fcd-torch")
        model = load_imported_model(torch.load(weights, map_location="cpu", weights_only=True))
        _CHEMNET[device] = model.eval().to(device)
    return _CHEMNET[device]


@contextmanager
def _single_thread(enabled: bool = True):
    """Run torch on one CPU thread inside the block, then restore the previous setting."""
    previous = torch.get_num_threads()
    if enabled:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def chemnet_activations(smiles: list[str], device: str = "cpu", batch_size: int = 512,
                        single_thread: bool = True, progress: str | None = None) -> np.ndarray:
    """[len(smiles), 512] float32 ChemNet activations, as fcd-torch computes them (SMILES canonicalised by
    RDKit, one-hot over 350 characters). Every SMILES must parse (fcd-torch raises ValueError otherwise).

    single_thread: run ChemNet on one torch thread when on CPU (default). The LSTM's 350 small sequential
    steps gain little from a second thread (1.2 vs 1.4 s per 1,000 SMILES on an idle 2-core machine) and
    lose 4x when other jobs share the cores (5.7 vs 1.4 s).
    progress: description of a tqdm bar over the batches (None: no bar).
    """
    if not smiles:
        return np.zeros((0, CHEMNET_DIM), dtype=np.float32)
    _, SmilesDataset, _ = _fcd_torch()
    model, data = chemnet(device), SmilesDataset(list(smiles), canonize=True)
    out = []
    with _single_thread(single_thread and str(device).startswith("cpu")), torch.no_grad():
        starts = range(0, len(data), batch_size)
        for start in tqdm(starts, desc=progress, unit="batch", disable=progress is None, dynamic_ncols=True):
            batch = np.stack([data[i] for i in range(start, min(start + batch_size, len(data)))])
            out.append(model(torch.from_numpy(batch).transpose(1, 2).float().to(device)).cpu().numpy())
    return np.concatenate(out).astype(np.float32)  # [len(smiles), 512]


@dataclass
class FCDStatistics:
    """Gaussian fitted to ChemNet activations: mean [512], covariance [512, 512] (float64), count."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int

    @classmethod
    def from_activations(cls, activations: np.ndarray) -> "FCDStatistics":
        a = torch.from_numpy(np.asarray(activations, dtype=np.float64))  # [n, 512]
        if a.shape[0] < 2:
            raise ValueError(f"FCD needs at least 2 molecules, got {a.shape[0]}")
        with _single_thread():
            mu = a.mean(0)
            centred = a - mu
            sigma = centred.T @ centred / (a.shape[0] - 1)  # unbiased, as np.cov
        return cls(mu.numpy(), sigma.numpy(), int(a.shape[0]))

    @classmethod
    def from_sums(cls, total: np.ndarray, outer: np.ndarray, count: int) -> "FCDStatistics":
        """From sum of activations [512], sum of outer products [512, 512] and count (unbiased covariance)."""
        if count < 2:
            raise ValueError(f"FCD needs at least 2 molecules, got {count}")
        mu = np.asarray(total, dtype=np.float64) / count
        sigma = (np.asarray(outer, dtype=np.float64) - count * np.outer(mu, mu)) / (count - 1)
        return cls(mu, sigma, int(count))


def statistics_from_smiles(smiles: list[str], device: str = "cpu") -> FCDStatistics:
    return FCDStatistics.from_activations(chemnet_activations(smiles, device))


def statistics_of_sets(sets: dict[str, list[str]], device: str = "cpu") -> dict[str, FCDStatistics | None]:
    """Statistics of several SMILES lists (e.g. one per bond route) with one ChemNet pass over their union.

    ChemNet dominates evaluation time and the lists overlap almost entirely, so each distinct SMILES is
    encoded once. Duplicates inside a list still count (FCD weighs every molecule). None for < 2 SMILES.
    """
    unique = sorted(set().union(*sets.values())) if sets else []
    row = {s: i for i, s in enumerate(unique)}
    activations = chemnet_activations(unique, device)
    return {name: FCDStatistics.from_activations(activations[[row[s] for s in smiles]]) if len(smiles) >= 2 else None
            for name, smiles in sets.items()}


def frechet_distance(a: FCDStatistics, b: FCDStatistics) -> float:
    """|mu_a - mu_b|² + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^½).

    Tr((S_a S_b)^½) is computed as the sum of square roots of the eigenvalues of S_a^½ S_b S_a^½ (symmetric,
    PSD): the same value as fcd-torch's `scipy.linalg.sqrtm` route to ~1e-9, ten times faster, and stable
    for the singular covariances of small sets. Done in float64 torch on one thread (multi-threaded BLAS
    took seconds instead of 0.1 s per call on a shared 2-core machine).
    """
    with _single_thread():
        sa, sb = torch.from_numpy(np.asarray(a.sigma, np.float64)), torch.from_numpy(np.asarray(b.sigma, np.float64))
        w, v = torch.linalg.eigh(sa)
        root_a = (v * w.clamp_min(0).sqrt()) @ v.T
        trace_sqrt = torch.linalg.eigvalsh(root_a @ sb @ root_a).clamp_min(0).sqrt().sum()
        diff = torch.from_numpy(np.asarray(a.mu, np.float64) - np.asarray(b.mu, np.float64))
        return float(diff @ diff + sa.trace() + sb.trace() - 2 * trace_sqrt)


def fcd(smiles: list[str], reference: FCDStatistics, device: str = "cpu") -> float:
    """FCD of a list of (valid) SMILES against reference statistics."""
    return frechet_distance(statistics_from_smiles(smiles, device), reference)


def smiles_digest(smiles: list[str]) -> str:
    """Short hash of an ordered SMILES list, used to key cached statistics."""
    h = hashlib.blake2b(digest_size=8)
    for s in smiles:
        h.update(s.encode())
        h.update(b"\n")
    return h.hexdigest()


def cached_reference_statistics(smiles: list[str], name: str, cache_dir: str | Path,
                                device: str = "cpu") -> FCDStatistics:
    """Statistics of a reference split, computed once and cached as `<cache_dir>/fcd/<name>_<hash>.npz`.

    name: e.g. "qm9_edm_test". An unreadable cache file is recomputed and overwritten.
    """
    path = Path(cache_dir) / "fcd" / f"{name}_v{STATISTICS_VERSION}_{smiles_digest(smiles)}.npz"
    if path.exists():
        try:
            with np.load(path) as blob:
                return FCDStatistics(blob["mu"], blob["sigma"], int(blob["count"]))
        except Exception:  # a truncated or foreign file: recompute below
            pass
    print(f"building a reference cache (first run only): ChemNet statistics of {len(smiles):,} {name} SMILES "
          f"(FCD) -> {path}", file=sys.stderr, flush=True)
    stats = FCDStatistics.from_activations(chemnet_activations(smiles, device, progress=f"ChemNet, {name}"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")  # np.savez keeps a name ending in .npz
    np.savez(tmp, mu=stats.mu, sigma=stats.sigma, count=stats.count)
    tmp.replace(path)
    return stats
