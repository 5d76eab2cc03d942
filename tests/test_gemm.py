"""The GEMM wrapper under every convolution and linear layer: cnnkit's own AVX-512
sgemm and OpenBLAS's, each against a float64 NumPy product, across the shapes that
cross the kernel's blocks (14 x 32 micro-tiles, K blocks of 256, row blocks of 224,
column blocks of 2048), every transpose, alpha and beta, and non-finite values."""

import itertools

import numpy as np
import pytest

import cnnkit
from cnnkit import _C

KERNELS = ["auto", "openblas"]
SHAPES = [
    (1, 1, 1),
    (14, 32, 1),
    (13, 31, 255),
    (15, 33, 257),
    (28, 64, 256),
    (100, 70, 300),
    (225, 17, 513),
    (3, 2049, 40),
    (57, 2100, 5),
]


@pytest.fixture(params=KERNELS)
def kernel(request, sgemm_kernel):
    """Runs the test on each single-precision kernel."""
    sgemm_kernel(request.param)
    return request.param


def operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    return a, b, c


def product(a, b, c, ta, tb, alpha, beta):
    """The float64 product and a rounding bound for each entry (k + 2 roundings of
    the absolute terms, at the dtype's precision)."""
    a64, b64, c64 = (np.asarray(v, np.float64) for v in (a, b, c))
    A, B = (a64.T if ta else a64), (b64.T if tb else b64)
    with np.errstate(invalid="ignore"):  # inf - inf is the NaN a test expects
        want = alpha * (A @ B) + beta * c64
        size = abs(alpha) * (np.abs(A) @ np.abs(B)) + abs(beta) * np.abs(c64)
    return want, (A.shape[1] + 2) * np.finfo(a.dtype).eps * size


@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("ta, tb", list(itertools.product([False, True], repeat=2)))
def test_gemm_matches_the_float64_product(kernel, m, n, k, ta, tb, rng):
    for alpha, beta in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)]:
        a, b, c = operands(rng, m, n, k, ta, tb, np.float32)
        want, bound = product(a, b, c, ta, tb, alpha, beta)
        got = _C._gemm(a, b, c, ta, tb, alpha, beta)
        assert got.dtype == np.float32 and got.shape == (m, n)
        excess = np.abs(got - want) - bound
        assert excess.max() <= 0, (alpha, beta, np.unravel_index(excess.argmax(), excess.shape))


def test_every_partial_micro_tile(kernel, rng):
    """Each row count of a sliver (1..14) with each column count of a micro-tile's
    halves: the own kernel runs a separate micro-kernel for each."""
    for m in range(1, 29):
        for n in (5, 16, 17, 32, 45):
            a, b, c = operands(rng, m, n, 19, False, False, np.float32)
            want, bound = product(a, b, c, False, False, 1.0, 0.5)
            excess = np.abs(_C._gemm(a, b, c, False, False, 1.0, 0.5) - want) - bound
            assert excess.max() <= 0, (m, n, np.unravel_index(excess.argmax(), excess.shape))


@pytest.mark.parametrize("m, n, k", SHAPES[::2])
def test_float64_runs_openblas_in_every_mode(kernel, m, n, k, rng):
    a, b, c = operands(rng, m, n, k, False, True, np.float64)
    want, bound = product(a, b, c, False, True, 1.5, -1.0)
    assert np.all(np.abs(_C._gemm(a, b, c, False, True, 1.5, -1.0) - want) <= bound)


def test_zero_beta_ignores_what_c_held(kernel, rng):
    """BLAS's rule: with beta = 0, C is written, never read (a NaN there is gone)."""
    a, b, _ = operands(rng, 20, 40, 30, False, False, np.float32)
    c = np.full((20, 40), np.nan, np.float32)
    got = _C._gemm(a, b, c, False, False, 1.0, 0.0)
    assert np.isfinite(got).all()


