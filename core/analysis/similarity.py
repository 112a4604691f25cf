"""How alike two representations of the same n items are: linear CKA (Kornblith et al. 2019), CKNNA
(Huh et al. 2024, "The Platonic Representation Hypothesis": CKA restricted to mutual k-nearest neighbours)
and the paired cosine similarity; `per_layer_alignment` applies all three to a network's layers.

Every function takes X [n, p] and Y [n, q], row i of both describing item i, and computes in float64.
"""
from __future__ import annotations

import torch


def _pair(x: torch.Tensor, y: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: need X [n, p] and Y [n, q] with the same n, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    return x.double(), y.double()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), Xc, Yc column-centred (the biased HSIC
    estimator, Kornblith et al. 2019 eq. 5). In [0, 1]; invariant to orthogonal transforms and isotropic
    scaling of either side; 0 when a side is constant. Independent isotropic X [n, p], Y [n, q] give about
    sqrt(p q) / n, not 0: the floor a finite sample sets."""
    x, y = _pair(x, y, "linear_cka")
    x, y = x - x.mean(0), y - y.mean(0)
    cross = (y.T @ x).pow(2).sum()
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norms) if norms > 0 else 0.0


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator of two n x n kernel matrices (Song et al. 2012, eq. 5), n >= 4; diagonals
    ignored:  [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~ L~ 1] / (n (n-3)),  K~ = K with a zero
    diagonal. O(n^2): 1'K~ L~ 1 = (1'K~) . (L~ 1), no n x n product."""
    n = k.shape[0]
    if k.shape != (n, n) or l.shape != (n, n):
        raise ValueError(f"hsic_unbiased: need two n x n kernels, got {tuple(k.shape)} and {tuple(l.shape)}")
    if n < 4:
        raise ValueError(f"hsic_unbiased needs n >= 4 items, got {n}")
    dk, dl = k.diagonal(), l.diagonal()  # K~ = K - diag(K): the sums below take the diagonal out, no copies
    trace = torch.einsum("ij,ji->", k, l) - (dk * dl).sum()
    totals = (k.sum() - dk.sum()) * (l.sum() - dl.sum())
    chain = (k.sum(0) - dk) @ (l.sum(1) - dl)
    value = trace + totals / ((n - 1) * (n - 2)) - 2 * chain / (n - 2)
    return value / (n * (n - 3))


def nearest_neighbour_mask(kernel: torch.Tensor, topk: int) -> torch.Tensor:
    """[n, n] 0/1: j != i is among the `topk` largest values of row i of `kernel`."""
    n = kernel.shape[0]
    neighbours = kernel.clone().fill_diagonal_(float("-inf")).topk(topk, dim=1).indices
    return torch.zeros(n, n, dtype=kernel.dtype).scatter_(1, neighbours, 1.0)


def mutual_neighbours(k: torch.Tensor, l: torch.Tensor, topk: int) -> torch.Tensor:
    """[n, n] 0/1 mask alpha(i, j): j != i is among the `topk` largest kernel values of row i in K and in L."""
    return nearest_neighbour_mask(k, topk) * nearest_neighbour_mask(l, topk)


def cknna(x: torch.Tensor, y: torch.Tensor, topk: int = 10) -> float:
    """CKNNA (Huh et al. 2024, as their reference code minyoungg/platonic-rep computes it): rows
    L2-normalised, linear kernels K = X X^T and L = Y Y^T, each multiplied by the mutual-neighbour mask
    alpha(i, j) (j among i's `topk` nearest in both), then
        CKNNA = HSIC_u(aK, aL) / sqrt(HSIC_u(a'K, a'K) HSIC_u(a''L, a''L)),
    a' and a'' the masks of K with itself and L with itself. 1 for identical representations (or one an
    orthogonal transform of the other); with topk = n - 1 (every pair) it is the unbiased CKA of the
    normalised rows. Can be slightly negative. (The paper writes the restricted sum with the centring taken
    before the mask; the published numbers come from this code.)"""
    x, y = _pair(x, y, "cknna")
    n = x.shape[0]
    if not 1 <= topk < n:
        raise ValueError(f"cknna: topk={topk} must lie in [1, n - 1] for n={n} items")
    x = torch.nn.functional.normalize(x, dim=1)
    y = torch.nn.functional.normalize(y, dim=1)
    k, l = x @ x.T, y @ y.T
    near_k, near_l = nearest_neighbour_mask(k, topk), nearest_neighbour_mask(l, topk)
    mutual = near_k * near_l  # a mask of K with itself is near_k, of L with itself near_l
    cross = hsic_unbiased(mutual * k, mutual * l)
    scale = torch.sqrt(hsic_unbiased(near_k * k, near_k * k) * hsic_unbiased(near_l * l, near_l * l))
    return float(cross / scale) if scale > 0 else 0.0


def mean_cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over items of cos(x_i, y_i); X and Y must have the same width (the same space)."""
    x, y = _pair(x, y, "mean_cosine_similarity")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"mean_cosine_similarity: paired rows need one width, got {x.shape[1]} and {y.shape[1]}")
    return float(torch.nn.functional.cosine_similarity(x, y, dim=1).mean())


def per_layer_alignment(first: list[torch.Tensor], second: list[torch.Tensor], topk: int) -> list[dict]:
    """Layer l of `first` against layer l of `second` (each [n, D], the same n items in the same order):
    one row per layer with linear CKA, CKNNA (`topk`) and the mean cosine similarity."""
    if len(first) != len(second):
        raise ValueError(f"per_layer_alignment: {len(first)} layers against {len(second)}; both passes must "
                         "record the same blocks")
    return [{"layer": index, "cka": linear_cka(a, b), "cknna": cknna(a, b, topk),
             "cosine": mean_cosine_similarity(a, b)} for index, (a, b) in enumerate(zip(first, second))]
