"""Accumulating molecule metrics (torchmetrics `Metric`s) built on the per-molecule pure functions.

The expensive part -- bond perception and RDKit/OpenBabel work per molecule -- runs in a process pool
when `workers` > 1 (each worker handles chunks of molecules; results are small picklable records).

Synchronisation across processes (DDP): every count is a summed tensor state, and the SMILES needed for
uniqueness/novelty travel as 64-bit hashes in a concatenated state, so `compute()` is exact after a sync.
The SMILES strings themselves (`.smiles[route]`, for FCD and export) and the failure tallies
(`.reasons[route]`) are kept per process only.
"""
from __future__ import annotations

import hashlib
import multiprocessing
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from tqdm import tqdm

from modalities.molecule.evaluation.alignment import kabsch_rmsd
from modalities.molecule.evaluation.bond_perception import ROUTES, input_problem, perceive
from modalities.molecule.evaluation.chemistry_metrics import ChemistryResult, assess_chemistry, reason_category
from modalities.molecule.evaluation.fcd import CHEMNET_DIM, FCDStatistics, chemnet_activations, frechet_distance
from modalities.molecule.evaluation.files import MoleculeRecord
from modalities.molecule.evaluation.inchi import inchi_match
from modalities.molecule.evaluation.rdkit_messages import add_counts, call_counting_messages, counting
from modalities.molecule.evaluation.reconstruction_metrics import atom_type_accuracy, reconstruction_match
from modalities.molecule.evaluation.stability import StabilityResult, check_stability


@dataclass(frozen=True)
class MoleculeAssessment:
    """Everything the harness computes for one molecule: EDM stability and one result per bond route."""

    stability: StabilityResult
    chemistry: tuple[ChemistryResult, ...]


def assess_molecule(atomic_numbers: np.ndarray, positions: np.ndarray, routes: Sequence[str] = ROUTES,
                    charge: int = 0, problem: str | None = None, isomeric: bool = False) -> MoleculeAssessment:
    """Stability and per-route chemistry of one molecule ([N] atomic numbers, [N, 3] Å). Never raises.

    A molecule with a `problem` (from the file reader) or one `input_problem` rejects (no atoms, unknown
    element, NaN, overlap) is unstable, with all its atoms unstable, and invalid under every route.
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    x = np.asarray(positions, dtype=np.float64)
    problem = problem or input_problem(z, x)
    if problem:
        n = int(z.shape[0]) if z.ndim == 1 else 0
        stability = StabilityResult(False, 0, n, tuple(range(n)))
        return MoleculeAssessment(stability, tuple(ChemistryResult(r, False, problem, None, False, 0) for r in routes))
    chemistry = tuple(assess_chemistry(perceive(route, z, x, charge), isomeric) for route in routes)
    return MoleculeAssessment(check_stability(z, x), chemistry)


def molecule_arrays(molecule) -> tuple[np.ndarray, np.ndarray, int, str | None]:
    """(atomic numbers, positions, charge, problem) of a MoleculeRecord or an (atomic_numbers, positions) pair."""
    if isinstance(molecule, MoleculeRecord):
        return molecule.atomic_numbers.numpy(), molecule.positions.numpy(), molecule.charge, molecule.problem
    z, x = molecule[0], molecule[1]
    z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    x = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return z, x, 0, None


def _assess_item(item) -> MoleculeAssessment:
    z, x, charge, problem, routes, isomeric = item
    return assess_molecule(z, x, routes, charge, problem, isomeric)


def _pool(workers: int):
    # spawn, not fork: a fork taken after torch/OpenMP (or another thread) holds a lock can leave a
    # worker hung forever, and Pool.map then never returns (seen in the full test suite). Spawned workers
    # re-import this module (a few seconds) but cannot inherit a held lock.
    return multiprocessing.get_context("spawn").Pool(workers)


def parallel_map(function, items: list, workers: int, chunksize: int = 64, progress: str | None = None) -> list:
    """`[function(i) for i in items]`, spread over `workers` processes when workers > 1 (order kept).

    progress: a tqdm bar with this description (in pools too: results arrive chunk by chunk). When RDKit
    messages are being counted here (`rdkit_messages.counting_rdkit_messages`), workers count theirs and
    send them back, so a pool silences and counts the same messages a serial run does."""
    bar = dict(total=len(items), desc=progress, unit="molecule", dynamic_ncols=True, disable=progress is None)
    if workers <= 1 or len(items) < 2 * chunksize:
        return [function(item) for item in tqdm(items, **bar)]
    counted = counting()
    task = partial(call_counting_messages, function) if counted else function
    with _pool(min(workers, max(1, len(items) // chunksize))) as pool:
        results = list(tqdm(pool.imap(task, items, chunksize=chunksize), **bar))
    if not counted:
        return results
    for _, counts in results:
        add_counts(counts)
    return [result for result, _ in results]


def assess_molecules(molecules: Sequence, routes: Sequence[str] = ROUTES, workers: int = 0,
                     isomeric: bool = False, progress: str | None = None) -> list[MoleculeAssessment]:
    """`assess_molecule` for each molecule (MoleculeRecord or (atomic_numbers, positions) pair), in order;
    `progress`: description of a progress bar (None: no bar)."""
    items = [(*molecule_arrays(m), tuple(routes), isomeric) for m in molecules]
    return parallel_map(_assess_item, items, workers, progress=progress)


def molecules_from_padded(atomic_numbers: torch.Tensor, positions: torch.Tensor,
                          mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Padded batch -> list of (atomic numbers [n], positions [n, 3]). Inputs [B, N], [B, N, 3], [B, N] bool."""
    return [(atomic_numbers[i][m].cpu(), positions[i][m].float().cpu()) for i, m in enumerate(mask.bool())]


