"""The kernels of cuda/norm.cu run on the CPU through the backend (cnnkit.cuda.Backend
over NumPy and the host build, as tests/test_cuda_host.py): dropout (masks identical to
the CPU's for a seed, element for element, either dtype), batch_norm (training and eval,
running stats updated in place, the float64 statistics) and local_response_norm (direct
window sums: channels many orders apart) with their backwards, against cnnkit.reference
and the CPU path; layouts, empty dims, NaN, errors and dispatch.
"""

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F

import cuda_host
from cuda_host.device import FAMILY_OPS, check_on_device, standin_gpu
from cuda_host import error_of
from cnnkit import reference as ref
from conftest import assert_close, random_array
from test_norm import LRN_RTOL, _assert_lrn_close, _wide_range

SFX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


@pytest.fixture(scope="module")
def host():
    return cuda_host.host_module("norm")




KERNELS = {
    "dropout_mask_bits",
    *(f"{k}_{s}" for k in ("dropout_forward", "dropout_backward", "batch_norm_stats", "batch_norm_affine",
                           "batch_norm_backward_sums", "batch_norm_backward_input", "lrn_forward",
                           "lrn_backward_terms", "lrn_backward_input") for s in ("f32", "f64")),
}


def test_cuda_host_norm_every_kernel_is_tested(host):
    assert set(host.names) == KERNELS


# ---- dropout


def _splitmix64(seed, i):
    m = (1 << 64) - 1
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_cuda_host_dropout_generator_bits(host):
    index = np.array([0, 1, 2, 255, 256, 10**9, 2**40 + 7, 2**62], np.int64)
    for seed in (0, 99, 2**64 - 1):
        out = np.zeros(index.size, np.uint64)
        host.get_function("dropout_mask_bits")((1,), (32,), (out, index, np.int64(index.size), np.uint64(seed)))
        assert out.tolist() == [_splitmix64(seed, int(i)) for i in index]


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(), (7,), (4, 5, 6), (3, 301)], ids=str)
def test_cuda_host_dropout_mask_is_the_cpus(p, shape, rng, dtype, backend):
    x = np.asarray(random_array(rng, shape, dtype))
    for seed in (123, 2**64 - 1):
        y, mask = backend.dropout(x, p, True, seed)
        ey, emask = F.dropout(x, p, seed=seed)
        assert mask.dtype == np.bool_ and mask.shape == shape and y.flags.c_contiguous
        np.testing.assert_array_equal(mask, emask)
        np.testing.assert_array_equal(y, ey)  # the same product in the same dtype
        assert_close(y, ref.dropout(x, mask, p), dtype)
    gy = np.asarray(random_array(rng, shape, dtype))
    gx = backend.dropout_backward(gy, mask, p)
    np.testing.assert_array_equal(gx, F.dropout_backward(gy, mask, p))
    assert_close(gx, ref.dropout(gy, mask, p), dtype)


def test_cuda_host_dropout_grid_stride_and_dtypes(rng, tiny_grid, host):
    x = random_array(rng, (1500,), np.float64)
    _, m64 = tiny_grid.dropout(x, 0.3, True, 99)
    assert host.launches[-1][1:3] == ((2,), (256,))
    _, m32 = tiny_grid.dropout(x.astype(np.float32), 0.3, True, 99)
    np.testing.assert_array_equal(m64, m32)
    np.testing.assert_array_equal(m64, F.dropout(x, 0.3, seed=99)[1])
    g = random_array(rng, x.shape, np.float64)
    np.testing.assert_array_equal(tiny_grid.dropout_backward(g, m64, 0.3), F.dropout_backward(g, m64, 0.3))


