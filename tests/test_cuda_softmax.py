"""softmax, log_softmax, cross_entropy and mse_loss (and their backwards) on CuPy
arrays against the CPU path on the same values; skipped without a GPU
(tests/test_cuda_host_softmax.py runs the same kernels on the CPU)."""

import re

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F

from conftest import assert_close, random_array
from cuda_host.device import FAMILY_OPS, check_on_device

cupy = pytest.importorskip("cupy")
if not cnnkit.cuda.is_available():
    pytest.skip("no CUDA device (cupy.is_available() is False)", allow_module_level=True)

NAMES = ["softmax", "log_softmax"]
REDUCTIONS = ["mean", "sum", "none"]


def gpu(a):
    return cupy.asarray(a)


def check(actual, expected, dtype):
    assert isinstance(actual, cupy.ndarray), type(actual)
    assert actual.flags.c_contiguous
    assert_close(cupy.asnumpy(actual), np.asarray(expected, np.float64), dtype)


def _logits(rng, shape, dtype, scale=3.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype)


CASES = [((5,), 0), ((3, 1), 1), ((128, 10), 1), ((2, 5, 300), 1), ((7, 600), 0), ((4, 3000), -1),
         ((3, 40, 700), 1), ((2, 3, 4, 5), 2), ((1000, 64), 0), ((4, 5000, 3), 1), ((2, 3), -2)]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape, dim", CASES, ids=str)
def test_cuda_softmax_matches_cpu(name, shape, dim, rng, dtype):
    x = _logits(rng, shape, dtype)
    y = getattr(F, name)(x, dim)
    check(getattr(F, name)(gpu(x), dim), y, dtype)
    gy = random_array(rng, shape, dtype)
    bwd = getattr(F, f"{name}_backward")
    check(bwd(gpu(gy), gpu(y), dim), bwd(gy, y, dim), dtype)


@pytest.mark.parametrize("name", NAMES)
def test_cuda_softmax_special_values(name, dtype):
    x = np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0, -1e4], [-np.inf, 1.0, 2.0, 0.0], [np.nan, 0.0, 1.0, 2.0],
                  [np.inf, 0.0, 1.0, 2.0], [-np.inf] * 4], dtype)
    for xs, dim in ((x, 1), (np.ascontiguousarray(x.T), 0)):
        expected = getattr(F, name)(xs, dim)
        y = cupy.asnumpy(getattr(F, name)(gpu(xs), dim))
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-30)
    g = F.log_softmax_backward(gpu(np.ones(2, dtype)), gpu(np.array([0.0, 1000.0], dtype)))
    np.testing.assert_array_equal(cupy.asnumpy(g), [-1.0, -np.inf])


@pytest.mark.parametrize("name", NAMES)
def test_cuda_softmax_zero_dim_non_contiguous_and_empty(name, rng, dtype):
    fwd, bwd = getattr(F, name), getattr(F, f"{name}_backward")
    y = fwd(gpu(np.array(2.5, dtype)), 0)
    assert isinstance(y, cupy.ndarray) and y.shape == () and float(y) == (1.0 if name == "softmax" else 0.0)
    base = _logits(rng, (6, 10, 8), dtype)
    for view in (lambda a: a[:, ::3, 1::2], lambda a: a.transpose(2, 0, 1)):
        x, xg = view(base), view(gpu(base))
        assert not xg.flags.c_contiguous
        for dim in (0, 1, 2):
            check(fwd(xg, dim), fwd(x, dim), dtype)
    for shape in ((0, 5), (3, 0), (2, 0, 3)):
        z = cupy.zeros(shape, dtype)
        assert fwd(z, 1).shape == shape and bwd(z, z, 1).shape == shape


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n, c", [(1, 1), (8, 10), (33, 3), (200, 300), (5, 5000), (70000, 10)])
def test_cuda_cross_entropy_matches_cpu(reduction, n, c, rng, dtype):
    x = _logits(rng, (n, c), dtype)
    t = rng.integers(0, c, n)
    loss = F.cross_entropy(gpu(x), gpu(t), reduction)
    assert loss.shape == (() if reduction != "none" else (n,)) and loss.dtype == dtype
    check(loss, F.cross_entropy(x, t, reduction), dtype)
    check(F.cross_entropy_backward(gpu(x), gpu(t), reduction), F.cross_entropy_backward(x, t, reduction), dtype)


