"""The kernels of cuda/pool.cu run on the CPU through the backend (cnnkit.cuda.Backend
over NumPy and the host build, as tests/test_cuda_host.py): max_pool2d with switches
(ties, NaN, padding, dilation, ceil_mode), its backward through the switches (equal to
the CPU's element for element: same additions in the same order), max_unpool2d (last
duplicate wins) and its backward, avg_pool2d (divisors) and lp_pool2d (every norm type)
with their gather backwards, against cnnkit.reference and the CPU path; layouts,
empty batches, every error of tests/test_pool.py's tables, and dispatch.
"""

import numpy as np
import pytest

from cnnkit import _dispatch
from cnnkit import functional as F
from cnnkit.cuda import Backend

import cuda_host
from cuda_host.device import FAMILY_OPS, check_on_device, standin_gpu
from cnnkit import reference as ref
from conftest import assert_close
from test_pool import (BACKWARD_ERRORS, CASES, INF, POOL_ERRORS, UNPOOL_ERRORS, PoolCase, distinct, lp_input, ties)

KERNELS = {
    "switches_first_bad", "switches_report", "max_unpool2d_winners",
    *(f"{k}_{s}" for k in ("max_pool2d_forward", "max_pool2d_backward", "max_unpool2d_forward",
                           "max_unpool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
                           "lp_pool2d_forward", "lp_pool2d_backward_coef", "lp_pool2d_backward_input",
                           "lp_pool2d_switches", "lp_pool2d_backward_inf") for s in ("f32", "f64")),
}


@pytest.fixture(scope="module")
def host():
    return cuda_host.host_module("pool")


@pytest.fixture(scope="module")
def backends(host):
    """The backend as on CuPy, and one whose grids are capped at 2 blocks (every
    grid-stride loop, over elements or planes, loops)."""
    return Backend(np, cuda_host.host_module), Backend(np, cuda_host.host_module, max_blocks=2)


@pytest.fixture(params=["grid", "tiny_grid"])
def gpu(request, backends, monkeypatch):
    """cnnkit.functional with every dispatched op on the host-run backend: the
    functional layer's normalisation, then the backend method, as for CuPy operands."""
    b = backends[request.param == "tiny_grid"]
    monkeypatch.setattr(_dispatch, "call", lambda op, cpu, **args: getattr(b, op)(*args.values()))
    return F


_REAL_CALL = _dispatch.call


def cpu(fn, *args, **kwargs):
    """fn (a cnnkit.functional op) on the CPU path, inside a test that put the backend in."""
    patched = _dispatch.call
    _dispatch.call = _REAL_CALL
    try:
        return fn(*args, **kwargs)
    finally:
        _dispatch.call = patched


def test_cuda_host_pool_every_kernel_is_tested(host):
    assert set(host.names) == KERNELS


def _same(actual, expected):
    assert type(actual) is np.ndarray and actual.flags.c_contiguous
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


# ---- sweeps: the CPU tests' random cases (every 12th), against the reference and the CPU


SWEEP = [pytest.param(c, id=f"{i:03d}-{c}") for i, c in list(enumerate(CASES))[::12]]


def _cpu_results(case, x, xl, gy_max, gy_avg, gy_lp, dtype):
    y, s = F.max_pool2d(x, return_indices=True, **case.max_kwargs())
    return dict(
        max=(y, s), max_back=F.max_pool2d_backward(gy_max, s, x.shape),
        avg=F.avg_pool2d(x, **case.avg_kwargs()),
        avg_back=F.avg_pool2d_backward(gy_avg, x.shape, **case.avg_kwargs()),
        lp=F.lp_pool2d(xl, case.norm_type, **case.lp_kwargs()),
        lp_back=F.lp_pool2d_backward(gy_lp, xl, case.norm_type, **case.lp_kwargs()),
    )