def test_zero_alpha_skips_the_product(kernel, rng):
    """With alpha = 0 BLAS does not form A * B, so a NaN in A does not reach C."""
    a, b, c = operands(rng, 20, 40, 30, False, False, np.float32)
    a[3, 4] = np.nan
    np.testing.assert_array_equal(_C._gemm(a, b, c, False, False, 0.0, 2.0), 2 * c)


@pytest.mark.parametrize("ta, tb", [(False, False), (True, True)])
def test_non_finite_values_reach_only_their_row_and_column(kernel, ta, tb, rng):
    """The packed panels are zero-padded past the edges: a NaN or infinity in A's row
    i reaches C's row i only, one in B's column j C's column j, as in the product."""
    m, n, k = 29, 45, 300
    a, b, c = operands(rng, m, n, k, ta, tb, np.float32)
    A = a.T if ta else a
    B = b.T if tb else b
    A[27, 260] = np.nan  # the last micro-tile's padded rows, the second K block
    A[0, 3] = np.inf
    B[7, 44] = -np.inf  # the last column: a padded sliver
    got = _C._gemm(a, b, c, ta, tb, 1.0, 1.0)
    want = product(a, b, c, ta, tb, 1.0, 1.0)[0]
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(want))
    assert np.isfinite(got).sum() == (m - 2) * (n - 1)


def test_every_thread_count_gives_the_same_bits(rng, num_threads):
    """On cnnkit's kernel each entry's sum runs in one order whatever the split over
    threads (OpenBLAS's blocking depends on the panel it is given)."""
    if cnnkit.get_sgemm_kernel() != "avx512":
        pytest.skip("cnnkit's own sgemm needs AVX-512F")
    a, b, c = operands(rng, 300, 500, 700, False, True, np.float32)
    results = []
    for threads in (1, 2, 3):
        num_threads(threads)
        results.append(_C._gemm(a, b, c, False, True, 1.0, 1.0))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_convolutions_and_linear_layers_agree_on_both_kernels(rng, sgemm_kernel):
    """The layers' results on either kernel are within float32 rounding of each other
    (a Winograd layer, an im2col one, a 1x1 one and a linear layer)."""
    F = cnnkit.F
    x = rng.standard_normal((2, 16, 12, 12)).astype(np.float32)
    cases = [
        lambda: F.conv2d(x, rng_w(rng, (24, 16, 3, 3)), padding=1),
        lambda: F.conv2d(x, rng_w(rng, (24, 16, 3, 3)), stride=2),
        lambda: F.conv2d(x, rng_w(rng, (24, 16, 1, 1))),
        lambda: F.linear(x.reshape(2, -1), rng_w(rng, (10, 16 * 144))),
    ]
    for make in cases:
        state = rng.bit_generator.state
        sgemm_kernel("auto")
        first = make()
        rng.bit_generator.state = state
        sgemm_kernel("openblas")
        second = make()
        np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-5 * np.abs(second).max())


def rng_w(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_the_kernel_choice_and_its_errors(sgemm_kernel):
    sgemm_kernel("openblas")
    assert cnnkit.get_sgemm_kernel() == "openblas"
    sgemm_kernel("auto")
    own = "AVX-512" in cnnkit.simd_level()
    assert cnnkit.get_sgemm_kernel() == ("avx512" if own else "openblas")
    with pytest.raises(ValueError, match=r"set_sgemm_kernel: kernel: expected 'auto' or 'openblas', got 'mkl'"):
        cnnkit.set_sgemm_kernel("mkl")
    with pytest.raises(TypeError, match=r"set_sgemm_kernel: kernel: expected 'auto' or 'openblas', got int"):
        cnnkit.set_sgemm_kernel(1)
    assert cnnkit.get_sgemm_kernel() == ("avx512" if own else "openblas")


def test_gemm_operand_errors_name_the_argument():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"_gemm: b: expected shape \(4, 4\), got \(5, 4\)"):
        _C._gemm(a, np.ones((5, 4), np.float32), np.ones((3, 4), np.float32), False, False, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"_gemm: c: expected shape \(3, 5\)"):
        _C._gemm(a, np.ones((4, 5), np.float32), np.ones((5, 3), np.float32), False, False, 1.0, 0.0)
