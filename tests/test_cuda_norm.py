"""dropout, batch_norm and local_response_norm on CuPy arrays, against the CPU path on
the same values (skipped without a GPU; tests/test_cuda_host_norm.py runs the same
kernels on the CPU). Dropout masks must equal the CPU's for a seed; running stats are
updated in place on the device.
"""

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F

from conftest import assert_close, random_array
from cuda_host.device import FAMILY_OPS, check_on_device

cupy = pytest.importorskip("cupy")
if not cnnkit.cuda.is_available():
    pytest.skip("no CUDA device (cupy.is_available() is False)", allow_module_level=True)


def gpu(a):
    return None if a is None else cupy.asarray(a)


def check(actual, expected, dtype):
    assert isinstance(actual, cupy.ndarray) and actual.flags.c_contiguous
    assert_close(cupy.asnumpy(actual), np.asarray(expected, np.float64), dtype)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("shape", [(), (7,), (4, 5, 6), (1 << 20) + 3], ids=str)
def test_cuda_dropout_mask_is_the_cpus(p, shape, rng, dtype):
    shape = shape if isinstance(shape, tuple) else (shape,)
    x = np.asarray(random_array(rng, shape, dtype))
    for seed in (123, 2**64 - 1):
        y, mask = F.dropout(gpu(x), p, seed=seed)
        ey, emask = F.dropout(x, p, seed=seed)
        assert isinstance(mask, cupy.ndarray) and mask.dtype == np.bool_
        np.testing.assert_array_equal(cupy.asnumpy(mask), emask)
        np.testing.assert_array_equal(cupy.asnumpy(y), ey)
    gy = np.asarray(random_array(rng, shape, dtype))
    np.testing.assert_array_equal(cupy.asnumpy(F.dropout_backward(gpu(gy), mask, p)),
                                  F.dropout_backward(gy, emask, p))
    y, none = F.dropout(gpu(x), p, training=False)
    assert none is None
    np.testing.assert_array_equal(cupy.asnumpy(y), x)
    np.testing.assert_array_equal(cupy.asnumpy(F.dropout_backward(gpu(gy), None, p)), gy)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (16, 8, 32, 32), (2, 5, 1, 1), (0, 3, 2, 2)], ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_cuda_batch_norm_matches_cpu(shape, training, affine, rng, dtype):
    c = shape[1]
    x = random_array(rng, shape, dtype) * 2 + 0.5
    gamma = random_array(rng, (c,), dtype) if affine else None
    beta = random_array(rng, (c,), dtype) if affine else None
    rm, rv = random_array(rng, (c,), dtype), (rng.random(c) + 0.5).astype(dtype)
    grm, grv = gpu(rm), gpu(rv)
    y, saved = F.batch_norm(gpu(x), gpu(gamma), gpu(beta), grm, grv, training=training, momentum=0.2, eps=1e-3)
    ey, esaved = F.batch_norm(x, gamma, beta, rm, rv, training=training, momentum=0.2, eps=1e-3)
    check(y, ey, dtype)
    check(grm, rm, dtype)  # updated in place on the device
    check(grv, rv, dtype)
    np.testing.assert_allclose(cupy.asnumpy(saved.mean), esaved.mean, rtol=1e-12, atol=1e-12)
    gy = random_array(rng, shape, dtype)
    got = F.batch_norm_backward(gpu(gy), saved)
    for a, e in zip(got, F.batch_norm_backward(gy, esaved)):
        if e is None:
            assert a is None
        else:
            check(a, e, dtype)


@pytest.mark.parametrize(
    "shape, size, alpha, beta, k",
    [((2, 7, 3, 4), 5, 1e-4, 0.75, 1.0), ((3, 5, 4), 3, 2.0, 1.0, 0.5), ((2, 4, 2, 3, 2), 3, 0.7, 0.6, 1.5),
     ((1, 6, 5, 5), 4, 1.0, 0.5, 1.0), ((8, 96, 27, 27), 5, 1e-4, 0.75, 2.0), ((1, 300, 230), 280, 1.0, 0.75, 1.0)],
    ids=str,
)
def test_cuda_lrn_matches_cpu(shape, size, alpha, beta, k, rng, dtype):
    x = rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-4, 4, shape)
    x = x.astype(dtype)
    gy = random_array(rng, shape, dtype)
    check(F.local_response_norm(gpu(x), size, alpha, beta, k), F.local_response_norm(x, size, alpha, beta, k), dtype)
    check(F.local_response_norm_backward(gpu(gy), gpu(x), size, alpha, beta, k),
          F.local_response_norm_backward(gy, x, size, alpha, beta, k), dtype)


def test_cuda_norm_errors_are_the_cpu_ones():
    def message(fn, *args, **kw):
        with pytest.raises((TypeError, ValueError)) as e:
            fn(*args, **kw)
        return e.type, str(e.value)

    x = np.zeros((4, 3, 2))
    cases = [
        (F.dropout, (x, 1.5), {"seed": 0}),
        (F.dropout, (x, 0.5), {"seed": -1}),
        (F.batch_norm, (np.zeros(4),), {}),
        (F.batch_norm, (x, None, None), {"training": False}),
        (F.batch_norm, (x, np.zeros(4)), {}),
        (F.local_response_norm, (x, 0), {}),
        (F.local_response_norm_backward, (np.zeros((4, 3, 3)), x, 2), {}),
    ]
    for fn, args, kw in cases:
        gargs = tuple(gpu(a) if isinstance(a, np.ndarray) else a for a in args)
        assert message(fn, *gargs, **kw) == message(fn, *args, **kw), fn.__name__
    with pytest.raises(ValueError, match=r"batch_norm: running_mean: expected a writeable, aligned C-contiguous array"):
        F.batch_norm(gpu(np.zeros((4, 3))), None, None, gpu(np.zeros(6))[::2], gpu(np.ones(3)))


@pytest.mark.parametrize("op", FAMILY_OPS["norm"])
def test_cuda_norm_check_op(op):
    """cnnkit.testing.check_op on CuPy arrays (dropout, batch_norm and local_response_norm): every sample
    case, float32 and float64, forward and backward."""
    assert "forward and backward" in check_on_device(cupy, op)
