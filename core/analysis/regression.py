"""A ridge-regression probe: how much of a continuous target (a molecule's HOMO-LUMO gap, its dipole moment)
a linear map of the features explains on held-out items. Closed form, float64."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LinearMap:
    """y = x @ weight + bias, in the units of the features and targets it was fitted on."""

    weight: torch.Tensor  # [F, T]
    bias: torch.Tensor  # [T]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.double() @ self.weight + self.bias


def _matrix(y: torch.Tensor) -> torch.Tensor:
    return y[:, None] if y.dim() == 1 else y


def fit_ridge(x: torch.Tensor, y: torch.Tensor, l2: float) -> LinearMap:
    """Ridge regression of targets y [n, T] (or [n]) on features x [n, F]: features standardised by their
    mean and std, targets centred, then W_s = (X_s' X_s + l2 n I)^-1 X_s' (y - mean), brought back to the
    original units (`l2` is the penalty per item; 0 = least squares, needs n > F). Constant features get
    weight 0."""
    y = _matrix(y)
    if x.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"fit_ridge: features {tuple(x.shape)} and targets {tuple(y.shape)} need [n, F] and "
                         "[n, T] with the same item count n")
    if l2 < 0:
        raise ValueError(f"fit_ridge: l2={l2} must be >= 0")
    x, y = x.double(), y.double()
    mean, std = x.mean(0), x.std(0)
    constant = std < 1e-12
    std = torch.where(constant, torch.ones_like(std), std)
    xs = (x - mean) / std
    xs[:, constant] = 0.0
    y_mean = y.mean(0)
    gram = xs.T @ xs + l2 * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype)
    gram[constant, constant] = 1.0  # a zero row/column otherwise: singular, and the weight is 0 anyway
    scaled = torch.linalg.solve(gram, xs.T @ (y - y_mean))  # [F, T]
    weight = scaled / std[:, None]
    return LinearMap(weight=weight, bias=y_mean - mean @ weight)


def r_squared(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per target column [T]: 1 - SSE / SST, SST about the target's own mean: 1 = exact, 0 = no better than
    that mean, negative = worse."""
    predicted, target = _matrix(predicted).double(), _matrix(target).double()
    if predicted.shape != target.shape:
        raise ValueError(f"r_squared: predictions {tuple(predicted.shape)} and targets {tuple(target.shape)} differ")
    sse = (target - predicted).pow(2).sum(0)
    sst = (target - target.mean(0)).pow(2).sum(0).clamp_min(1e-300)
    return 1 - sse / sst


def ridge_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                l2: float = 1e-3) -> torch.Tensor:
    """Held-out R^2 per target column [T] of ridge regression fitted on (train_x, train_y)."""
    return r_squared(fit_ridge(train_x, train_y, l2)(test_x), test_y)
