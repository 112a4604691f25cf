"""E(3)-equivariant atom encoder (e3nn on PyG batches) -> observation tokens for the Generative Encoder.

Atoms start as element embeddings (scalars 0e). Each interaction layer sends messages along edges with a
depthwise ('uvu') tensor product of neighbour features and the edge's spherical harmonics, weighted by an
MLP of the interatomic distance, then mixes channels and applies a gated nonlinearity (NequIP-style).
Parity-odd pseudoscalars (0o) flip sign under reflection, so a chiral molecule and its mirror image get
different tokens.

What the token of atom i is read from (`tokens`):
- "frame" (default): the atom's coordinate token (element embedding + MLP of its centred position, as the
  coordinate embedder) plus a map of every feature of the last layer -- scalars, and the vector (1o, 1e)
  and higher components written out in the input frame. That map starts at zero, so training starts from
  the coordinate token and adds the environment as it helps. Tokens rotate with the molecule (equivariant,
  not invariant) and the decoder returns coordinates in the input frame; training rotates input and target
  alike (data augmentation), as ADiT does. Symmetry-equivalent atoms (methane's H) get different tokens
  because their positions differ.
- "invariant": the scalars (0e, 0o) only. Rotations and translations leave every token unchanged, but
  the decoder must solve distance geometry from environment summaries and symmetry-equivalent atoms get
  identical tokens (measured: RMSD 0.7-1.1 A); kept for the ablation, with a permutation-aware loss.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import FullyConnectedNet, Gate
from torch_geometric.utils import scatter, to_dense_batch

from core.modality import LatentLayout, Observation
from core.precision import float32_region, widened
from modalities.molecule.model.atom_counts import AtomCountPrior
from modalities.molecule.model.atom_slots import AtomIndexSlots
from modalities.molecule.model.coordinate_embedder import CoordinateTokens
from modalities.molecule.model.corruption import AtomCorruption
from modalities.molecule.model.graph import molecule_edges

TOKEN_KINDS = ("frame", "invariant")


def _interaction_irreps(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
    """Output irreps and 'uvu' instructions: every (input, harmonic) path that lands in the target."""
    wanted = {ir for _, ir in irreps_target}
    mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_edge) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_edge:
                if ir_out in wanted:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    mid = o3.Irreps(mid)
    mid_sorted, permutation, _ = mid.sort()
    instructions = [(i, j, permutation[k], mode, train) for i, j, k, mode, train in instructions]
    return mid_sorted, instructions


class InteractionLayer(nn.Module):
    """One equivariant message-passing layer with a residual self-connection."""

    def __init__(self, irreps_in: o3.Irreps, irreps_hidden: o3.Irreps, irreps_sh: o3.Irreps,
                 num_radial: int, radial_hidden: int, average_neighbours: float):
        super().__init__()
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(scalars, [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
                         gates, [torch.sigmoid] * len(gates), gated)
        mid, instructions = _interaction_irreps(irreps_in, irreps_sh, self.gate.irreps_in)
        self.pre_linear = o3.Linear(irreps_in, irreps_in)
        self.tensor_product = o3.TensorProduct(irreps_in, irreps_sh, mid, instructions,
                                               shared_weights=False, internal_weights=False)
        # e3nn's FullyConnectedNet keeps unit variance, so the tensor-product weights start ~N(0, 1) as
        # e3nn's normalisation assumes; otherwise each layer shrinks the equivariant features and the
        # parity-odd scalars (three products deep) start near zero.
        self.radial = FullyConnectedNet([num_radial, radial_hidden, self.tensor_product.weight_numel],
                                        torch.nn.functional.silu)
        self.post_linear = o3.Linear(mid.simplify(), self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps_in, self.gate.irreps_out)
        self.average_neighbours = average_neighbours
        self.irreps_out = self.gate.irreps_out

    def forward(self, h, edge_index, edge_sh, edge_radial):
        source, target = edge_index
        messages = self.tensor_product(self.pre_linear(h)[source], edge_sh, self.radial(edge_radial))
        aggregated = scatter(messages, target, dim=0, dim_size=h.shape[0], reduce="sum")
        aggregated = aggregated / self.average_neighbours ** 0.5
        return self.self_connection(h) + self.gate(self.post_linear(aggregated))


class EquivariantAtomEmbedder(nn.Module):
    """PyG batch (fields `element` [A], `pos` [A, 3] Å centred, `batch`) -> Observation of one token per atom.

    The latent layout has one slot per atom; latent slot i receives a projection of atom i's token as its
    pass-1 hint; with index_slots=sinusoidal slot i also carries atom i's index in both passes
    (modalities/molecule/model/atom_slots.py), so generation learns the file's atom order. In training the
    input is corrupted by `corruption` (the target is not); element class `num_elements` is the mask class.
    """

    def __init__(self, width: int, num_elements: int, tokens: str, hidden_irreps: str, num_layers: int,
                 sh_lmax: int, num_radial: int, radial_cutoff: float, graph_cutoff: float | None,
                 average_neighbours: float, coordinate_hidden: int, index_slots: str, atom_count_histogram: torch.Tensor,
                 corruption: AtomCorruption):
        super().__init__()
        if tokens not in TOKEN_KINDS:
            raise ValueError(f"modality.embedder.tokens={tokens!r}: choose one of {TOKEN_KINDS}")
        self.token_kind = tokens
        self.corruption = corruption
        self.mask_class = num_elements
        irreps_hidden = o3.Irreps(hidden_irreps)
        if not any(ir.l == 0 and ir.p == -1 for _, ir in irreps_hidden):
            raise ValueError(f"hidden_irreps {hidden_irreps!r} has no parity-odd scalars (0o): mirror images "
                             "would be indistinguishable; add e.g. '8x0o'")
        self.irreps_sh = o3.Irreps.spherical_harmonics(sh_lmax)
        self.num_radial = num_radial
        self.radial_cutoff = radial_cutoff
        self.graph_cutoff = graph_cutoff
        n_input_scalars = irreps_hidden.count(o3.Irrep("0e"))
        self.element_embedding = nn.Embedding(num_elements + 1, n_input_scalars)  # + the mask class
        irreps = o3.Irreps(f"{n_input_scalars}x0e")
        layers = []
        for _ in range(num_layers):
            layer = InteractionLayer(irreps, irreps_hidden, self.irreps_sh, num_radial, 64, average_neighbours)
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.token_slices = [irreps.slices()[i] for i, (_, ir) in enumerate(irreps)
                             if tokens == "frame" or ir.l == 0]
        n_features = sum(s.stop - s.start for s in self.token_slices) + n_input_scalars
        self.to_tokens = nn.Sequential(nn.Linear(n_features, width), nn.SiLU(), nn.Linear(width, width))
        self.coordinate_tokens = None
        if tokens == "frame":
            self.coordinate_tokens = CoordinateTokens(num_elements + 1, width, coordinate_hidden)
            nn.init.zeros_(self.to_tokens[-1].weight)
            nn.init.zeros_(self.to_tokens[-1].bias)
        self.to_latent_hints = nn.Linear(width, width)
        self.atom_counts = AtomCountPrior(atom_count_histogram)
        self.slots = AtomIndexSlots(index_slots, width)

    def atom_features(self, element: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Per-atom features [A, F] of the e3nn network: the last layer's channels chosen by `tokens`
        (each irrep written out in the input frame), then the element embedding."""
        with float32_region(pos.device):  # e3nn's tensor products are not autocast-aware (core/precision.py)
            return self._atom_features(element, widened(pos), batch)

    def _atom_features(self, element: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        edge_index = molecule_edges(pos, batch, self.graph_cutoff)
        vectors = pos[edge_index[1]] - pos[edge_index[0]]  # [E, 3]
        edge_sh = o3.spherical_harmonics(self.irreps_sh, vectors, normalize=True, normalization="component")
        edge_radial = soft_one_hot_linspace(vectors.norm(dim=-1), 0.0, self.radial_cutoff, self.num_radial,
                                            basis="smooth_finite", cutoff=True) * self.num_radial ** 0.5
        element_scalars = self.element_embedding(element)
        h = element_scalars
        for layer in self.layers:
            h = layer(h, edge_index, edge_sh, edge_radial)
        return torch.cat([h[:, s] for s in self.token_slices] + [element_scalars], dim=-1)

    def forward(self, batch) -> Observation:
        element, pos = batch.element, batch.pos
        if self.training:
            element, pos = self.corruption(element, pos, self.mask_class)
        tokens = self.to_tokens(self.atom_features(element, pos, batch.batch))
        if self.coordinate_tokens is not None:
            tokens = tokens + self.coordinate_tokens(element, pos, batch.batch)
        tokens, mask = to_dense_batch(tokens, batch.batch)  # [B, N, D], [B, N]
        return Observation(tokens=tokens, mask=mask, positions=None,
                           latent_hints=self.to_latent_hints(tokens), layout=self.slots.layout(mask))

    def generation_layout(self, num_samples: int, device, generator=None) -> LatentLayout:
        return self.slots.layout(self.atom_counts.generation_mask(num_samples, device, generator))
