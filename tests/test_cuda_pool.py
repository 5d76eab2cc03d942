"""Pooling on CuPy arrays, against the CPU path on the same values (skipped without a
GPU; tests/test_cuda_host_pool.py runs the same kernels on the CPU): the CPU sweep's
cases, ties and NaN (switches exactly), max_pool2d_backward equal to the CPU's, unpool
duplicates, every norm type, layouts, empty batches and switch errors.
"""

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F

from conftest import assert_close
from cuda_host.device import FAMILY_OPS, check_on_device
from test_pool import CASES, INF, distinct, lp_input, ties

cupy = pytest.importorskip("cupy")
if not cnnkit.cuda.is_available():
    pytest.skip("no CUDA device (cupy.is_available() is False)", allow_module_level=True)


def gpu(a):
    return cupy.asarray(a)


def host(a):
    assert isinstance(a, cupy.ndarray) and a.flags.c_contiguous
    return cupy.asnumpy(a)


def check(actual, expected, dtype):
    assert_close(host(actual), expected, dtype)


def same(actual, expected):
    a = host(actual)
    assert a.dtype == expected.dtype and a.shape == expected.shape
    np.testing.assert_array_equal(a, expected)


SWEEP = [pytest.param(c, id=f"{i:03d}-{c}") for i, c in list(enumerate(CASES))[::3]]


@pytest.mark.parametrize("case", SWEEP)
def test_cuda_pool_sweep_matches_cpu(case, dtype, rng):
    x = distinct(rng, case.x_shape, dtype)
    y, s = F.max_pool2d(x, return_indices=True, **case.max_kwargs())
    gy_, gs = F.max_pool2d(gpu(x), return_indices=True, **case.max_kwargs())
    same(gy_, y)
    same(gs, s)
    g = rng.standard_normal(y.shape).astype(dtype)
    same(F.max_pool2d_backward(gpu(g), gs, x.shape), F.max_pool2d_backward(g, s, x.shape))
    a = F.avg_pool2d(x, **case.avg_kwargs())
    check(F.avg_pool2d(gpu(x), **case.avg_kwargs()), a, dtype)
    ga = rng.standard_normal(a.shape).astype(dtype)
    check(F.avg_pool2d_backward(gpu(ga), x.shape, **case.avg_kwargs()),
          F.avg_pool2d_backward(ga, x.shape, **case.avg_kwargs()), dtype)
    xl = lp_input(rng, case, dtype)
    lp = F.lp_pool2d(xl, case.norm_type, **case.lp_kwargs())
    check(F.lp_pool2d(gpu(xl), case.norm_type, **case.lp_kwargs()), lp, dtype)
    gl = rng.standard_normal(lp.shape).astype(dtype)
    check(F.lp_pool2d_backward(gpu(gl), gpu(xl), case.norm_type, **case.lp_kwargs()),
          F.lp_pool2d_backward(gl, xl, case.norm_type, **case.lp_kwargs()), dtype)


@pytest.mark.parametrize("nan_fraction", [0.0, 0.2])
def test_cuda_max_pool2d_ties_and_nan(nan_fraction, dtype, rng):
    x = ties(rng, (4, 8, 33, 47), dtype, nan_fraction)
    for kw in (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(kernel_size=(2, 3), dilation=(2, 1))):
        y, s = F.max_pool2d(x, return_indices=True, **kw)
        gy_, gs = F.max_pool2d(gpu(x), return_indices=True, **kw)
        same(gy_, y)
        same(gs, s)
        same(F.max_pool2d(gpu(x), **kw), y)


@pytest.mark.parametrize("pattern", ["pool", "random"])
def test_cuda_switch_ops_match_cpu(pattern, dtype, rng):
    x = rng.standard_normal((8, 16, 40, 40)).astype(dtype)
    _, s = F.max_pool2d(x, 3, stride=1, return_indices=True)
    if pattern == "random":
        s = rng.integers(0, 50, s.shape)
    g = rng.standard_normal(s.shape).astype(dtype)
    same(F.max_pool2d_backward(gpu(g), gpu(s), x.shape), F.max_pool2d_backward(g, s, x.shape))
    u = F.max_unpool2d(g, s, 3, 1, 0, output_size=x.shape)
    same(F.max_unpool2d(gpu(g), gpu(s), 3, 1, 0, output_size=x.shape), u)
    same(F.max_unpool2d_backward(gpu(x), gpu(s)), F.max_unpool2d_backward(x, s))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, INF, -INF])
def test_cuda_lp_pool2d_norm_types(norm_type, dtype, rng):
    x = rng.uniform(0.5, 2.0, (4, 8, 17, 19)).astype(dtype)
    if norm_type != 3.0:
        x *= rng.choice([-1.0, 1.0], x.shape).astype(dtype)
    kw = dict(kernel_size=(3, 2), stride=(2, 3), ceil_mode=True)
    y = F.lp_pool2d(x, norm_type, **kw)
    check(F.lp_pool2d(gpu(x), norm_type, **kw), y, dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    check(F.lp_pool2d_backward(gpu(g), gpu(x), norm_type, **kw), F.lp_pool2d_backward(g, x, norm_type, **kw), dtype)


def test_cuda_pool_non_contiguous_and_empty(dtype, rng):
    x = distinct(rng, (3, 2, 9, 10), dtype).transpose(1, 0, 2, 3)[:, :, ::-1, :]
    y, s = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    gy_, gs = F.max_pool2d(gpu(x), 3, 2, 1, return_indices=True)
    same(gy_, y)
    same(gs, s)
    check(F.avg_pool2d(gpu(x), 3, 2, 1), F.avg_pool2d(x, 3, 2, 1), dtype)
    e = np.zeros((0, 3, 6, 6), dtype)
    ey, es = F.max_pool2d(gpu(e), 2, return_indices=True)
    assert ey.shape == es.shape == (0, 3, 3, 3)
    assert F.max_pool2d_backward(ey, es, e.shape).shape == e.shape
    assert F.avg_pool2d_backward(ey, e.shape, 2).shape == e.shape
    assert F.lp_pool2d(gpu(e), 2, 2).shape == (0, 3, 3, 3)


def test_cuda_bad_switch_is_the_cpus_error():
    s = np.zeros((2, 3, 3, 3), np.int64)
    s[1, 2, 0, 1] = 36
    g = np.zeros(s.shape)
    with pytest.raises(ValueError, match=r"got 36 at \(1, 2, 0, 1\)"):
        F.max_pool2d_backward(gpu(g), gpu(s), (2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"got 36 at \(1, 2, 0, 1\)"):
        F.max_unpool2d(gpu(g), gpu(s), 2)
    with pytest.raises(TypeError, match="max_pool2d_backward: switches: expected a cupy.ndarray like grad_output"):
        F.max_pool2d_backward(gpu(g), s, (2, 3, 6, 6))


@pytest.mark.parametrize("op", FAMILY_OPS["pool"])
def test_cuda_pool_check_op(op):
    """cnnkit.testing.check_op on CuPy arrays (the pools and max_unpool2d): every sample
    case, float32 and float64, forward and backward."""
    assert "forward and backward" in check_on_device(cupy, op)
