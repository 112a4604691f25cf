"""The matrix-product floor: the products a step dispatches, counted against closed forms (never timed)."""
import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.matmul_floor import (AttentionCall, Product, attention_seconds, equivalent_products, floor_seconds,
                                     layout, record_products, record_step)


def two_layer_step(batch=32, inputs=8, hidden=16, outputs=4):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, outputs))
    x = torch.randn(batch, inputs)
    return lambda: net(x).square().sum().backward()


def test_products_of_a_two_layer_step_match_the_closed_form():
    """Forward: two addmm; backward: dW2, dh, dW1 (no product for dx: the input needs no gradient)."""
    products = record_products(two_layer_step(batch=32, inputs=8, hidden=16, outputs=4))
    f32 = torch.float32
    assert products == {
        Product(1, 32, 8, 16, ("N", "T"), True, f32): 1,    # x @ W1^T + b1
        Product(1, 32, 16, 4, ("N", "T"), True, f32): 1,    # h @ W2^T + b2
        Product(1, 32, 4, 16, ("N", "N"), False, f32): 1,   # dh = g @ W2
        Product(1, 4, 32, 16, ("T", "N"), False, f32): 1,   # dW2 = g^T @ h
        Product(1, 16, 32, 8, ("T", "N"), False, f32): 1,   # dW1 = dh'^T @ x
    }
    total = sum(count * p.flops for p, count in products.items())
    assert total == 4 * 32 * 8 * 16 + 6 * 32 * 16 * 4
    counter = FlopCounterMode(display=False)
    with counter:
        two_layer_step()()
    assert total == counter.get_total_flops()


def test_batched_products_are_recorded_with_their_batch():
    a, b = torch.randn(3, 5, 7), torch.randn(3, 7, 2)
    products = record_products(lambda: torch.bmm(a, b))
    assert products == {Product(3, 5, 7, 2, ("N", "N"), False, torch.float32): 1}
    assert next(iter(products)).flops == 2 * 3 * 5 * 7 * 2


def test_layouts_and_equivalent_products():
    x = torch.randn(4, 6)
    assert (layout(x), layout(x.t()), layout(x[:, ::2])) == ("N", "T", "copy")
    product = Product(1, 3, 5, 7, ("N", "T"), True, torch.float32)
    variants = equivalent_products(product)
    assert len(set(variants)) == 8 and product in variants
    assert {v.flops for v in variants} == {product.flops}
    assert {(v.m, v.n) for v in variants} == {(3, 7), (7, 3)}


def test_floor_is_well_formed_and_refuses_an_empty_step():
    products = record_products(two_layer_step())
    for best in (False, True):
        floor = floor_seconds(products, rounds=1, best_layout=best)
        assert set(floor) == {"seconds", "gflop", "gflop_per_s", "distinct"}
        assert floor["seconds"] > 0 and math.isfinite(floor["gflop_per_s"]) and floor["distinct"] == 5
        assert floor["gflop"] == sum(count * p.flops for p, count in products.items()) / 1e9
    try:
        floor_seconds(record_products(lambda: torch.randn(3).exp()))
    except ValueError as error:
        assert "no matrix products" in str(error)
    else:
        raise AssertionError("an empty step must be refused")


def test_attention_calls_are_recorded_forward_and_backward_and_timed():
    """Fused attention is recorded apart from the products: one forward and one backward call per use, with
    the mask's shape; the replay times are positive and sum over counts."""
    query = torch.randn(2, 4, 8, 16, requires_grad=True)
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool)

    def step():
        torch.nn.functional.scaled_dot_product_attention(query, query, query).sum().backward()
        torch.nn.functional.scaled_dot_product_attention(query, query, query, attn_mask=mask).sum().backward()
    products, attention = record_step(step)
    shape = (2, 4, 8, 16)
    assert attention == {AttentionCall(shape, shape, shape, None, False, False, torch.float32): 1,
                         AttentionCall(shape, shape, shape, None, False, True, torch.float32): 1,
                         AttentionCall(shape, shape, shape, (2, 1, 8, 8), False, False, torch.float32): 1,
                         AttentionCall(shape, shape, shape, (2, 1, 8, 8), False, True, torch.float32): 1}
    assert not products  # the CPU kernel's products are inside it
    assert attention_seconds(attention, rounds=1) > 0
    assert attention_seconds({}, rounds=1) == 0