@pytest.mark.parametrize("case", SWEEP)
def test_cuda_host_pool_sweep(case, dtype, rng, backends, monkeypatch):
    x = distinct(rng, case.x_shape, dtype)
    xl = lp_input(rng, case, dtype)
    y_ref, s_ref = ref.max_pool2d(x, **case.max_kwargs(), return_indices=True)
    gy_max = rng.standard_normal(y_ref.shape).astype(dtype)
    a_ref = ref.avg_pool2d(x, **case.avg_kwargs())
    gy_avg = rng.standard_normal(a_ref.shape).astype(dtype)
    l_ref = ref.lp_pool2d(xl, case.norm_type, **case.lp_kwargs())
    gy_lp = rng.standard_normal(l_ref.shape).astype(dtype)
    expected = _cpu_results(case, x, xl, gy_max, gy_avg, gy_lp, dtype)
    for b in backends:
        monkeypatch.setattr(_dispatch, "call", lambda op, cpu, **args: getattr(b, op)(*args.values()))
        got = _cpu_results(case, x, xl, gy_max, gy_avg, gy_lp, dtype)
        y, s = got["max"]
        _same(y, expected["max"][0])
        _same(s, s_ref)
        _same(s, expected["max"][1])
        assert_close(y, y_ref, dtype)
        # The same additions in the same order as the CPU's scatter.
        _same(got["max_back"], expected["max_back"])
        assert_close(got["max_back"], ref.max_pool2d_backward(gy_max, s_ref, x.shape), dtype)
        assert_close(got["avg"], a_ref, dtype)
        assert_close(got["avg"], expected["avg"], dtype)
        g_ref = ref.avg_pool2d_backward(gy_avg, x.shape, **case.avg_kwargs())
        assert_close(got["avg_back"], g_ref, dtype)
        assert_close(got["avg_back"], expected["avg_back"], dtype)
        assert_close(got["lp"], l_ref, dtype)
        assert_close(got["lp"], expected["lp"], dtype)
        assert_close(got["lp_back"], ref.lp_pool2d_backward(gy_lp, xl, case.norm_type, **case.lp_kwargs()), dtype)
        assert_close(got["lp_back"], expected["lp_back"], dtype)


# ---- max pooling: ties, NaN, padding, dilation, ceil_mode


MAX_CASES = [
    PoolCase(2, 3, 9, 11, 3, 2, 1, 1, True),
    PoolCase(1, 2, 8, 13, (3, 2), (1, 2), (1, 1), (2, 3), False),
    PoolCase(2, 1, 7, 7, 2, None, 1, 1, True),
    PoolCase(1, 1, 5, 40, (1, 4), (1, 3), (0, 2), (1, 2), True),
]


@pytest.mark.parametrize("case", MAX_CASES, ids=str)
@pytest.mark.parametrize("nan_fraction", [0.0, 0.2])
def test_cuda_host_max_pool2d_ties_and_nan_are_the_cpus(case, nan_fraction, dtype, rng, gpu):
    x = ties(rng, case.x_shape, dtype, nan_fraction)
    y, s = gpu.max_pool2d(x, return_indices=True, **case.max_kwargs())
    ye, se = cpu(F.max_pool2d, x, return_indices=True, **case.max_kwargs())
    _same(y, ye)
    _same(s, se)
    y_ref, s_ref = ref.max_pool2d(x, **case.max_kwargs(), return_indices=True)
    _same(s, s_ref)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))  # NaN positions included
    _same(gpu.max_pool2d(x, **case.max_kwargs()), y)  # without switches: the same maxima
    gy = rng.standard_normal(y.shape).astype(dtype)
    _same(gpu.max_pool2d_backward(gy, s, x.shape), cpu(F.max_pool2d_backward, gy, s, x.shape))


def test_cuda_host_max_pool2d_rules(gpu):
    x = np.array([[[[5.0, 3.0, 2.0, 3.0], [0.0, 5.0, 5.0, 1.0]]]])
    y, s = gpu.max_pool2d(x, 2, return_indices=True)
    assert y.tolist() == [[[[5.0, 5.0]]]] and s.tolist() == [[[[0, 6]]]]
    nan = np.array([[[[1.0, np.nan], [np.nan, 9.0]]]])
    y, s = gpu.max_pool2d(nan, 2, return_indices=True)
    assert np.isnan(y).all() and s.tolist() == [[[[2]]]]  # the last NaN
    neg = np.full((1, 1, 3, 3), -7.0)
    y, s = gpu.max_pool2d(neg, 3, stride=2, padding=1, return_indices=True)
    assert (y == -7).all() and s.tolist() == [[[[0, 1], [3, 4]]]]  # padding never wins
    inf = np.full((1, 1, 2, 2), -np.inf)
    y, s = gpu.max_pool2d(inf, 2, return_indices=True)
    assert y.tolist() == [[[[-np.inf]]]] and s.tolist() == [[[[0]]]]


# ---- the switch kernels