def test_cuda_cross_entropy_targets_large_logits_and_empty(rng, dtype):
    x = _logits(rng, (6, 4), dtype)
    for td in (np.int8, np.uint8, np.int32, np.uint64):
        t = rng.integers(0, 4, 6).astype(td)
        check(F.cross_entropy(gpu(x), gpu(t)), F.cross_entropy(x, t), dtype)
    big = np.array([[1e4, 1e4 - 3.0, -1e4], [-5e3, 5e3, 0.0]], dtype)
    t = np.array([1, 0])
    np.testing.assert_allclose(cupy.asnumpy(F.cross_entropy(gpu(big), gpu(t), "none")),
                               F.cross_entropy(big, t, "none"), rtol=1e-6)
    mean = F.cross_entropy(cupy.zeros((0, 4), dtype), cupy.zeros(0, cupy.int64))
    assert mean.shape == () and mean.dtype == dtype and bool(cupy.isnan(mean))
    assert float(F.cross_entropy(cupy.zeros((0, 4), dtype), cupy.zeros(0, cupy.int64), "sum")) == 0.0


def test_cuda_cross_entropy_errors_are_the_cpu_ones():
    def message(fn, *args):
        with pytest.raises((TypeError, ValueError)) as e:
            fn(*args)
        return e.type, str(e.value)

    x = np.zeros((100000, 4))
    for bad in ({5: 4}, {99999: -1}, {70000: 7, 65000: 9}):
        t = np.arange(100000) % 4
        for i, v in bad.items():
            t[i] = v
        for op in (F.cross_entropy, F.cross_entropy_backward):
            assert message(op, gpu(x), gpu(t)) == message(op, x, t)
    x, t = np.zeros((3, 4)), np.array([0, 1, 2])
    for args in ((x, t.astype(np.float64)), (x, np.array([0, 1])), (x[None], t), (x.astype(np.float32), t[:, None])):
        assert message(F.cross_entropy, *map(gpu, args)) == message(F.cross_entropy, *args)
    assert message(F.cross_entropy, gpu(x), [0, 1, 2]) == (
        TypeError, "cross_entropy: target: expected a cupy.ndarray of integer class indices, got list")
    with pytest.raises(TypeError, match=re.escape("cross_entropy: target: expected a cupy.ndarray like input")):
        F.cross_entropy(gpu(x), t)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(), (7,), (3, 4, 5), (300, 300), ((1 << 21) + 3,)], ids=str)
def test_cuda_mse_loss_matches_cpu(reduction, shape, rng, dtype):
    x, t = np.asarray(random_array(rng, shape, dtype)), np.asarray(random_array(rng, shape, dtype))
    check(F.mse_loss(gpu(x), gpu(t), reduction), F.mse_loss(x, t, reduction), dtype)
    check(F.mse_loss_backward(gpu(x), gpu(t), reduction), F.mse_loss_backward(x, t, reduction), dtype)


def test_cuda_mse_loss_empty_and_errors(dtype):
    e = cupy.zeros((0, 3), dtype)
    assert bool(cupy.isnan(F.mse_loss(e, e))) and float(F.mse_loss(e, e, "sum")) == 0.0
    with pytest.raises(ValueError, match=re.escape("mse_loss: target: expected shape (3, 4), got (4,)")):
        F.mse_loss(cupy.zeros((3, 4)), cupy.zeros(4))
    with pytest.raises(TypeError, match="mse_loss: target: expected dtype float64 to match input, got float32"):
        F.mse_loss(cupy.zeros((3, 4)), cupy.zeros((3, 4), cupy.float32))


@pytest.mark.parametrize("op", FAMILY_OPS["softmax"])
def test_cuda_softmax_check_op(op):
    """cnnkit.testing.check_op on CuPy arrays (the softmax family and the losses): every sample
    case, float32 and float64, forward and backward."""
    assert "forward and backward" in check_on_device(cupy, op)
