"""core/analysis/similarity.py against closed forms: linear CKA of a representation with itself, with an
orthogonal transform and a rescaling of itself is 1, with independent noise it sits at the sqrt(p q) / n floor
of a finite sample; the unbiased HSIC is the U-statistic of Song et al. 2012; CKNNA follows its definition
(mutual k-NN restricted kernels, Huh et al. 2024) computed by brute force."""
import itertools
import math

import pytest
import torch

from core.analysis.similarity import (cknna, hsic_unbiased, linear_cka, mean_cosine_similarity, mutual_neighbours,
                                      per_layer_alignment)


def _features(n=400, p=12, seed=0):
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(p, seed):
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_cka_of_a_representation_with_itself_is_one():
    x = _features()
    assert math.isclose(linear_cka(x, x), 1.0, abs_tol=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x = _features()
    assert math.isclose(linear_cka(x, x @ _orthogonal(12, 1)), 1.0, abs_tol=1e-10)
    assert math.isclose(linear_cka(x, 7.5 * x), 1.0, abs_tol=1e-12)
    # a wider space: X Q padded with zero columns is the same representation
    y = torch.cat([x @ _orthogonal(12, 1), torch.zeros(len(x), 5, dtype=torch.float64)], dim=1)
    assert math.isclose(linear_cka(x, y), 1.0, abs_tol=1e-10)
    assert linear_cka(x, torch.ones(len(x), 3)) == 0.0  # a constant side carries nothing


@pytest.mark.parametrize("n, p, q", [(2_000, 8, 8), (20_000, 8, 8), (20_000, 16, 4)])
def test_cka_with_independent_noise_sits_at_the_sample_size_floor(n, p, q):
    """Independent isotropic X [n, p], Y [n, q]: E||Y'X||^2 = n p q, ||X'X|| ~ n sqrt(p), so CKA ~ sqrt(p q) / n,
    which a finite sample cannot go below in expectation; the relative spread is sqrt(2 / (p q)) ~ 0.18-0.35."""
    floor = math.sqrt(p * q) / n
    values = [linear_cka(_features(n, p, seed), _features(n, q, seed + 100)) for seed in range(4)]
    assert all(v < 3 * floor for v in values)
    assert 0.6 * floor < sum(values) / len(values) < 1.4 * floor


def test_cka_of_a_partial_copy():
    """Y = the first p/2 columns of isotropic X: CKA = ||X1'X||^2 / (||X'X|| ||X1'X1||) -> (n^2 p/2) /
    (n sqrt(p) * n sqrt(p/2)) = sqrt(1/2) at large n."""
    x = _features(n=50_000, p=8, seed=4)
    assert math.isclose(linear_cka(x, x[:, :4]), math.sqrt(0.5), abs_tol=0.01)


def _hsic_u_statistic(k, l):
    """Song et al. 2012 (Theorem 2): the unbiased HSIC is the U-statistic over distinct ordered 4-tuples
    (i, j, q, r) of K_ij L_ij + K_ij L_qr - 2 K_ij L_iq."""
    n = k.shape[0]
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += float(k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q])
    return total / (n * (n - 1) * (n - 2) * (n - 3))


def test_hsic_unbiased_is_the_u_statistic():
    x, y = _features(n=7, p=3, seed=10), _features(n=7, p=2, seed=11)
    k, l = x @ x.T, torch.exp(-torch.cdist(y, y) ** 2)  # a linear and an RBF kernel
    assert math.isclose(float(hsic_unbiased(k, l)), _hsic_u_statistic(k, l), rel_tol=1e-10, abs_tol=1e-12)


def test_hsic_unbiased_of_a_constant_kernel_is_zero():
    assert abs(float(hsic_unbiased(torch.ones(10, 10, dtype=torch.float64),
                                   torch.rand(10, 10, dtype=torch.float64)))) < 1e-12


def _hsic_by_sums(k, l):
    """Song et al.'s eq. 5 written as explicit sums (the form the reference code applies to the masked kernels,
    which are not symmetric: the U-statistic identity above needs symmetric ones):
    [sum_ij K~_ij L~_ji + sum K~ sum L~ / ((n-1)(n-2)) - 2/(n-2) sum_ijq K~_ij L~_jq] / (n (n-3))."""
    n = k.shape[0]
    k = [[0.0 if i == j else float(k[i, j]) for j in range(n)] for i in range(n)]
    l = [[0.0 if i == j else float(l[i, j]) for j in range(n)] for i in range(n)]
    trace = sum(k[i][j] * l[j][i] for i in range(n) for j in range(n))
    totals = sum(map(sum, k)) * sum(map(sum, l))
    chain = sum(k[i][j] * l[j][q] for i in range(n) for j in range(n) for q in range(n))
    return (trace + totals / ((n - 1) * (n - 2)) - 2 * chain / (n - 2)) / (n * (n - 3))


