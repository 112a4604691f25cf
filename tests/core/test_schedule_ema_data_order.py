import math

import pytest
import torch

from core.data_order import ResumableSampler
from core.ema import EMA
from core.lr_schedule import lr_multiplier, official_schedule, warmup_cosine
from core.noise_streams import global_positions, stream_seeds


def test_warmup_cosine_closed_form():
    assert warmup_cosine(0, 10, 110, 0.5) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110, 0.5) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110, 0.5) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.5) == pytest.approx(0.5 + 0.5 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert warmup_cosine(110, 10, 110, 0.5) == pytest.approx(0.5)
    assert warmup_cosine(500, 10, 110, 0.5) == pytest.approx(0.5)  # held after the end


def test_official_schedule_closed_form():
    # official UNITE ImageNet, in steps of an epoch of 10: warm-up to 20, hold to 30, cosine to 0.5 by 50
    assert official_schedule(0, 200, 300, 500, 0.5) == 0.0  # the official warm-up starts from zero
    assert official_schedule(100, 200, 300, 500, 0.5) == pytest.approx(0.5)
    assert official_schedule(200, 200, 300, 500, 0.5) == official_schedule(299, 200, 300, 500, 0.5) == 1.0
    assert official_schedule(400, 200, 300, 500, 0.5) == pytest.approx(0.75)  # half-way down the cosine
    assert official_schedule(500, 200, 300, 500, 0.5) == official_schedule(10 ** 6, 200, 300, 500, 0.5) == 0.5


def test_lr_multiplier_reads_steps_or_epochs():
    official = {"name": "official", "unit": "epochs", "warmup": 20, "hold_until": 30, "decay_end": 50,
                "final_ratio": 0.5}
    by_epochs = lr_multiplier(official, steps_per_epoch=10, max_steps=10 ** 6)
    by_steps = lr_multiplier({**official, "unit": "steps", "warmup": 200, "hold_until": 300, "decay_end": 500},
                             steps_per_epoch=7, max_steps=10 ** 6)
    assert [by_epochs(s) for s in range(0, 700, 13)] == [by_steps(s) for s in range(0, 700, 13)]
    ours = lr_multiplier({"name": "warmup_cosine", "unit": "steps", "warmup": 10, "hold_until": None,
                          "decay_end": None, "final_ratio": 0.5}, steps_per_epoch=3, max_steps=110)
    assert [ours(s) for s in (0, 60, 200)] == [warmup_cosine(s, 10, 110, 0.5) for s in (0, 60, 200)]


def test_noise_stream_positions_follow_the_sampler_shards():
    # 2 processes x 2 micro-batches of 3: rank r's k-th item of micro-batch a is item 2 (3a + k) + r of the step
    assert global_positions(2, 1, 1, 3) == [7, 9, 11]
    covered = sorted(p for rank in (0, 1) for micro in (0, 1) for p in global_positions(2, rank, micro, 3))
    assert covered == list(range(12))
    assert global_positions(1, 0, 0, 12) == covered  # one process, one micro-batch: the same positions
    seeds = stream_seeds(0, 5, covered)
    assert len(set(seeds)) == 12 and stream_seeds(0, 5, [3]) == [seeds[3]] and stream_seeds(0, 6, [3]) != [seeds[3]]
    assert all(0 <= seed < 2 ** 63 for seed in seeds)


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


def test_ema_copies_buffers_by_name_when_the_copy_has_others():
    # deepcopy of e3nn's generated tensor products (experiment=qm9_unite_s) adds renamed constant buffers
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9)
    ema.shadow[0].register_buffer("_tensor_constant0", torch.zeros(3, 3, 3))
    with torch.no_grad():
        for index, bn in enumerate(model):
            bn.running_mean.fill_(index + 1.0)
            bn.num_batches_tracked.fill_(7)
    ema.update(model)
    for index, bn in enumerate(ema.shadow):
        assert torch.equal(bn.running_mean, torch.full_like(bn.running_mean, index + 1.0))
        assert int(bn.num_batches_tracked) == 7


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