def test_cuda_host_dropout_nan_eval_and_layouts(rng, dtype, backend, host):
    y, mask = backend.dropout(np.full(64, np.nan, dtype), 0.5, True, 3)
    assert not mask.all() and np.isnan(y).all()
    x = random_array(rng, (8, 9), dtype).T[::2]
    y, mask = backend.dropout(x, 0.5, True, 11)
    np.testing.assert_array_equal(mask, F.dropout(x, 0.5, seed=11)[1])
    g = random_array(rng, (5, 16), dtype)[:, ::2]
    assert_close(backend.dropout_backward(g, np.asfortranarray(mask), 0.5), ref.dropout(g, mask, 0.5), dtype)
    y, mask = backend.dropout(x, 0.5, False, None)
    assert mask is None and y is not x and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x)
    gx = backend.dropout_backward(g, None, 0.5)
    assert gx is not g and gx.flags.c_contiguous
    np.testing.assert_array_equal(gx, g)
    before = len(host.launches)
    y, mask = backend.dropout(np.zeros((0, 3), dtype), 0.5, True, 1)
    assert y.shape == mask.shape == (0, 3)
    assert backend.dropout_backward(np.zeros((0, 3), dtype), mask, 0.5).shape == (0, 3)
    assert len(host.launches) == before


def test_cuda_host_dropout_errors_are_the_cpu_ones(backend):
    x, g = np.zeros(3), np.zeros((2, 3))
    cases = [
        ("dropout", (x, 1.0, True, 0)),
        ("dropout", (x, float("nan"), True, 0)),
        ("dropout", (x, 0.5, True, -1)),
        ("dropout", (x, 0.5, True, 2**64)),
        ("dropout", (x, 0.5, True, 1.0)),
        ("dropout", (x, 0.5, True, True)),
        ("dropout", (np.zeros(3, np.int64), 0.5, True, 0)),
        ("dropout", ([0.0], 0.5, True, 0)),
        ("dropout_backward", (g, np.ones((2, 3)), 0.5)),
        ("dropout_backward", (g, [[True] * 3] * 2, 0.5)),
        ("dropout_backward", (g, np.ones((3, 2), bool), 0.5)),
        ("dropout_backward", (g, np.ones((2, 3), bool), 1.5)),
        ("dropout_backward", (np.zeros((2, 3), np.int32), np.ones((2, 3), bool), 0.5)),
    ]
    for op, args in cases:
        assert error_of(getattr(backend, op), *args) == error_of(getattr(cnnkit._C, op), *args), (op, args)


# ---- batch_norm

BN_SHAPES = [(4, 3), (2, 3, 5), (4, 3, 5, 6), (2, 5, 1, 1), (1, 2, 3, 3), (3, 4, 30, 30)]


def _bn_operands(rng, shape, dtype, affine=True):
    c = shape[1]
    x = random_array(rng, shape, dtype) * 2 + 0.5
    gamma = random_array(rng, (c,), dtype) if affine else None
    beta = random_array(rng, (c,), dtype) if affine else None
    rm = random_array(rng, (c,), dtype)
    rv = (rng.random(c) + 0.5).astype(dtype)
    return x, gamma, beta, rm, rv


def _bn(backend, x, gamma, beta, rm, rv, training, momentum=0.1, eps=1e-5):
    """backend.batch_norm as functional calls it: (y, BatchNormSaved)."""
    y, xc, mean, invstd = backend.batch_norm(x, gamma, beta, rm, rv, training, momentum, eps)
    return y, F.BatchNormSaved(xc, gamma, mean, invstd, training, beta is not None)


