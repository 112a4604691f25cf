"""The molecule modality: QM9 or GEOM-Drugs atoms -> equivariant tokens -> latents -> atom types and coordinates."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn
from torch_geometric.data import Batch

from core.modality import LatentLayout
from modalities.molecule.data.dataset import QM9Dataset, element_vocabulary
from modalities.molecule.data.geom_dataset import GeomDrugsDataset, atom_type_table
from modalities.molecule.evaluation.alignment import kabsch_rmsd
from modalities.molecule.model.decoder import MoleculeDecoder, MoleculePrediction
from modalities.molecule.model.corruption import AtomCorruption
from modalities.molecule.model.losses import ReconstructionLoss
from torch_geometric.utils import to_dense_batch


def _strict(kind: str, cls, options: dict, **extra):
    """Build cls(**options, **extra), naming the config group of an unknown or missing key."""
    try:
        return cls(**dict(options), **extra)
    except TypeError as error:
        raise TypeError(f"modality.{kind}: {error}") from None


class MoleculeModality:
    name = "molecule"
    rope_axes = 0  # atoms are a set: no positions in the transformer

    def __init__(self, name: str, dataset: str, split_scheme: str, train_subset: int | None,
                 eval_subset: int | None, elements: list[str], max_atoms: int, cache_dir: str | None,
                 random_rotation: bool, input_corruption: dict, embedder: dict, decoder: dict, loss: dict,
                 evaluation: dict, geom_drugs: dict | None):
        if name != "molecule":
            raise ValueError(f"modality.name must be 'molecule' for MoleculeModality, got {name!r}")
        if dataset not in ("qm9", "geom_drugs"):
            raise ValueError(f"modality.dataset={dataset!r}: choose 'qm9' or 'geom_drugs'")
        if (dataset == "geom_drugs") != (geom_drugs is not None):
            raise ValueError(f"modality.dataset={dataset!r} with modality.geom_drugs={geom_drugs}: GEOM-Drugs needs "
                             f"its options, vocabulary and sizes, QM9 none of them: use modality=molecule_geom_drugs")
        self.dataset_name = dataset
        self.geom_drugs = None if geom_drugs is None else dict(geom_drugs)
        self.num_classes = 0
        self.split_scheme = split_scheme
        self.train_subset, self.eval_subset = train_subset, eval_subset
        self.elements = list(elements)
        if dataset == "geom_drugs":  # atom types with formal charges ("N+", "O-") are classes of their own
            self.atomic_numbers, self.formal_charges = atom_type_table(self.elements)
        else:
            self.atomic_numbers = element_vocabulary(self.elements)
            self.formal_charges = torch.zeros_like(self.atomic_numbers)
        self.max_atoms = max_atoms
        self.cache_dir = cache_dir
        self.random_rotation = random_rotation
        self.corruption = _strict("input_corruption", AtomCorruption, input_corruption)
        self.embedder_options, self.decoder_options = dict(embedder), dict(decoder)
        self.loss = _strict("loss", ReconstructionLoss, loss)
        self.evaluation = dict(evaluation)
        unknown = set(self.evaluation) - {"reference", "fcd", "workers"}
        if unknown or len(self.evaluation) != 3:
            raise KeyError(f"modality.evaluation needs exactly reference, fcd, workers; got {sorted(self.evaluation)}")
        if dataset == "geom_drugs" and self.evaluation["reference"] is not None:
            raise ValueError("modality.evaluation.reference: only QM9 has a reference set yet; GEOM-Drugs needs null")
        self._datasets: dict[str, QM9Dataset | GeomDrugsDataset] = {}

    # ------------------------------------------------------------------ data
    def dataset(self, split: str) -> QM9Dataset | GeomDrugsDataset:
        if split not in self._datasets:
            subset = self.train_subset if split == "train" else self.eval_subset
            rotate = self.random_rotation and split == "train"
            if self.dataset_name == "geom_drugs":
                ds = _strict("geom_drugs", GeomDrugsDataset, self.geom_drugs, split=split, atom_types=self.elements,
                             subset=subset, cache_dir=self.cache_dir, random_rotation=rotate)
            else:
                data = next(iter(self._datasets.values())).data if self._datasets else None
                ds = QM9Dataset(split, self.split_scheme, self.elements, subset, self.cache_dir, data,
                                random_rotation=rotate)
            largest = int(ds.atom_counts().max())
            if largest > self.max_atoms:
                raise ValueError(f"the {split} split has a molecule of {largest} atoms but modality.max_atoms="
                                 f"{self.max_atoms}; raise modality.max_atoms")
            self._datasets[split] = ds
        return self._datasets[split]

    def collate(self, items: list) -> Batch:
        return Batch.from_data_list(items)

    def batch_to(self, batch: Batch, device: torch.device) -> Batch:
        return batch.to(device, non_blocking=True)

    def batch_labels(self, batch: Batch) -> torch.Tensor | None:
        return None

    def batch_size(self, batch: Batch) -> int:
        return batch.num_graphs

    # ------------------------------------------------------------------ networks
    def atom_count_histogram(self) -> torch.Tensor:
        counts = self.dataset("train").atom_counts()
        return torch.bincount(counts, minlength=self.max_atoms + 1)[: self.max_atoms + 1]

    def build_embedder(self, width: int) -> nn.Module:
        """The class named by modality.embedder._target_ (equivariant or coordinate tokens)."""
        options = dict(self.embedder_options)
        cls = get_class(options.pop("_target_"))
        return _strict("embedder", cls, options, width=width, num_elements=len(self.elements),
                       atom_count_histogram=self.atom_count_histogram(), corruption=self.corruption)

    def build_decoder(self, latent_channels: int) -> MoleculeDecoder:
        return _strict("decoder", MoleculeDecoder, self.decoder_options, latent_channels=latent_channels,
                       num_elements=len(self.elements))

    # ------------------------------------------------------------------ losses and metrics
    def dense_targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        elements, mask = to_dense_batch(batch.element, batch.batch)
        positions, _ = to_dense_batch(batch.pos, batch.batch)
        return elements, positions, mask

    def reconstruction_loss(self, prediction: MoleculePrediction, batch: Batch):
        elements, positions, mask = self.dense_targets(batch)
        return self.loss(prediction.element_logits, prediction.positions, elements, positions, mask)

    def reconstruction_metrics(self, prediction: MoleculePrediction, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-molecule values [B]: element accuracy, aligned coordinate RMSD (Å), all elements right, and
        the two match verdicts of `reconstruction_match_rates` (match_rate_inchi_openbabel: ADiT's protocol;
        match_rate_edm_smiles: strict), NaN (left out, counted) where the input molecule has no identity."""
        # imported here: the match verdicts need RDKit, training and sampling do not (GPU machines without it)
        from modalities.molecule.evaluation.reconstruction_metrics import reconstruction_match_rates
        elements, positions, mask = self.dense_targets(batch)
        correct = (prediction.elements == elements) & mask
        target_numbers = self.atomic_numbers.to(elements.device)[elements]
        targets = [(target_numbers[i][m].cpu(), positions[i][m].double().cpu()) for i, m in enumerate(mask)]
        return {
            "element_accuracy": correct.sum(1) / mask.sum(1),
            "coordinate_rmsd": kabsch_rmsd(prediction.positions.float(), positions, mask),
            "all_elements_correct": (correct.sum(1) == mask.sum(1)).float(),
            **reconstruction_match_rates(self.to_molecules(prediction), targets),
        }

    # ------------------------------------------------------------------ samples
    def to_molecules(self, prediction: MoleculePrediction) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per molecule: (atomic numbers [n], positions [n, 3] Å), padding dropped."""
        atomic_numbers = self.atomic_numbers.to(prediction.element_logits.device)[prediction.elements]
        return [(atomic_numbers[i][m].cpu(), prediction.positions[i][m].float().cpu())
                for i, m in enumerate(prediction.mask)]

    def reconstruction_split_metrics(self) -> dict[str, float]:
        return {}  # every molecule figure is per molecule

    def write_samples(self, predictions: list[MoleculePrediction], layouts: list[LatentLayout], labels: list,
                      out_dir: Path) -> dict[str, Any]:
        from modalities.molecule.evaluation.sample_writer import write_molecule_samples
        molecules = [m for prediction in predictions for m in self.to_molecules(prediction)]
        return write_molecule_samples(molecules, Path(out_dir), self.split_scheme, **self.evaluation)
