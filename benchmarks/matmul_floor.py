"""The matrix-product floor of a step: the step's own matrix products alone, timed back to back.

A step's time is its matrix products plus everything else (attention kernels, elementwise, norms,
copies). `record_products(fn)` lists every mm/addmm/bmm/baddbmm that `fn` dispatches (forward and
backward, with each operand's layout: row-major or transposed), `floor_seconds(products)` times each
distinct product alone on this machine in its recorded layout and sums count x time. No implementation
of the same arithmetic in the same precision on this machine runs faster than that floor unless it
makes its products themselves faster, so `some other code's step time / floor` is the highest speed-up
over that code that this machine allows (attention kernels, which hold their own products, are left out:
the floor is a lower bound). Fused attention kernels are recorded apart (`AttentionCall`) and
timed alone the same way (`attention_seconds`): products + attention is the floor of a step whose
elementwise work, norms and copies cost nothing.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

PRODUCTS = {torch.ops.aten.mm.default: "mm", torch.ops.aten.addmm.default: "addmm",
            torch.ops.aten.bmm.default: "bmm", torch.ops.aten.baddbmm.default: "baddbmm"}


def layout(matrix: torch.Tensor) -> str:
    """'N' when the last dimension is contiguous, 'T' when the one before is (a transposed view), else 'copy'."""
    if matrix.stride(-1) == 1:
        return "N"
    if matrix.stride(-2) == 1:
        return "T"
    return "copy"


@dataclass(frozen=True)
class Product:
    """One matrix product [batch x] (m x k) @ (k x n), the layouts of its two operands, with or without bias."""

    batch: int
    m: int
    k: int
    n: int
    layouts: tuple[str, str]
    bias: bool
    dtype: torch.dtype

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.m * self.k * self.n


@dataclass(frozen=True)
class AttentionCall:
    """One fused attention kernel call: query/key/value shapes [B, H, L, d], mask shape (or None), backward or not."""

    query: tuple[int, ...]
    key: tuple[int, ...]
    value: tuple[int, ...]
    mask: tuple[int, ...] | None
    causal: bool
    backward: bool
    dtype: torch.dtype


def attention_call(func, args, kwargs) -> AttentionCall | None:
    """The AttentionCall of a dispatched fused-attention kernel (forward or backward), else None."""
    name = func.name()
    if "_scaled_dot_product" not in name:
        return None
    backward = name.split("::")[-1].split(".")[0].endswith("_backward")
    if backward:  # (grad_out, query, key, value, out, logsumexp, dropout, is_causal, ...)
        query, key, value = args[1], args[2], args[3]
        causal = bool(args[7]) if len(args) > 7 and isinstance(args[7], bool) else bool(kwargs.get("is_causal", False))
    else:  # (query, key, value, dropout, is_causal, ...)
        query, key, value = args[0], args[1], args[2]
        causal = bool(args[4]) if len(args) > 4 and isinstance(args[4], bool) else bool(kwargs.get("is_causal", False))
    mask = kwargs.get("attn_mask")
    return AttentionCall(tuple(query.shape), tuple(key.shape), tuple(value.shape),
                         None if mask is None else tuple(mask.shape), causal, backward, query.dtype)


class _ProductRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.products: Counter[Product] = Counter()
        self.attention: Counter[AttentionCall] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        call = attention_call(func, args, kwargs or {})
        if call is not None:
            self.attention[call] += 1
        kind = PRODUCTS.get(func)
        if kind is not None:
            left, right = (args[1], args[2]) if kind in ("addmm", "baddbmm") else (args[0], args[1])
            batch = left.shape[0] if left.dim() == 3 else 1
            self.products[Product(batch, left.shape[-2], left.shape[-1], right.shape[-1],
                                  (layout(left), layout(right)), kind in ("addmm", "baddbmm"), left.dtype)] += 1
        return func(*args, **(kwargs or {}))


def record_products(fn: Callable[[], object]) -> Counter[Product]:
    """Every matrix product `fn()` dispatches (its backward too, when fn calls backward), with counts."""
    return record_step(fn)[0]


def record_step(fn: Callable[[], object]) -> tuple[Counter[Product], Counter[AttentionCall]]:
    """The matrix products and the fused attention calls `fn()` dispatches, with counts."""
    recorder = _ProductRecorder()
    with recorder:
        fn()
    return recorder.products, recorder.attention


def median_seconds(fn: Callable[[], object], rounds: int) -> float:
    """Median wall seconds of `rounds` calls of fn, after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_attention(call: AttentionCall, rounds: int) -> float:
    """Median seconds of one attention kernel alone: the forward, or for a backward call the difference
    forward + backward minus forward (fresh operands of the recorded shapes)."""
    import torch.nn.functional as F
    query, key, value = (torch.randn(shape, dtype=call.dtype, requires_grad=call.backward)
                         for shape in (call.query, call.key, call.value))
    mask = None if call.mask is None else torch.ones(call.mask, dtype=torch.bool)
    gradient = torch.randn(call.query[:-1] + call.value[-1:], dtype=call.dtype)

    def forward():
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=call.causal)
    with torch.no_grad():
        forward_only = median_seconds(forward, rounds)
    if not call.backward:
        return forward_only
    return max(median_seconds(lambda: forward().backward(gradient), rounds) - forward_only, 0.0)