def _bn_backward(backend, gy, saved):
    return backend.batch_norm_backward(gy, *saved)


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_cuda_host_batch_norm(shape, training, affine, rng, dtype, backend):
    x, gamma, beta, rm, rv = _bn_operands(rng, shape, dtype, affine)
    rm0, rv0 = rm.copy(), rv.copy()
    crm, crv = rm.copy(), rv.copy()
    y, saved = _bn(backend, x, gamma, beta, rm, rv, training, 0.2, 1e-3)
    cy, csaved = F.batch_norm(x, gamma, beta, crm, crv, training=training, momentum=0.2, eps=1e-3)
    ey, erm, erv = ref.batch_norm(x, gamma, beta, rm0, rv0, training, 0.2, 1e-3)
    assert_close(y, ey, dtype)
    assert_close(y, cy.astype(np.float64), dtype)
    assert_close(rm, erm, dtype)  # updated in place
    assert_close(rv, erv, dtype)
    assert saved.mean.dtype == saved.invstd.dtype == np.float64 and saved.mean.shape == (shape[1],)
    np.testing.assert_allclose(saved.mean, csaved.mean, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(saved.invstd, csaved.invstd, rtol=1e-12)
    assert saved.input is x  # C-contiguous input: saved itself
    gy = random_array(rng, shape, dtype)
    gx, gg, gb = _bn_backward(backend, gy, saved)
    egx, egg, egb = ref.batch_norm_grads(gy, x, gamma, training, 1e-3, rm0, rv0)
    cgx, cgg, cgb = F.batch_norm_backward(gy, csaved)
    assert_close(gx, egx, dtype)
    assert_close(gx, cgx.astype(np.float64), dtype)
    if affine:
        assert_close(gg, egg, dtype)
        assert_close(gb, egb, dtype)
        assert_close(gg, cgg.astype(np.float64), dtype)
    else:
        assert gg is None and gb is None


def test_cuda_host_batch_norm_optional_operands(rng, dtype, backend):
    x, gamma, beta, rm, rv = _bn_operands(rng, (5, 4, 3), dtype)
    y, saved = _bn(backend, x, gamma, None, None, None, True)
    assert_close(y, ref.batch_norm(x, gamma, None)[0], dtype)
    gy = random_array(rng, x.shape, dtype)
    gx, gg, gb = _bn_backward(backend, gy, saved)
    egx, egg, _ = ref.batch_norm_grads(gy, x, gamma)
    assert gb is None
    assert_close(gx, egx, dtype)
    assert_close(gg, egg, dtype)
    # only running_var given: running_mean absent is never touched
    rv0 = rv.copy()
    y, _ = _bn(backend, x, None, beta, None, rv, True, 0.3)
    ey, _, erv = ref.batch_norm(x, None, beta, None, rv0, True, 0.3)
    assert_close(y, ey, dtype)
    assert_close(rv, erv, dtype)


def test_cuda_host_batch_norm_grid_stride_over_channels(rng, tiny_grid, host):
    x, gamma, beta, rm, rv = _bn_operands(rng, (3, 7, 4, 5), np.float64)
    rm0, rv0 = rm.copy(), rv.copy()
    y, saved = _bn(tiny_grid, x, gamma, beta, rm, rv, True)
    ey, erm, erv = ref.batch_norm(x, gamma, beta, rm0, rv0)
    assert_close(y, ey, np.float64)
    assert_close(rm, erm, np.float64)
    gy = random_array(rng, x.shape, np.float64)
    gx, gg, gb = _bn_backward(tiny_grid, gy, saved)
    stats = [launch for launch in host.launches[-4:] if "sums" in launch[0]]
    assert stats and stats[0][1:3] == ((2,), (256,))
    for a, e in zip((gx, gg, gb), ref.batch_norm_grads(gy, x, gamma)):
        assert_close(a, e, np.float64)


def test_cuda_host_batch_norm_large_mean_float32(rng, backend):
    x = (rng.standard_normal((16, 4, 8, 8)) + 1e4).astype(np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    y, saved = _bn(backend, x, None, None, rm, rv, True, 1.0, 0.0)
    ey, erm, erv = ref.batch_norm(x, None, None, np.zeros(4), np.ones(4), True, 1.0, 0.0)
    np.testing.assert_allclose(y, ey, rtol=0, atol=2e-5)
    np.testing.assert_allclose(rv, erv, rtol=1e-5)
    np.testing.assert_allclose(rm, erm, rtol=1e-7)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(_bn_backward(backend, gy, saved)[0], ref.batch_norm_grads(gy, x, None, eps=0.0)[0],
                               rtol=0, atol=1e-4)


def test_cuda_host_batch_norm_non_contiguous_and_nan(rng, dtype, backend):
    x, gamma, beta, rm, rv = _bn_operands(rng, (4, 6, 5, 8), dtype)
    x = x[:, ::2, :, ::3]
    gamma, beta, rm, rv = gamma[::2], beta[::2], rm[::2].copy(), rv[::2].copy()
    rm0, rv0 = rm.copy(), rv.copy()
    y, saved = _bn(backend, x, gamma, beta, rm, rv, True)
    ey, erm, _ = ref.batch_norm(x, gamma, beta, rm0, rv0)
    assert_close(y, ey, dtype)
    assert_close(rm, erm, dtype)
    assert saved.input.flags.c_contiguous
    gy = np.asfortranarray(random_array(rng, x.shape, dtype))
    assert_close(_bn_backward(backend, gy, saved)[0], ref.batch_norm_grads(gy, x, gamma)[0], dtype)
    # eval only reads the running stats: any layout will do
    y, _ = _bn(backend, x, gamma, beta, np.repeat(rm, 2)[::2], np.repeat(rv, 2)[::2], False)
    assert_close(y, ref.batch_norm(x, gamma, beta, rm, rv, training=False)[0], dtype)
    # a NaN poisons its channel's statistics only, as on the CPU
    xn = x.copy()
    xn[1, 0, 2, 1] = np.nan
    y, saved = _bn(backend, xn, gamma, beta, None, None, True)
    cy, _ = F.batch_norm(xn, gamma, beta)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(cy))
    assert np.isnan(y[:, 0]).all() and not np.isnan(y[:, 1:]).any()
    gx, gg, _ = _bn_backward(backend, gy, saved)
    np.testing.assert_array_equal(np.isnan(gx), np.isnan(F.batch_norm_backward(gy, F.batch_norm(xn, gamma, beta)[1])[0]))


def test_cuda_host_batch_norm_empty(dtype, backend, host):
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    for training in (True, False):
        for shape in [(0, 3, 2, 2), (2, 3, 0)]:
            y, saved = _bn(backend, np.zeros(shape, dtype), None, np.ones(3, dtype), rm, rv, training)
            cy, csaved = F.batch_norm(np.zeros(shape, dtype), None, np.ones(3, dtype), rm.copy(), rv.copy(), training=training)
            assert y.shape == shape
            np.testing.assert_array_equal(saved.mean, csaved.mean)
            np.testing.assert_array_equal(saved.invstd, csaved.invstd)
            gx, gg, gb = _bn_backward(backend, np.zeros(shape, dtype), saved)
            assert gx.shape == shape and gg is None
            np.testing.assert_array_equal(gb, 0.0)
    np.testing.assert_array_equal(rm, 0.0)  # an empty batch leaves the running stats alone
    np.testing.assert_array_equal(rv, 1.0)
    before = len(host.launches)
    y, saved = _bn(backend, np.zeros((4, 0, 3), dtype), None, None, None, None, True)
    assert y.shape == (4, 0, 3) and saved.mean.shape == (0,)
    assert _bn_backward(backend, y, saved)[0].shape == (4, 0, 3)
    assert len(host.launches) == before


def test_cuda_host_batch_norm_errors_are_the_cpu_ones(backend):
    x, c3 = np.zeros((4, 3, 2, 2)), np.zeros(3)
    ro = np.ones(3)
    ro.flags.writeable = False
    cases = [
        (np.zeros(4), None, None, None, None, True, 0.1, 1e-5),
        (x, np.zeros(4), c3, None, None, True, 0.1, 1e-5),
        (x, c3, np.zeros((1, 3)), None, None, True, 0.1, 1e-5),
        (x, None, None, np.zeros(2), np.ones(3), True, 0.1, 1e-5),
        (x, None, None, np.zeros(3), np.ones(4), True, 0.1, 1e-5),
        (np.zeros((1, 3)), None, None, None, None, True, 0.1, 1e-5),
        (x, None, None, None, None, False, 0.1, 1e-5),
        (x, None, None, c3, None, False, 0.1, 1e-5),
        (x, None, None, None, None, True, 0.1, -1.0),
        (np.zeros((4, 3)), None, None, np.zeros(3, np.float32), np.ones(3), True, 0.1, 1e-5),
        (np.zeros((4, 3)), None, None, np.zeros(6)[::2], np.ones(3), True, 0.1, 1e-5),
        (np.zeros((4, 3)), None, None, np.zeros(3), ro, True, 0.1, 1e-5),
        (np.zeros((4, 3)), None, None, np.frombuffer(bytearray(25), np.float64, 3, 1), np.ones(3), True, 0.1, 1e-5),
        (np.zeros((4, 3)), None, None, np.zeros(3), [1.0, 1.0, 1.0], True, 0.1, 1e-5),
        (np.zeros((4, 3), np.int64), None, None, None, None, True, 0.1, 1e-5),
        (np.zeros((4, 3)), np.ones(3, np.float32), None, None, None, True, 0.1, 1e-5),
    ]
    for args in cases:
        assert error_of(backend.batch_norm, *args) == error_of(cnnkit._C.batch_norm, *args), args
    x = np.zeros((4, 3)) + np.arange(4)[:, None]
    _, saved = F.batch_norm(x, None, None)
    bcases = [
        (np.zeros((3, 4)), *saved),
        (np.zeros((4, 3), np.float32), *saved),
        (np.zeros((4, 3)), saved.input, np.ones(2), *saved[2:]),
        (np.zeros((4, 3)), saved.input, None, np.zeros(2), *saved[3:]),
        (np.zeros((4, 3)), saved.input, None, saved.mean, "x", *saved[4:]),
    ]
    for args in bcases:
        assert error_of(backend.batch_norm_backward, *args) == error_of(cnnkit._C.batch_norm_backward, *args), args


# ---- local_response_norm

LRN_CASES = [
    ((2, 7, 3, 4), 5, 1e-4, 0.75, 1.0),
    ((2, 7, 3, 4), 2, 0.5, 0.75, 2.0),
    ((1, 6, 5, 5), 4, 1.0, 0.5, 1.0),
    ((3, 5, 4), 3, 2.0, 1.0, 0.5),
    ((2, 4, 2, 3, 2), 3, 0.7, 0.6, 1.5),
    ((2, 3, 4, 4), 7, 1.5, 0.75, 1.0),  # window wider than the channels
    ((2, 8, 4, 4), 1, 1.0, 0.3, 1.0),
]


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_CASES, ids=str)
def test_cuda_host_lrn(shape, size, alpha, beta, k, rng, dtype, backend):
    x = random_array(rng, shape, dtype) * 2
    y = backend.local_response_norm(x, size, alpha, beta, k)
    assert y.flags.c_contiguous
    assert_close(y, ref.local_response_norm(x, size, alpha, beta, k), dtype)
    assert_close(y, F.local_response_norm(x, size, alpha, beta, k).astype(np.float64), dtype)
    gy = random_array(rng, shape, dtype)
    gx = backend.local_response_norm_backward(gy, x, size, alpha, beta, k)
    assert_close(gx, ref.local_response_norm_backward(gy, x, size, alpha, beta, k), dtype)
    assert_close(gx, F.local_response_norm_backward(gy, x, size, alpha, beta, k).astype(np.float64), dtype)


