"""Linear-probe accuracy of a recipe's latent (AlignTok and UNITE report it): how linearly the class can be
read from the clean latents z = recipe.encode(x).

Features: the latent tokens flattened (a fixed grid: images) or averaged over real tokens (`pool=mean`),
standardised with the training features' statistics; a multinomial logistic regression (L-BFGS, L2
penalty) fitted on `train_items` training samples and scored on `eval_items` samples of the evaluation
split. Pass 1 draws its input noise: the features are taken under a fixed seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

POOLS = ("flatten", "mean")


@torch.no_grad()
def latent_features(model, modality, split: str, items: int, batch_size: int, device: torch.device, pool: str,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [n, F], labels [n]) of the first `items` samples of `split` (its fixed order)."""
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: choose one of {POOLS}")
    dataset = modality.dataset(split)
    loader = DataLoader(Subset(dataset, range(min(items, len(dataset)))), batch_size=batch_size,
                        collate_fn=modality.collate)
    model.eval()
    features, labels = [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for batch in loader:
            batch = modality.batch_to(batch, device)
            batch_labels = modality.batch_labels(batch)
            if batch_labels is None:
                raise ValueError(f"modality {modality.name!r} gives no class labels: nothing to probe")
            z, layout = model.encode(batch)  # [B, N, C]
            if pool == "flatten":
                if not bool(layout.mask.all()):
                    raise ValueError("pool=flatten needs a fixed grid of latent tokens; this layout has padding "
                                     "(use pool=mean)")
                features.append(z.flatten(1).float().cpu())
            else:
                weights = layout.mask.unsqueeze(-1).to(z.dtype)
                features.append(((z * weights).sum(1) / weights.sum(1).clamp_min(1)).float().cpu())
            labels.append(batch_labels.cpu())
    return torch.cat(features), torch.cat(labels)


def fit_and_score(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                  num_classes: int, l2: float = 1e-3, iterations: int = 200) -> float:
    """Accuracy on (test_x, test_y) of a logistic regression fitted on (train_x, train_y), features
    standardised by the training statistics."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    weight = torch.zeros(train_x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    x, y = train_x.double(), train_y.long()
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss
    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = (test_x.double() @ weight + bias).argmax(1)
    return float((predicted == test_y).double().mean())


def linear_probe(model, modality, *, train_items: int, eval_items: int, eval_split: str, batch_size: int,
                 device: torch.device, pool: str = "flatten") -> dict[str, float]:
    """{'linear_probe_accuracy', 'linear_probe_chance', 'linear_probe_train_items', 'linear_probe_eval_items'}."""
    train_x, train_y = latent_features(model, modality, "train", train_items, batch_size, device, pool)
    test_x, test_y = latent_features(model, modality, eval_split, eval_items, batch_size, device, pool)
    classes = int(max(train_y.max(), test_y.max())) + 1
    return {"linear_probe_accuracy": fit_and_score(train_x, train_y, test_x, test_y, classes),
            "linear_probe_chance": float(torch.bincount(test_y, minlength=classes).max() / len(test_y)),
            "linear_probe_train_items": len(train_y), "linear_probe_eval_items": len(test_y)}
