"""trainer.precision: bf16 only where the hardware has it (unless asked), and a bf16 step stays near fp32."""
import pytest
import torch

import core.precision as precision
from small_models import TINY_IMAGE, tiny_image_recipe

def test_auto_is_float32_on_cpus_and_bf16_is_honoured(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512f"}))
    assert precision.compute_dtype(cpu, "auto") == torch.float32
    assert precision.compute_dtype(cpu, "bf16") == torch.bfloat16  # asked for: emulated, but honoured
    assert precision.compute_dtype(cpu, "fp32") == torch.float32
    for native in ("avx512_bf16", "amx_bf16", "bf16"):  # measured no faster on CPUs: auto stays float32
        monkeypatch.setattr(precision, "cpu_flags", lambda native=native: frozenset({"avx2", native}))
        assert precision.compute_dtype(cpu, "auto") == torch.float32
        assert native in precision.auto_reason(cpu) and precision.compute_dtype(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="trainer.precision"):
        precision.compute_dtype(cpu, "fp16")


def test_this_machine_is_read_not_assumed():
    flags = precision.cpu_flags()
    assert precision.cpu_has_native_bf16() == bool(flags & precision.NATIVE_BF16_CPU_FLAGS)
    assert isinstance(precision.autocast_for(torch.device("cpu"), "fp32"), type(precision.nullcontext()))


def test_a_bf16_step_stays_within_tolerance_of_fp32(compose_config, tmp_path):
    """Same batch, same draws: the bf16-autocast loss within 2 % of fp32, gradients aligned (cosine > 0.99)."""
    recipe, batch = tiny_image_recipe(compose_config, tmp_path)
    seeds = list(range(TINY_IMAGE["batch"]))
    results = {}
    for name in ("fp32", "bf16"):
        recipe.zero_grad(set_to_none=True)
        with precision.autocast_for(torch.device("cpu"), name):
            loss, _ = recipe(batch, seeds)
        loss.backward()
        results[name] = (float(loss.detach()), torch.cat([p.grad.flatten() for p in recipe.parameters() if p.grad is not None]))
    (loss32, grad32), (loss16, grad16) = results["fp32"], results["bf16"]
    assert abs(loss16 - loss32) <= 0.02 * abs(loss32)
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.99