# As test_norm's LRN_WIDE_CASES: channels many orders apart, every special exponent.
LRN_WIDE_CASES = [
    ((2, 9, 7), 1, 1.0, 0.75, 0.5),
    ((2, 9, 7), 2, 1.0, 0.75, 1.0),
    ((2, 9, 7), 3, 0.5, 0.5, 1.0),
    ((2, 9, 7), 4, 2.0, 1.0, 0.5),
    ((2, 9, 7), 5, 1e-4, 0.75, 2.0),
    ((2, 9, 7), 6, 1.0, 0.6, 1.0),
    ((2, 9, 7), 7, 1.0, 0.75, 1.0),
    ((3, 6, 3, 5), 2, 1.0, 0.5, 0.5),
    ((2, 4, 3, 5), 7, 1.0, 0.75, 1.0),
    ((2, 3, 2, 2, 3), 6, 0.7, 1.3, 1.5),
]


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_WIDE_CASES, ids=str)
def test_cuda_host_lrn_channels_many_orders_apart(shape, size, alpha, beta, k, rng, dtype, backend):
    x = _wide_range(rng, shape, -8, 8).astype(dtype)
    gy = _wide_range(rng, shape, -2, 2).astype(dtype)
    y = backend.local_response_norm(x, size, alpha, beta, k)
    gx = backend.local_response_norm_backward(gy, x, size, alpha, beta, k)
    assert y.dtype == gx.dtype == np.dtype(dtype)
    _assert_lrn_close(x, gy, y, gx, size, alpha, beta, k, LRN_RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("k", [0.0, 1e-30])
@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_cuda_host_lrn_float32_windows_beyond_float_range(k, beta, rng, backend):
    rtol = LRN_RTOL[np.dtype(np.float32)]
    for lo, hi in [(-30, -20), (20, 30)]:
        x = _wide_range(rng, (2, 6, 4), lo, hi).astype(np.float32)
        y = backend.local_response_norm(x, 3, 1.0, beta, k)
        np.testing.assert_allclose(y, ref.local_response_norm(x, 3, 1.0, beta, k), rtol=rtol, atol=0)
    for lo, hi in [(-18, -12), (12, 18)]:
        x = _wide_range(rng, (2, 6, 4), lo, hi).astype(np.float32)
        gy = _wide_range(rng, x.shape, -1, 1).astype(np.float32)
        y = backend.local_response_norm(x, 3, 1.0, beta, k)
        gx = backend.local_response_norm_backward(gy, x, 3, 1.0, beta, k)
        _assert_lrn_close(x, gy, y, gx, 3, 1.0, beta, k, rtol)


def test_cuda_host_lrn_wide_window_grid_stride_layouts_empty(rng, dtype, tiny_grid, host):
    x = _wide_range(rng, (1, 40, 23), -4, 4).astype(dtype)
    gy = _wide_range(rng, x.shape, -1, 1).astype(dtype)
    y = tiny_grid.local_response_norm(x, 33, 1.0, 0.75, 1.0)
    assert host.launches[-1][1] == (2,)
    gx = tiny_grid.local_response_norm_backward(gy, x, 33, 1.0, 0.75, 1.0)
    _assert_lrn_close(x, gy, y, gx, 33, 1.0, 0.75, 1.0, LRN_RTOL[np.dtype(dtype)])
    x = random_array(rng, (3, 8, 6, 10), dtype)[:, ::2, :, 1::3]
    assert_close(tiny_grid.local_response_norm(x, 3, 1.0, 0.75, 1.0), ref.local_response_norm(x, 3, 1.0), dtype)
    gy = np.asfortranarray(random_array(rng, x.shape, dtype))
    assert_close(tiny_grid.local_response_norm_backward(gy, x, 3, 1.0, 0.75, 1.0),
                 ref.local_response_norm_backward(gy, x, 3, 1.0), dtype)
    before = len(host.launches)
    for shape in [(0, 4, 3, 3), (2, 0, 3), (2, 3, 0)]:
        empty = np.zeros(shape, dtype)
        assert tiny_grid.local_response_norm(empty, 3, 1e-4, 0.75, 1.0).shape == shape
        assert tiny_grid.local_response_norm_backward(empty, empty, 3, 1e-4, 0.75, 1.0).shape == shape
    assert len(host.launches) == before


def test_cuda_host_lrn_nan_as_cpu(dtype, backend):
    x = np.arange(24, dtype=dtype).reshape(1, 6, 4) / 7
    x[0, 2, 1] = np.nan
    y = backend.local_response_norm(x, 3, 1.0, 0.75, 1.0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(F.local_response_norm(x, 3, 1.0)))
    gx = backend.local_response_norm_backward(np.ones_like(x), x, 3, 1.0, 0.75, 1.0)
    np.testing.assert_array_equal(np.isnan(gx), np.isnan(F.local_response_norm_backward(np.ones_like(x), x, 3, 1.0)))


def test_cuda_host_lrn_errors_are_the_cpu_ones(backend):
    x = np.zeros((2, 3, 4))
    cases = [
        ("local_response_norm", (x, 0, 1e-4, 0.75, 1.0)),
        ("local_response_norm", (np.zeros((2, 3)), 2, 1e-4, 0.75, 1.0)),
        ("local_response_norm", (np.zeros((2, 3, 4), np.int64), 2, 1e-4, 0.75, 1.0)),
        ("local_response_norm", ([1.0], 2, 1e-4, 0.75, 1.0)),
        ("local_response_norm_backward", (x, x, 0, 1e-4, 0.75, 1.0)),
        ("local_response_norm_backward", (np.zeros((2, 3, 5)), x, 2, 1e-4, 0.75, 1.0)),
        ("local_response_norm_backward", (x.astype(np.float32), x, 2, 1e-4, 0.75, 1.0)),
        ("local_response_norm_backward", (x, np.zeros((2, 3)), 2, 1e-4, 0.75, 1.0)),
    ]
    for op, args in cases:
        assert error_of(getattr(backend, op), *args) == error_of(getattr(cnnkit._C, op), *args), (op, args)


# ---- dispatch (no GPU needed)


class FakeCudaArray:
    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3}


