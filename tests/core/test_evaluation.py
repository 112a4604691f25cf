"""core.evaluation.reconstruction_report: NaN-aware per-sample means plus the modality's split-level figures."""
import math

import torch

from core.evaluation import reconstruction_report


class ValuesAsSamples:
    """A modality whose dataset items are numbers; the 'metric' is the number itself, NaN where negative."""

    def __init__(self, values):
        self.values = values
        self.seen = []

    def dataset(self, split):
        return self.values

    def collate(self, items):
        return torch.tensor(items, dtype=torch.float64)

    def batch_to(self, batch, device):
        return batch

    def reconstruction_metrics(self, prediction, batch):
        self.seen.append(batch)
        return {"value": torch.where(prediction < 0, torch.nan, prediction), "twice": 2 * prediction}

    def reconstruction_split_metrics(self):
        seen, self.seen = torch.cat(self.seen), []
        return {"split_max": float(seen.max())}


class Identity(torch.nn.Module):
    def reconstruct(self, batch):
        return batch, None


def test_means_leave_out_nan_and_count_what_they_cover():
    modality = ValuesAsSamples([1.0, -5.0, 3.0, 8.0, 100.0])
    report = reconstruction_report(Identity(), modality, "test", max_batches=2, batch_size=2,
                                   device=torch.device("cpu"))
    assert report["samples"] == 4 and report["split"] == "test"  # 2 batches of 2: the 5th item is not used
    assert math.isclose(report["value"], (1 + 3 + 8) / 3) and report["value/count"] == 3
    assert math.isclose(report["twice"], 2 * (1 - 5 + 3 + 8) / 4) and "twice/count" not in report


def test_split_level_figures_cover_exactly_the_evaluated_samples():
    modality = ValuesAsSamples([1.0, 2.0, 3.0, 100.0])
    report = reconstruction_report(Identity(), modality, "val", max_batches=1, batch_size=3,
                                   device=torch.device("cpu"))
    assert report["split_max"] == 3.0 and modality.seen == []