def smiles_hash(smiles: str) -> int:
    """Deterministic signed 64-bit hash (Python's own hash() differs between processes)."""
    return int.from_bytes(hashlib.blake2b(smiles.encode(), digest_size=8).digest(), "little", signed=True)


class MoleculeMetrics(Metric):
    """EDM stability plus validity/connectivity/uniqueness/novelty under each bond route.

    update(molecules): a list of (atomic_numbers [n], positions [n, 3] Å) pairs or MoleculeRecords.
    compute() -> flat dict of floats: "atom_stability", "molecule_stability", ... and "<route>/validity",
    "<route>/connected", "<route>/uniqueness", "<route>/valid_and_unique", "<route>/novelty" (novelty only
    with `reference_smiles`: the training split's canonical SMILES, one set for all routes or a dict with
    one set per route, made with the same `isomeric` setting).
    """

    full_state_update = False

    def __init__(self, routes: Sequence[str] = ROUTES, reference_smiles: set[str] | dict[str, set[str]] | None = None,
                 workers: int = 0, isomeric: bool = False, **kwargs):
        super().__init__(**kwargs)
        unknown = [r for r in routes if r not in ROUTES]
        if unknown:
            raise ValueError(f"unknown bond routes {unknown}: choose from {ROUTES}")
        self.routes, self.workers, self.isomeric = tuple(routes), workers, isomeric
        if isinstance(reference_smiles, dict):  # one reference set per route
            missing = [r for r in self.routes if r not in reference_smiles]
            if missing:
                raise ValueError(f"reference_smiles has no set for routes {missing}")
            self.reference_hashes = {r: {smiles_hash(s) for s in reference_smiles[r]} for r in self.routes}
        elif reference_smiles is not None:
            shared = {smiles_hash(s) for s in reference_smiles}
            self.reference_hashes = {r: shared for r in self.routes}
        else:
            self.reference_hashes = None
        for name in ("molecules", "stable_molecules", "atoms", "stable_atoms", "atom_fraction_sum"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("valid", "connected", "valid_connected"):
            self.add_state(name, default=torch.zeros(len(self.routes), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("hashes", default=[], dist_reduce_fx="cat")  # [k, 2] int64 rows (route index, hash)
        self._clear_local()

    def _clear_local(self) -> None:
        self.smiles = {route: [] for route in self.routes}
        self.reasons = {route: Counter() for route in self.routes}

    def reset(self) -> None:
        super().reset()
        self._clear_local()

    def update(self, molecules: Sequence = (), assessments: Sequence[MoleculeAssessment] | None = None) -> None:
        """Assess and accumulate `molecules`, or accumulate `assessments` already computed with the same
        routes (lets a caller reuse one pool pass, e.g. to also export per-molecule results)."""
        if assessments is None:
            assessments = assess_molecules(molecules, self.routes, self.workers, self.isomeric)
        rows, r = [], len(self.routes)
        stable_molecules = atoms = stable_atoms = fraction_sum = 0.0
        valid, connected, valid_connected = np.zeros(r), np.zeros(r), np.zeros(r)
        for a in assessments:  # python sums first: one tensor op per state per batch, not per molecule
            s = a.stability
            stable_molecules += s.molecule_stable
            atoms += s.num_atoms
            stable_atoms += s.num_stable_atoms
            fraction_sum += s.num_stable_atoms / s.num_atoms if s.num_atoms else 0.0
            for k, c in enumerate(a.chemistry):
                valid[k] += c.valid
                connected[k] += c.connected
                valid_connected[k] += c.valid and c.connected
                if c.valid:
                    self.smiles[c.route].append(c.smiles)
                    rows.append((k, smiles_hash(c.smiles)))
                else:
                    self.reasons[c.route][reason_category(c.reason)] += 1
        self.molecules += len(assessments)
        self.stable_molecules += stable_molecules
        self.atoms += atoms
        self.stable_atoms += stable_atoms
        self.atom_fraction_sum += fraction_sum
        self.valid += torch.from_numpy(valid).to(self.valid)
        self.connected += torch.from_numpy(connected).to(self.connected)
        self.valid_connected += torch.from_numpy(valid_connected).to(self.valid_connected)
        if rows:
            self.hashes.append(torch.tensor(rows, dtype=torch.int64, device=self.valid.device))

    def compute(self) -> dict[str, float]:
        n = float(self.molecules)
        out = {
            "num_molecules": n,
            "atom_stability": float(self.stable_atoms / self.atoms) if self.atoms > 0 else 0.0,
            "per_molecule_atom_stability": float(self.atom_fraction_sum / n) if n else 0.0,
            "molecule_stability": float(self.stable_molecules / n) if n else 0.0,
        }
        hashes = self.hashes
        if isinstance(hashes, list):
            hashes = torch.cat(hashes) if hashes else torch.zeros((0, 2), dtype=torch.int64)
        for k, route in enumerate(self.routes):
            valid = hashes[hashes[:, 0] == k, 1].tolist()
            unique = set(valid)
            out[f"{route}/validity"] = float(self.valid[k] / n) if n else 0.0
            out[f"{route}/connected"] = float(self.connected[k] / n) if n else 0.0
            out[f"{route}/valid_and_connected"] = float(self.valid_connected[k] / n) if n else 0.0
            out[f"{route}/uniqueness"] = len(unique) / len(valid) if valid else 0.0
            out[f"{route}/valid_and_unique"] = len(unique) / n if n else 0.0
            if self.reference_hashes is not None:
                novel = len(unique - self.reference_hashes[route])
                out[f"{route}/novelty"] = novel / len(unique) if unique else 0.0
                out[f"{route}/novelty_over_valid"] = novel / len(valid) if valid else 0.0
        return out


class MoleculeStability(MoleculeMetrics):
    """EDM atom and molecule stability only (cheap: no RDKit)."""

    def __init__(self, **kwargs):
        super().__init__(routes=(), **kwargs)


class MoleculeValidity(MoleculeMetrics):
    """Stability plus validity, connectivity, uniqueness and novelty under one bond route."""

    def __init__(self, route: str = "edm", reference_smiles: set[str] | None = None, workers: int = 0, **kwargs):
        super().__init__(routes=(route,), reference_smiles=reference_smiles, workers=workers, **kwargs)


class FrechetChemNetDistance(Metric):
    """FCD of accumulated SMILES against fixed reference statistics (see `fcd.cached_reference_statistics`).

    update(smiles): valid SMILES strings. States are sums of ChemNet activations and of their outer
    products, so the Gaussian of the whole set is exact after a cross-process sum.
    """

    full_state_update = False

    def __init__(self, reference: FCDStatistics, chemnet_device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.reference, self.chemnet_device = reference, chemnet_device
        self.add_state("total", default=torch.zeros(CHEMNET_DIM, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("outer", default=torch.zeros(CHEMNET_DIM, CHEMNET_DIM, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, smiles: Sequence[str]) -> None:
        a = torch.from_numpy(chemnet_activations(list(smiles), self.chemnet_device)).to(torch.float64)
        a = a.to(self.total.device)
        self.total += a.sum(0)
        self.outer += a.T @ a
        self.count += a.shape[0]

    def compute(self) -> torch.Tensor:
        if self.count < 2:
            return torch.tensor(float("nan"), dtype=torch.float64)
        stats = FCDStatistics.from_sums(self.total.cpu().numpy(), self.outer.cpu().numpy(), int(self.count))
        return torch.tensor(frechet_distance(stats, self.reference), dtype=torch.float64)


def _match_item(item) -> tuple[bool | None, bool | None]:
    pz, px, tz, tx, route, isomeric = item
    return inchi_match(pz, px, tz, tx), reconstruction_match(pz, px, tz, tx, route, isomeric)


class ReconstructionMetrics(Metric):
    """Atom-type accuracy, aligned coordinate RMSD (Å) and match rates of decoded vs input molecules.

    update(pred_numbers [B, N], pred_positions [B, N, 3], target_numbers [B, N], target_positions [B, N, 3],
    mask [B, N] bool). Atom i of the prediction is compared with atom i of the target for accuracy and RMSD.
    Two match rates, each over the molecules whose target has an identity under it (`match_comparable_*`):
    "match_rate_inchi_openbabel" (same InChI after OpenBabel perception, ADiT's protocol) and
    "match_rate_<route>_smiles" (same canonical SMILES under `match_route`, with stereo when `isomeric`).
    `match_route=None` skips both (no RDKit/OpenBabel work, for use inside training steps).
    """

    full_state_update = False

    def __init__(self, match_route: str | None = "edm", isomeric: bool = True, workers: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.match_route, self.isomeric, self.workers = match_route, isomeric, workers
        self.protocols = ("inchi_openbabel", f"{match_route}_smiles")
        for name in ("correct_atoms", "atoms", "all_types_correct", "rmsd_sum", "molecules"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("matched", "comparable"):  # one entry per protocol
            self.add_state(name, default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred_numbers: torch.Tensor, pred_positions: torch.Tensor, target_numbers: torch.Tensor,
               target_positions: torch.Tensor, mask: torch.Tensor) -> None:
        mask = mask.bool()
        correct, atoms = atom_type_accuracy(pred_numbers, target_numbers, mask)
        self.correct_atoms += correct
        self.atoms += atoms
        per_molecule = ((pred_numbers == target_numbers) | ~mask).all(dim=1)
        self.all_types_correct += float(per_molecule.sum())
        with torch.no_grad():
            self.rmsd_sum += float(kabsch_rmsd(pred_positions.detach().float(), target_positions.float(), mask).sum())
        self.molecules += mask.shape[0]
        if self.match_route is not None:
            pred = molecules_from_padded(pred_numbers, pred_positions.detach(), mask)
            target = molecules_from_padded(target_numbers, target_positions, mask)
            items = [(p[0].numpy(), p[1].numpy(), t[0].numpy(), t[1].numpy(), self.match_route, self.isomeric)
                     for p, t in zip(pred, target)]
            verdicts = np.array([[np.nan if v is None else float(v) for v in pair]
                                 for pair in parallel_map(_match_item, items, self.workers)]).reshape(-1, 2)
            defined = ~np.isnan(verdicts)
            self.matched += torch.from_numpy(np.where(defined, verdicts, 0.0).sum(0)).to(self.matched)
            self.comparable += torch.from_numpy(defined.sum(0).astype(np.float64)).to(self.comparable)

    def compute(self) -> dict[str, float]:
        n = float(self.molecules)
        out = {
            "atom_type_accuracy": float(self.correct_atoms / self.atoms) if self.atoms > 0 else 0.0,
            "molecule_type_accuracy": float(self.all_types_correct / n) if n else 0.0,
            "coordinate_rmsd": float(self.rmsd_sum / n) if n else 0.0,
            "num_molecules": n,
        }
        if self.match_route is not None:
            for k, protocol in enumerate(self.protocols):
                comparable = float(self.comparable[k])
                out[f"match_rate_{protocol}"] = float(self.matched[k]) / comparable if comparable else 0.0
                out[f"match_comparable_{protocol}"] = comparable
        return out