def _cknna_by_definition(x, y, topk):
    """CKNNA written out: rows normalised, alpha(i, j) = 1 when j != i is among the topk largest K[i, :] and
    among the topk largest L[i, :] (each found by sorting row i), then the unbiased HSIC of the masked
    kernels, normalised by those of K and L with themselves."""
    x = x / x.norm(dim=1, keepdim=True)
    y = y / y.norm(dim=1, keepdim=True)
    k, l = x @ x.T, y @ y.T
    n = len(x)

    def neighbours(kernel, i):
        others = [j for j in range(n) if j != i]
        return set(sorted(others, key=lambda j: -float(kernel[i, j]))[:topk])

    def restricted(a, b):
        alpha = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            for j in neighbours(a, i) & neighbours(b, i):
                alpha[i, j] = 1.0
        return _hsic_by_sums(alpha * a, alpha * b)
    return restricted(k, l) / math.sqrt(restricted(k, k) * restricted(l, l))


def test_hsic_unbiased_of_unsymmetric_kernels_is_the_matrix_formula():
    g = torch.Generator().manual_seed(15)
    k, l = torch.randn(8, 8, generator=g, dtype=torch.float64), torch.randn(8, 8, generator=g, dtype=torch.float64)
    assert math.isclose(float(hsic_unbiased(k, l)), _hsic_by_sums(k, l), rel_tol=1e-10)


def test_cknna_follows_its_definition():
    x = _features(n=9, p=4, seed=12)
    y = x @ torch.randn(4, 3, generator=torch.Generator().manual_seed(13), dtype=torch.float64) + \
        0.5 * _features(n=9, p=3, seed=14)
    for topk in (3, 5):
        assert math.isclose(cknna(x, y, topk=topk), _cknna_by_definition(x, y, topk), rel_tol=1e-9)


def test_mutual_neighbours_mask():
    """Points on a line at 0, 1, 3, 7 (kernel = -distance): 1-NN of each is the next closer one."""
    position = torch.tensor([0.0, 1.0, 3.0, 7.0], dtype=torch.float64)
    kernel = -(position[:, None] - position[None]).abs()
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[0, 1] = expected[1, 0] = expected[2, 1] = expected[3, 2] = 1.0
    assert torch.equal(mutual_neighbours(kernel, kernel, 1), expected)
    reversed_order = kernel.flip(0).flip(1)  # another representation: its own neighbours
    assert float(mutual_neighbours(kernel, reversed_order, 1).sum()) < 4


def test_cknna_is_one_for_identical_rescaled_and_rotated_representations():
    x = _features(n=120)
    assert math.isclose(cknna(x, x, topk=10), 1.0, abs_tol=1e-9)
    assert math.isclose(cknna(x, 3.0 * x, topk=10), 1.0, abs_tol=1e-9)  # rows are normalised first
    assert math.isclose(cknna(x, x @ _orthogonal(12, 2), topk=10), 1.0, abs_tol=1e-9)  # the same kernel


def test_cknna_with_every_pair_is_the_unbiased_cka_of_normalised_rows():
    x, y = _features(n=60, seed=5), _features(n=60, seed=6) + 0.5 * _features(n=60, seed=5)
    xn, yn = (torch.nn.functional.normalize(t, dim=1) for t in (x, y))
    k, l = xn @ xn.T, yn @ yn.T
    expected = hsic_unbiased(k, l) / torch.sqrt(hsic_unbiased(k, k) * hsic_unbiased(l, l))
    assert math.isclose(cknna(x, y, topk=59), float(expected), abs_tol=1e-10)


def test_cknna_of_independent_noise_is_near_zero():
    values = [cknna(_features(n=500, seed=s), _features(n=500, seed=s + 50), topk=10) for s in range(3)]
    assert all(abs(v) < 0.05 for v in values)


def test_mean_cosine_similarity():
    x = _features(n=50)
    assert math.isclose(mean_cosine_similarity(x, 2 * x), 1.0, abs_tol=1e-12)
    assert math.isclose(mean_cosine_similarity(x, -x), -1.0, abs_tol=1e-12)
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert mean_cosine_similarity(e1, e2) == 0.0


def test_per_layer_alignment_rows():
    x = _features(n=40, p=6)
    rows = per_layer_alignment([x, x], [x @ _orthogonal(6, 3), -x], topk=5)
    assert [r["layer"] for r in rows] == [0, 1]
    assert math.isclose(rows[0]["cka"], 1.0, abs_tol=1e-10) and math.isclose(rows[0]["cknna"], 1.0, abs_tol=1e-9)
    assert math.isclose(rows[1]["cka"], 1.0, abs_tol=1e-10) and math.isclose(rows[1]["cosine"], -1.0, abs_tol=1e-12)


def test_shapes_are_checked_and_named():
    with pytest.raises(ValueError, match="linear_cka.*same n"):
        linear_cka(torch.zeros(5, 2), torch.zeros(6, 2))
    with pytest.raises(ValueError, match="cknna: topk=5"):
        cknna(torch.randn(5, 2), torch.randn(5, 2), topk=5)
    with pytest.raises(ValueError, match="one width"):
        mean_cosine_similarity(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="n >= 4"):
        hsic_unbiased(torch.ones(3, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="3 layers against 2"):
        per_layer_alignment([torch.zeros(4, 2)] * 3, [torch.zeros(4, 2)] * 2, topk=1)