def attention_seconds(calls: Counter[AttentionCall], rounds: int = 5) -> float:
    """Sum of count x time alone over the recorded attention kernel calls (0 when there are none)."""
    return sum(count * time_attention(call, rounds) for call, count in calls.items())


def _operand(rows: int, cols: int, layout_: str, batch: int, dtype: torch.dtype) -> torch.Tensor:
    shape = (batch,) if batch > 1 else ()
    if layout_ == "T":
        return torch.randn(*shape, cols, rows, dtype=dtype).transpose(-1, -2)
    return torch.randn(*shape, rows, cols, dtype=dtype)


def time_product(product: Product, rounds: int) -> float:
    """Median seconds of one product alone (fresh operands in the recorded layouts, after one warm-up)."""
    left = _operand(product.m, product.k, product.layouts[0], product.batch, product.dtype)
    right = _operand(product.k, product.n, product.layouts[1], product.batch, product.dtype)
    bias = torch.randn(product.n, dtype=product.dtype)
    if product.batch > 1:
        call = (lambda: torch.baddbmm(bias, left, right)) if product.bias else (lambda: torch.bmm(left, right))
    else:
        call = (lambda: torch.addmm(bias, left, right)) if product.bias else (lambda: torch.mm(left, right))
    return median_seconds(call, rounds)


def total_gflop(products: Counter[Product]) -> float:
    """GFLOP of all recorded products, counts included."""
    return sum(count * product.flops for product, count in products.items()) / 1e9


def equivalent_products(product: Product) -> list[Product]:
    """The 8 ways to compute the same numbers: C = A B or C^T = B^T A^T, each operand row-major or transposed."""
    return [Product(product.batch, m, product.k, n, (left, right), product.bias, product.dtype)
            for m, n in ((product.m, product.n), (product.n, product.m)) for left in "NT" for right in "NT"]


def floor_seconds(products: Counter[Product], rounds: int = 5, best_layout: bool = False) -> dict:
    """{'seconds': sum of count x median time alone, 'gflop': total, 'gflop_per_s': the products' rate alone,
    'distinct': how many distinct products}. best_layout: each product in the fastest of its 8 equivalent
    layouts (the floor of any code with these products), else as the step laid it out."""
    if not products:
        raise ValueError("no matrix products were recorded: nothing to put a floor under")

    def alone(product: Product) -> float:
        variants = equivalent_products(product) if best_layout else [product]
        return min(time_product(variant, rounds) for variant in variants)
    seconds = sum(count * alone(product) for product, count in products.items())
    gflop = total_gflop(products)
    return {"seconds": seconds, "gflop": gflop, "gflop_per_s": gflop / seconds, "distinct": len(products)}


def square_gemm_rate(size: int = 2048, rounds: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of one size x size x size product on this machine (the matrix unit's practical peak)."""
    product = Product(1, size, size, size, ("N", "N"), False, dtype)
    return product.flops / time_product(product, rounds) / 1e9