def test_cuda_dispatch_norm_ops_mixed_operands_raise_type_error():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match=r"^dropout_backward: mask: expected a cupy.ndarray like grad_output, got numpy.ndarray$"):
        F.dropout_backward(FakeCudaArray(), np.ones(3, bool), 0.5)
    with pytest.raises(TypeError, match=r"^batch_norm: gamma: expected a cupy.ndarray like input, got numpy.ndarray$"):
        F.batch_norm(FakeCudaArray(), np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"^batch_norm: input: expected a cupy.ndarray like running_mean"):
        F.batch_norm(x, None, None, FakeCudaArray(), FakeCudaArray())
    _, saved = F.batch_norm(x)
    with pytest.raises(TypeError, match=r"^batch_norm_backward: input: expected a cupy.ndarray like grad_output"):
        F.batch_norm_backward(FakeCudaArray(), saved)
    with pytest.raises(TypeError, match=r"^local_response_norm_backward: input: expected a cupy.ndarray like grad_output"):
        F.local_response_norm_backward(FakeCudaArray(), x, 3)


def test_cuda_dispatch_norm_ops_numpy_path_unchanged(rng):
    x = random_array(rng, (2, 4, 3), np.float64)
    y, mask = F.dropout(x, 0.5, seed=1)
    assert type(y) is np.ndarray and mask.dtype == np.bool_
    y, saved = F.batch_norm(x)
    assert isinstance(saved, F.BatchNormSaved) and type(saved.mean) is np.ndarray
    assert type(F.batch_norm_backward(y, saved)[0]) is np.ndarray
    assert type(F.local_response_norm(x, 3)) is np.ndarray


# ---- cnnkit.testing: its samples and reference checks, through dispatch on the stand-in GPU


@pytest.mark.parametrize("op", FAMILY_OPS["norm"])
def test_cuda_host_norm_check_op(op, monkeypatch):
    """check_op over dropout, batch_norm and local_response_norm: every sample case, float32 and float64, forward and backward."""
    with standin_gpu(monkeypatch, max_blocks=2) as gpu:  # few blocks: each costs a barrier round on the host
        assert "forward and backward" in check_on_device(gpu, op)
