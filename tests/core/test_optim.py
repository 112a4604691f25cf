"""Muon with its Newton–Schulz in a chosen dtype (batched by shape) and fused AdamW, against torch's own."""
import pytest
import torch

import core.precision as precision
from core.muon import Muon, newton_schulz, resolve_ns_dtype
from core.optim import OptimizerSet, adamw

SHAPES = [(24, 16), (24, 16), (16, 40), (48, 48), (8, 96)]  # two of one shape, tall, wide, square


def matrices(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g) / shape[1] ** 0.5) for shape in SHAPES]


def run(optimizer_class, steps=3, **options):
    params = matrices()
    optimizer = optimizer_class(params, lr=0.02, weight_decay=0.01, momentum=0.95, nesterov=True,
                                adjust_lr_fn="match_rms_adamw", **options)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        optimizer.step()
    return params, optimizer


def test_bf16_iteration_reproduces_torch_muon():
    ours, _ = run(Muon, ns_dtype="bf16")
    theirs, _ = run(torch.optim.Muon)
    for a, b in zip(ours, theirs):  # batching the products changes bf16 rounding only
        assert torch.allclose(a, b, atol=2e-3, rtol=0)


def test_fp32_iteration_is_torch_muon_to_bf16_rounding_and_exact_in_float64():
    ours, _ = run(Muon, ns_dtype="fp32")
    theirs, _ = run(torch.optim.Muon)
    start = matrices()
    for a, b, p0 in zip(ours, theirs, start):
        update_ours, update_theirs = a - p0, b - p0
        assert (update_ours - update_theirs).norm() <= 0.03 * update_theirs.norm()
    g = torch.Generator().manual_seed(2)
    stack = torch.randn(3, 16, 40, generator=g)
    assert torch.allclose(newton_schulz(stack, (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float32),
                          newton_schulz(stack.double(), (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float64).float(),
                          atol=1e-5)


def test_auto_takes_fp32_without_native_bf16_and_state_moves_between_the_classes(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert resolve_ns_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert resolve_ns_dtype("auto", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="muon_ns_dtype"):
        resolve_ns_dtype("fp16", torch.device("cpu"))
    _, theirs = run(torch.optim.Muon)
    params = matrices()
    ours = Muon(params, lr=0.02, adjust_lr_fn="match_rms_adamw", ns_dtype="fp32")
    ours.load_state_dict(theirs.state_dict())
    assert all(torch.equal(ours.state[p]["momentum_buffer"], theirs.state[q]["momentum_buffer"])
               for p, q in zip(params, theirs.param_groups[0]["params"]))


def test_fused_adamw_matches_the_loop_and_keeps_its_kernel_after_a_resume():
    results = []
    for fused in (False, True):
        params = matrices()
        optimizer = adamw(params, 1e-2, (0.9, 0.999), 1e-6, 0.01, fused)
        assert bool(optimizer.param_groups[0]["fused"]) == fused
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            optimizer.step()
        results.append((params, optimizer))
    for a, b in zip(results[0][0], results[1][0]):
        assert torch.allclose(a, b, atol=1e-6)
    loop_state = results[0][1].state_dict()
    resumed = OptimizerSet([adamw(matrices(), 1e-2, (0.9, 0.999), 1e-6, 0.01, True)])
    resumed.load_state_dict([loop_state])
    assert resumed.optimizers[0].param_groups[0]["fused"]