@pytest.mark.parametrize("pattern", ["pool", "random", "one-target", "reversed"])
def test_cuda_host_max_pool2d_backward_equals_the_cpu(pattern, dtype, rng, gpu):
    """Planes of 21 x 19 = 399 switches: two 256-switch chunks per plane, targets
    repeated within and across chunks; the result equals the CPU's bit for bit."""
    x = rng.standard_normal((2, 3, 23, 21)).astype(dtype)
    _, s = cpu(F.max_pool2d, x, 3, stride=1, return_indices=True)
    plane = 23 * 21
    if pattern == "random":
        s = rng.integers(0, 40, s.shape)
    elif pattern == "one-target":
        s = np.full(s.shape, plane - 1, np.int64)
    elif pattern == "reversed":
        s = np.ascontiguousarray(s[..., ::-1, ::-1])
    gy = rng.standard_normal(s.shape).astype(dtype)
    got = gpu.max_pool2d_backward(gy, s, x.shape)
    _same(got, cpu(F.max_pool2d_backward, gy, s, x.shape))
    assert_close(got, ref.max_pool2d_backward(gy, s, x.shape), dtype)


def test_cuda_host_max_unpool2d_duplicates_last_wins(dtype, rng, gpu):
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    s = rng.integers(0, 20, x.shape)  # many duplicates in every plane
    for size in (None, (15, 13), [2, 3, 14, 12]):
        got = gpu.max_unpool2d(x, s, 2, output_size=size)
        _same(got, cpu(F.max_unpool2d, x, s, 2, output_size=size))
        assert_close(got, ref.max_unpool2d(x, s, 2, output_size=size), dtype)
        gy = rng.standard_normal(got.shape).astype(dtype)
        back = gpu.max_unpool2d_backward(gy, s)
        _same(back, cpu(F.max_unpool2d_backward, gy, s))
        _same(back, ref.max_unpool2d_backward(gy, s).astype(dtype))


def test_cuda_host_unpool_of_pool(dtype, rng, gpu):
    x = distinct(rng, (2, 2, 8, 9), dtype)
    y, s = gpu.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    u = gpu.max_unpool2d(y, s, 3, 2, 1, output_size=x.shape)
    _same(u, cpu(F.max_unpool2d, y, s, 3, 2, 1, output_size=x.shape))


# ---- average and Lp pooling


