import math

import pytest
import torch

from core.data_order import ResumableSampler
from core.ema import EMA
from core.lr_schedule import warmup_cosine


def test_warmup_cosine_closed_form():
    assert warmup_cosine(0, 10, 110, 0.5) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110, 0.5) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110, 0.5) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.5) == pytest.approx(0.5 + 0.5 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert warmup_cosine(110, 10, 110, 0.5) == pytest.approx(0.5)
    assert warmup_cosine(500, 10, 110, 0.5) == pytest.approx(0.5)  # held after the end


def test_ema_update_formula():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.9)
    before = ema.shadow.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.shadow.weight, 0.9 * before + 0.1 * model.weight)
    with pytest.raises(ValueError, match="ema_decay"):
        EMA(model, 1.0)


def test_sampler_order_is_a_function_of_seed_and_epoch():
    a, b = ResumableSampler(50, seed=3, shuffle=True), ResumableSampler(50, seed=3, shuffle=True)
    assert list(a) == list(b)
    a.set_position(1, 0)
    assert list(a) != list(b) and sorted(a) == list(range(50))


def test_sampler_resumes_mid_epoch():
    full = ResumableSampler(40, seed=1, shuffle=True)
    full.set_position(2, 0)
    order = list(full)
    resumed = ResumableSampler(40, seed=1, shuffle=True)
    resumed.set_position(2, 16)
    assert list(resumed) == order[16:] and len(resumed) == 24


def test_sampler_shards_are_disjoint():
    shards = [list(ResumableSampler(41, 0, True, rank=r, world_size=4)) for r in range(4)]
    flat = [i for shard in shards for i in shard]
    assert len(flat) == len(set(flat)) == 40 and all(len(s) == 10 for s in shards)