def test_cuda_host_avg_pool2d_ceil_mode_divisors(gpu):
    x = np.ones((1, 1, 5, 5))
    for cip, corner in ((True, 1.0), (False, 1.0)):
        y = gpu.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=cip)
        assert y.shape == (1, 1, 3, 3) and y[0, 0, 2, 2] == corner
    y = gpu.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)
    _same(y, cpu(F.avg_pool2d, x, 3, 2, 1, ceil_mode=True, count_include_pad=True))
    assert y[0, 0, 0, 0] == 4 / 9


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 1.5, -2.0, INF, -INF])
def test_cuda_host_lp_pool2d_norm_types(norm_type, dtype, rng, gpu):
    x = rng.uniform(0.5, 2.0, (2, 2, 7, 8)).astype(dtype)
    if norm_type in (1.0, 2.0, INF, -INF):
        x *= rng.choice([-1.0, 1.0], x.shape).astype(dtype)
    kw = dict(kernel_size=(3, 2), stride=(2, 3), ceil_mode=True)
    y = gpu.lp_pool2d(x, norm_type, **kw)
    assert_close(y, cpu(F.lp_pool2d, x, norm_type, **kw), dtype)
    assert_close(y, ref.lp_pool2d(x, norm_type, **kw), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    g = gpu.lp_pool2d_backward(gy, x, norm_type, **kw)
    assert_close(g, cpu(F.lp_pool2d_backward, gy, x, norm_type, **kw), dtype)
    assert_close(g, ref.lp_pool2d_backward(gy, x, norm_type, **kw), dtype)


def test_cuda_host_lp_pool2d_special_values(gpu):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = 1.0
    gy = np.ones((1, 1, 2, 2))
    g = gpu.lp_pool2d_backward(gy, x, 2.0, 2)
    _same(g, cpu(F.lp_pool2d_backward, gy, x, 2.0, 2))
    assert not g[0, 0, :2].any()  # zero windows pass no gradient
    x = np.array([[[[-3.0, 3.0], [np.nan, 1.0]]]])
    for p in (INF, -INF, 2.0, 3.0):
        y = gpu.lp_pool2d(x, p, 2)
        np.testing.assert_array_equal(y, cpu(F.lp_pool2d, x, p, 2))
        g = gpu.lp_pool2d_backward(np.ones_like(y), x, p, 2)
        np.testing.assert_array_equal(g, cpu(F.lp_pool2d_backward, np.ones_like(y), x, p, 2))
    tie = np.array([[[[-3.0, 3.0], [1.0, 1.0]]]])  # +inf: |x| ties, the first wins
    _same(gpu.lp_pool2d_backward(np.ones((1, 1, 1, 1)), tie, INF, 2), np.array([[[[-1.0, 0, 0, 0]]]]).reshape(tie.shape))


# ---- layouts and empty shapes


def test_cuda_host_pool_non_contiguous(dtype, rng, gpu):
    base = distinct(rng, (3, 2, 9, 10), dtype)
    x = base.transpose(1, 0, 2, 3)[:, :, ::-1, :]
    y, s = gpu.max_pool2d(x, 3, 2, 1, return_indices=True)
    ye, se = cpu(F.max_pool2d, x, 3, 2, 1, return_indices=True)
    _same(y, ye)
    _same(s, se)
    gy = np.asfortranarray(rng.standard_normal(y.shape).astype(dtype))
    sf = np.asfortranarray(s)
    _same(gpu.max_pool2d_backward(gy, sf, x.shape), cpu(F.max_pool2d_backward, gy, sf, x.shape))
    _same(gpu.max_unpool2d(gy, sf, 3, 2, 1, output_size=x.shape), cpu(F.max_unpool2d, gy, sf, 3, 2, 1, output_size=x.shape))
    _same(gpu.max_unpool2d_backward(x, sf), cpu(F.max_unpool2d_backward, x, sf))
    assert_close(gpu.avg_pool2d(x, 3, 2, 1, True, False), cpu(F.avg_pool2d, x, 3, 2, 1, True, False), dtype)
    assert_close(gpu.avg_pool2d_backward(gy, x.shape, 3, 2, 1), cpu(F.avg_pool2d_backward, gy, x.shape, 3, 2, 1), dtype)
    gl = np.asfortranarray(rng.standard_normal((2, 3, 4, 5)).astype(dtype))
    assert_close(gpu.lp_pool2d(x, 2, 2), cpu(F.lp_pool2d, x, 2, 2), dtype)
    assert_close(gpu.lp_pool2d_backward(gl, x, 2, 2), cpu(F.lp_pool2d_backward, gl, x, 2, 2), dtype)
    assert_close(gpu.lp_pool2d_backward(gl, x, INF, 2), cpu(F.lp_pool2d_backward, gl, x, INF, 2), dtype)


@pytest.mark.parametrize("shape", [(0, 3, 6, 6), (2, 0, 6, 6)], ids=str)
def test_cuda_host_pool_empty(shape, dtype, gpu):
    x = np.zeros(shape, dtype)
    y, s = gpu.max_pool2d(x, 2, return_indices=True)
    assert y.shape == s.shape == shape[:2] + (3, 3) and s.dtype == np.int64
    assert gpu.max_pool2d(x, 2).shape == y.shape
    assert gpu.max_pool2d_backward(y, s, shape).shape == shape
    assert gpu.max_unpool2d(y, s, 2).shape == shape
    assert gpu.max_unpool2d_backward(x, s).shape == y.shape
    assert gpu.avg_pool2d(x, 2).shape == y.shape
    assert gpu.avg_pool2d_backward(y, shape, 2).shape == shape
    for p in (2.0, INF):
        assert gpu.lp_pool2d(x, p, 2).shape == y.shape
        assert gpu.lp_pool2d_backward(y, x, p, 2).shape == shape
    for a in (y, s):
        assert type(a) is np.ndarray and a.dtype in (dtype, np.int64)


def test_cuda_host_max_pool2d_backward_empty_pooled_planes(gpu):
    """A zero-sized input plane with switches: every switch is out of range."""
    gy, s = np.ones((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), np.int64)
    with pytest.raises(ValueError, match=r"\[0, 0\)"):
        gpu.max_pool2d_backward(gy, s, (1, 1, 0, 3))
    assert gpu.max_pool2d_backward(np.ones((1, 1, 0, 0)), np.zeros((1, 1, 0, 0), np.int64), (1, 1, 2, 2)).tolist() == [
        [[[0.0, 0.0], [0.0, 0.0]]]]


# ---- errors: tests/test_pool.py's tables, through the backend


def _error_params(table, prefix):
    return [pytest.param(exc, match, call, id=prefix + name) for name, exc, match, call in table]


@pytest.mark.parametrize("exc, match, call", _error_params(POOL_ERRORS, "") + _error_params(BACKWARD_ERRORS, "backward-")
                         + _error_params(UNPOOL_ERRORS, "unpool-"))
def test_cuda_host_pool_errors_are_the_cpus(exc, match, call, backends, monkeypatch):
    with pytest.raises(exc) as cpu_error:
        call()
    b = backends[0]
    monkeypatch.setattr(_dispatch, "call", lambda op, cpu, **args: getattr(b, op)(*args.values()))
    with pytest.raises(exc, match=match) as gpu_error:
        call()
    assert str(gpu_error.value) == str(cpu_error.value)


def test_cuda_host_first_bad_switch_is_reported(gpu, rng):
    """Many bad switches across planes and blocks: the first in C order is named."""
    s = rng.integers(0, 36, (3, 4, 9, 9))
    s[2, 3, 8, 8], s[1, 0, 4, 2], s[2, 0, 0, 0] = 36, -3, 99
    gy = np.ones(s.shape)
    for call in (lambda f: f.max_pool2d_backward(gy, s, (3, 4, 6, 6)), lambda f: f.max_unpool2d(gy, s, 1),
                 lambda f: f.max_unpool2d_backward(np.ones((3, 4, 6, 6)), s)):
        with pytest.raises(ValueError, match=r"got -3 at \(1, 0, 4, 2\)"):
            call(gpu)


def test_cuda_host_switches_of_another_kind_are_refused(backends):
    b = backends[0]
    for bad, match in ((np.zeros((1, 1, 1, 1), np.int32), "expected dtype int64, got int32"),
                       ([[[[0]]]], "expected a numpy.ndarray of int64, got list")):
        with pytest.raises(TypeError, match=f"^max_pool2d_backward: switches: {match}$"):
            b.max_pool2d_backward(np.ones((1, 1, 1, 1)), bad, (1, 1, 2, 2))
        with pytest.raises(TypeError, match=f"^max_unpool2d: switches: {match}$"):
            b.max_unpool2d(np.ones((1, 1, 1, 1)), bad, (2, 2), (2, 2), (0, 0), None)
        with pytest.raises(TypeError, match=f"^max_unpool2d_backward: switches: {match}$"):
            b.max_unpool2d_backward(np.ones((1, 1, 2, 2)), bad)


# ---- dispatch (no GPU needed)


class FakeCudaArray:
    __cuda_array_interface__ = {"shape": (1, 1, 2, 2), "typestr": "<f8", "data": (0, False), "version": 3}


def test_cuda_dispatch_pool_ops_mixed_operands_raise_type_error():
    x, s = np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 1, 1), np.int64)
    like = "expected a cupy.ndarray like {}, got numpy.ndarray$"
    cases = [
        ("max_pool2d_backward: switches: " + like.format("grad_output"), lambda: F.max_pool2d_backward(FakeCudaArray(), s, (1, 1, 2, 2))),
        ("max_pool2d_backward: grad_output: " + like.format("switches"), lambda: F.max_pool2d_backward(x, FakeCudaArray(), (1, 1, 2, 2))),
        ("max_unpool2d: switches: " + like.format("input"), lambda: F.max_unpool2d(FakeCudaArray(), s, 2)),
        ("max_unpool2d_backward: switches: " + like.format("grad_output"), lambda: F.max_unpool2d_backward(FakeCudaArray(), s)),
        ("lp_pool2d_backward: input: " + like.format("grad_output"), lambda: F.lp_pool2d_backward(FakeCudaArray(), x, 2, 2)),
        ("lp_pool2d_backward: grad_output: " + like.format("input"), lambda: F.lp_pool2d_backward(x, FakeCudaArray(), 2, 2)),
    ]
    for match, call in cases:
        with pytest.raises(TypeError, match="^" + match):
            call()


def test_cuda_dispatch_pool_ops_numpy_path_unchanged(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    y, s = F.max_pool2d(x, 2, return_indices=True)
    for a in (y, s, F.max_pool2d_backward(y, s, x.shape), F.max_unpool2d(y, s, 2), F.max_unpool2d_backward(x, s),
              F.avg_pool2d(x, 2), F.avg_pool2d_backward(y, x.shape, 2), F.lp_pool2d(x, 2, 2),
              F.lp_pool2d_backward(y, x, 2, 2)):
        assert type(a) is np.ndarray


# ---- cnnkit.testing: its samples and reference checks, through dispatch on the stand-in GPU


@pytest.mark.parametrize("op", FAMILY_OPS["pool"])
def test_cuda_host_pool_check_op(op, monkeypatch):
    """check_op over the pools and max_unpool2d: every sample case, float32 and float64, forward and backward."""
    with standin_gpu(monkeypatch, max_blocks=2) as gpu:  # few blocks: each costs a barrier round on the host
        assert "forward and backward" in check_on_device(gpu, op)
