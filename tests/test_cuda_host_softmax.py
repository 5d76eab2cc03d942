"""The softmax family and loss kernels (cuda/softmax.cu) run on the CPU through the
backend (Backend over NumPy and the host build, see tests/test_cuda_host.py): softmax
and log_softmax along any dim with their backwards, cross_entropy (class-index check
included) and mse_loss, against cnnkit.reference and the CPU path, in float32 and
float64; launch layouts, grid-stride loops, special values, layouts, empty arrays and
the CPU's errors."""

import re

import numpy as np
import pytest

import cnnkit
from cnnkit import _dispatch
from cnnkit import functional as F
from cnnkit.cuda._softmax import tile_shape

import cuda_host
from cuda_host.device import FAMILY_OPS, check_on_device, standin_gpu
from cuda_host import error_of
from cnnkit import reference as ref
from conftest import assert_close, random_array


@pytest.fixture(scope="module")
def host():
    return cuda_host.host_module("softmax")



SOFTMAX = {
    "softmax": (ref.softmax, ref.softmax_backward),
    "log_softmax": (ref.log_softmax, ref.log_softmax_backward),
}
NAMES = list(SOFTMAX)
REDUCTIONS = ["mean", "sum", "none"]
SFX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def _cases():
    """(shape, dim): contiguous rows short and longer than a block, strided dims with
    inner below, at and above 32 columns, and random ranks 1-4 with negative dims."""
    rng = np.random.default_rng(11)
    cases = [((5,), 0), ((1,), -1), ((3, 1), 1), ((300, 1), 0), ((4, 300), 1), ((2, 5, 70), 1),
             ((7, 40), 0), ((3, 600), 0), ((2, 3, 33), 1), ((3, 9, 3), 1)]
    for ndim in (1, 2, 3, 4):
        for _ in range(2):
            shape = tuple(int(v) for v in rng.integers(1, 7, ndim))
            cases.append((shape, int(rng.integers(-ndim, ndim))))
    return [pytest.param(s, d, id=f"{'x'.join(map(str, s))}-dim{d}") for s, d in cases]


CASES = _cases()


def _logits(rng, shape, dtype, scale=3.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype)


def test_cuda_host_every_softmax_kernel_is_tested(host):
    found = set(cuda_host.kernel_names(cnnkit.cuda.kernel_dir() / "softmax.cu", cnnkit.cuda.kernel_dir()))
    typed = ["softmax_forward", "log_softmax_forward", "softmax_backward", "log_softmax_backward",
             "cross_entropy_none", "cross_entropy_losses", "cross_entropy_backward", "squared_error",
             "mse_partials", "mse_loss_backward", "loss_total"]
    tested = {f"{k}_{s}" for k in typed for s in ("f32", "f64")}
    tested |= {"sum_partials_f64", "class_index_partials", "class_index_first"}
    assert found == tested
    assert tested <= set(host.names)


def test_cuda_host_tile_shapes():
    assert tile_shape(10, 1) == (1, 16)  # a short contiguous row: one lane per element
    assert tile_shape(1000, 1) == (1, 256)
    assert tile_shape(1000, 64) == (32, 8)  # a warp reads 32 adjacent inner positions
    assert tile_shape(3, 1000) == (64, 4)  # a short dim gives its threads to columns
    assert tile_shape(3, 2) == (2, 4)
    assert tile_shape(1, 1) == (1, 1)
    for size in (1, 2, 3, 17, 256, 257, 5000):
        for inner in (1, 2, 5, 31, 32, 33, 300):
            bx, by = tile_shape(size, inner)
            assert bx * by <= 256 and bx & (bx - 1) == 0 and by & (by - 1) == 0
            assert bx <= max(32, 256 // by) and (bx >= min(inner, 32) or bx * by == 256)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape, dim", CASES)
def test_cuda_host_softmax_forward_and_backward(name, shape, dim, rng, dtype, backend, host):
    ref_fwd, ref_grad = SOFTMAX[name]
    x = _logits(rng, shape, dtype)
    y = getattr(backend, name)(x, dim)
    assert type(y) is np.ndarray and y.flags.c_contiguous
    assert_close(y, ref_fwd(x, dim), dtype)
    assert_close(y, getattr(F, name)(x, dim).astype(np.float64), dtype)
    d = dim % len(shape)
    size, inner = shape[d], int(np.prod(shape[d + 1 :]))
    bx, by = tile_shape(size, inner)
    kernel = f"{name}_forward_{SFX[np.dtype(dtype)]}"
    assert host.launches[-1] == (kernel, (int(np.prod(shape[:d])) * -(-inner // bx),), (bx, by), 0)
    gy = random_array(rng, shape, dtype)
    y = np.asarray(ref_fwd(x, dim), dtype)
    gx = getattr(backend, f"{name}_backward")(gy, y, dim)
    assert_close(gx, ref_grad(gy, y, dim), dtype)
    assert_close(gx, getattr(F, f"{name}_backward")(gy, y, dim).astype(np.float64), dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape, dim", [((5, 300), 1), ((3, 40, 70), 1), ((9, 4), 1)])
def test_cuda_host_softmax_grid_stride(name, shape, dim, rng, dtype, tiny_grid, host):
    ref_fwd, ref_grad = SOFTMAX[name]
    x = _logits(rng, shape, dtype)
    y = getattr(tiny_grid, name)(x, dim)
    assert host.launches[-1][1] == (2,)
    assert_close(y, ref_fwd(x, dim), dtype)
    gy = random_array(rng, shape, dtype)
    assert_close(getattr(tiny_grid, f"{name}_backward")(gy, y, dim), ref_grad(gy, y, dim), dtype)


def test_cuda_host_log_softmax_large_logits(dtype, backend):
    x = np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0, -1e4]], dtype)
    np.testing.assert_allclose(backend.log_softmax(x, -1), ref.log_softmax(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(backend.softmax(x, -1), ref.softmax(x), rtol=1e-6, atol=1e-30)
    xt = np.ascontiguousarray(x.T)  # the same along a strided dim
    np.testing.assert_allclose(backend.log_softmax(xt, 0), ref.log_softmax(xt, 0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 0])
def test_cuda_host_softmax_infinities_and_nan(dim, dtype, backend):
    x = np.array([[-np.inf, 1.0, 2.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf]], dtype)
    x = x if dim == 1 else np.ascontiguousarray(x.T)
    for name in NAMES:
        y, expected = getattr(backend, name)(x, dim), getattr(F, name)(x, dim)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_allclose(y, expected, rtol=1e-6)
        assert np.isnan(y).sum() == 9  # NaN, +inf and an all -inf slice poison their slice


def test_cuda_host_log_softmax_backward_takes_any_output_values(rng, dtype, backend):
    top = 80.0 if dtype == np.float32 else 700.0
    y = np.linspace(-800, top, 3001).astype(dtype)
    g = np.asarray(rng.standard_normal(y.shape), dtype)
    expected = g.astype(np.float64) - np.exp(y.astype(np.float64)) * g.astype(np.float64).sum()
    # rtol 1e-12: the lanes' tree sums g in another order than the CPU, and g - exp(y) * s cancels
    np.testing.assert_allclose(backend.log_softmax_backward(g, y, -1), expected,
                               rtol=1e-5 if dtype == np.float32 else 1e-12)
    gx = backend.log_softmax_backward(np.ones(2, dtype), np.array([0.0, 1000.0], dtype), 0)
    np.testing.assert_array_equal(gx, [-1.0, -np.inf])


@pytest.mark.parametrize("name", NAMES)
def test_cuda_host_softmax_zero_dim(name, dtype, backend):
    x = np.array(2.5, dtype)
    for dim in (0, -1):
        y = getattr(backend, name)(x, dim)
        assert y.shape == () and y.dtype == dtype
        assert float(y) == (1.0 if name == "softmax" else 0.0)
        g = getattr(backend, f"{name}_backward")(np.array(1.0, dtype), y, dim)
        assert g.shape == () and float(g) == float(getattr(F, f"{name}_backward")(np.array(1.0, dtype), y, dim))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", ["strided", "fortran", "transposed"])
def test_cuda_host_softmax_non_contiguous(name, layout, rng, dtype, backend):
    ref_fwd, ref_grad = SOFTMAX[name]
    base = _logits(rng, (6, 10, 8), dtype)
    x = {"strided": base[:, ::3, 1::2], "fortran": np.asfortranarray(base), "transposed": base.transpose(2, 0, 1)}[layout]
    for dim in (0, 1, 2):
        y = getattr(backend, name)(x, dim)
        assert_close(y, ref_fwd(x, dim), dtype)
        gy = random_array(rng, x.shape, dtype)[..., ::-1]
        y_nc = np.asfortranarray(y)
        assert_close(getattr(backend, f"{name}_backward")(gy, y_nc, dim), ref_grad(gy, y_nc, dim), dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape, dim", [((0, 5), 1), ((0, 5), 0), ((3, 0), 1), ((3, 0), 0), ((2, 0, 3), 2)])
def test_cuda_host_softmax_empty_launches_nothing(name, shape, dim, dtype, backend, host):
    x = np.zeros(shape, dtype)
    before = len(host.launches)
    y = getattr(backend, name)(x, dim)
    g = getattr(backend, f"{name}_backward")(x, y, dim)
    assert y.shape == g.shape == shape and y.dtype == g.dtype == dtype
    assert len(host.launches) == before


# ---- cross_entropy


def _ce(rng, n, c, dtype, target_dtype=np.int64, scale=3.0):
    return _logits(rng, (n, c), dtype, scale), rng.integers(0, c, n).astype(target_dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n, c", [(1, 1), (1, 5), (8, 10), (33, 3), (3, 300), (300, 2)])
def test_cuda_host_cross_entropy(reduction, n, c, rng, dtype, backend):
    x, t = _ce(rng, n, c, dtype)
    loss = backend.cross_entropy(x, t, reduction)
    if reduction != "none":
        assert loss.shape == () and loss.dtype == dtype
    assert_close(loss, np.asarray(ref.cross_entropy(x, t, reduction)), dtype)
    assert_close(loss, F.cross_entropy(x, t, reduction).astype(np.float64), dtype)
    g = backend.cross_entropy_backward(x, t, reduction)
    assert_close(g, ref.cross_entropy_backward(x, t, reduction), dtype)
    assert_close(g, F.cross_entropy_backward(x, t, reduction).astype(np.float64), dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cuda_host_cross_entropy_grid_stride(reduction, rng, dtype, tiny_grid, host):
    x, t = _ce(rng, 520, 2, dtype)  # 520 rows on 2 blocks; 3 blocks of targets and losses
    assert_close(tiny_grid.cross_entropy(x, t, reduction), np.asarray(ref.cross_entropy(x, t, reduction)), dtype)
    assert_close(tiny_grid.cross_entropy_backward(x, t, reduction), ref.cross_entropy_backward(x, t, reduction), dtype)
    assert all(launch[1] in ((1,), (2,)) for launch in host.launches[-6:])


@pytest.mark.parametrize("target_dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64])
def test_cuda_host_cross_entropy_any_integer_target(target_dtype, rng, dtype, backend):
    x, t = _ce(rng, 6, 4, dtype, target_dtype)
    assert_close(backend.cross_entropy(x, t, "mean"), np.asarray(ref.cross_entropy(x, t)), dtype)
    assert_close(backend.cross_entropy_backward(x, t, "mean"), ref.cross_entropy_backward(x, t), dtype)


def test_cuda_host_cross_entropy_large_logits(dtype, backend):
    x = np.array([[1e4, 1e4 - 3.0, -1e4], [-5e3, 5e3, 0.0]], dtype)
    t = np.array([1, 0])
    np.testing.assert_allclose(backend.cross_entropy(x, t, "none"), ref.cross_entropy(x, t, "none"), rtol=1e-6)
    g = backend.cross_entropy_backward(x, t, "mean")
    assert np.all(np.isfinite(g))
    assert_close(g, ref.cross_entropy_backward(x, t), dtype)


def test_cuda_host_cross_entropy_nan_logits(dtype, backend):
    x = np.array([[np.nan, 0.0], [0.0, 1.0], [np.inf, 0.0]], dtype)
    t = np.array([1, 0, 1])
    for reduction in REDUCTIONS:
        np.testing.assert_array_equal(backend.cross_entropy(x, t, reduction), F.cross_entropy(x, t, reduction))
        np.testing.assert_allclose(backend.cross_entropy_backward(x, t, reduction),
                                   F.cross_entropy_backward(x, t, reduction), rtol=1e-6)


def test_cuda_host_cross_entropy_non_contiguous(rng, dtype, backend):
    x = _logits(rng, (10, 12), dtype)[::2, 1::2]
    t = rng.integers(0, 6, 10)[::2]
    assert_close(backend.cross_entropy(x, t, "none"), ref.cross_entropy(x, t, "none"), dtype)
    assert_close(backend.cross_entropy_backward(np.asfortranarray(x), t, "mean"), ref.cross_entropy_backward(x, t), dtype)


def test_cuda_host_cross_entropy_empty_batch(dtype, backend, host):
    x, t = np.zeros((0, 4), dtype), np.zeros(0, np.int64)
    mean = backend.cross_entropy(x, t, "mean")
    assert mean.shape == () and mean.dtype == dtype and np.isnan(mean)
    assert float(backend.cross_entropy(x, t, "sum")) == 0.0
    assert backend.cross_entropy(x, t, "none").shape == (0,)
    before = len(host.launches)
    assert backend.cross_entropy_backward(x, t, "mean").shape == (0, 4)
    assert len(host.launches) == before


@pytest.mark.parametrize("n, bad", [(3, {2: 4}), (3, {0: -1}), (700, {650: 5, 660: -3}), (700, {300: 9, 10: 7}),
                                    (600, {599: 2**40})])
def test_cuda_host_class_index_errors_name_the_first(n, bad, backend, tiny_grid):
    x = np.zeros((n, 4))
    t = np.arange(n) % 4
    for i, v in bad.items():
        t[i] = v
    first = min(bad)
    msg = f"target: expected class indices in [0, 4), got {bad[first]} at position {first}"
    for b in (backend, tiny_grid):
        for op in ("cross_entropy", "cross_entropy_backward"):
            with pytest.raises(ValueError, match=re.escape(f"{op}: {msg}")):
                getattr(b, op)(x, t, "mean")
    assert error_of(backend.cross_entropy, x, t, "sum") == error_of(F.cross_entropy, x, t, "sum")


def test_cuda_host_class_index_errors_of_small_and_unsigned_dtypes(backend):
    x = np.zeros((3, 4))
    for t in (np.array([-1, 0, 1], np.int8), np.array([0, 255, 1], np.uint8), np.array([0, 1, 2**64 - 1], np.uint64)):
        assert error_of(backend.cross_entropy, x, t, "mean") == error_of(F.cross_entropy, x, t, "mean")
    no_classes = np.zeros((2, 0))
    assert error_of(backend.cross_entropy, no_classes, np.zeros(2, np.int64), "none") == error_of(
        F.cross_entropy, no_classes, np.zeros(2, np.int64), "none")


# ---- mse_loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 4, 5), (30, 30)], ids=str)
def test_cuda_host_mse_loss(reduction, shape, rng, dtype, backend):
    x, t = np.asarray(random_array(rng, shape, dtype)), np.asarray(random_array(rng, shape, dtype))
    loss = backend.mse_loss(x, t, reduction)
    assert_close(loss, np.asarray(ref.mse_loss(x, t, reduction)), dtype)
    assert_close(loss, F.mse_loss(x, t, reduction).astype(np.float64), dtype)
    g = backend.mse_loss_backward(x, t, reduction)
    assert_close(g, ref.mse_loss_backward(x, t, reduction), dtype)
    assert_close(g, F.mse_loss_backward(x, t, reduction).astype(np.float64), dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cuda_host_mse_loss_grid_stride(reduction, rng, dtype, tiny_grid, host):
    x, t = random_array(rng, (1500,), dtype), random_array(rng, (1500,), dtype)
    assert_close(tiny_grid.mse_loss(x, t, reduction), np.asarray(ref.mse_loss(x, t, reduction)), dtype)
    assert host.launches[-2 if reduction != "none" else -1][1] == (2,)
    assert_close(tiny_grid.mse_loss_backward(x, t, reduction), ref.mse_loss_backward(x, t, reduction), dtype)


def test_cuda_host_mse_loss_non_contiguous_and_empty(rng, dtype, backend):
    x = random_array(rng, (6, 8), dtype)[:, ::2]
    t = np.asfortranarray(random_array(rng, (6, 4), dtype))
    assert_close(backend.mse_loss(x, t, "none"), ref.mse_loss(x, t, "none"), dtype)
    assert_close(backend.mse_loss_backward(x, t, "mean"), ref.mse_loss_backward(x, t), dtype)
    empty = np.zeros((0, 3), dtype)
    mean = backend.mse_loss(empty, empty, "mean")
    assert mean.shape == () and mean.dtype == dtype and np.isnan(mean)
    assert float(backend.mse_loss(empty, empty, "sum")) == 0.0
    assert backend.mse_loss(empty, empty, "none").shape == (0, 3)
    assert backend.mse_loss_backward(empty, empty, "mean").shape == (0, 3)


def test_cuda_host_inputs_not_modified(rng, backend):
    x, t = _ce(rng, 5, 7, np.float64)
    saved = x.copy(), t.copy()
    backend.softmax(x, 0), backend.log_softmax_backward(x, x, 1)
    backend.cross_entropy(x, t, "mean"), backend.cross_entropy_backward(x, t, "none")
    backend.mse_loss(x, x, "sum"), backend.mse_loss_backward(x, x, "mean")
    np.testing.assert_array_equal(x, saved[0])
    np.testing.assert_array_equal(t, saved[1])


# ---- errors: the CPU path's



def test_cuda_host_errors_are_the_cpu_ones(backend):
    x, t = np.zeros((3, 4)), np.array([0, 1, 2])
    f32 = np.zeros(3, np.float32)
    cases = []
    for name in NAMES:
        cases += [
            (name, (np.zeros((2, 3)), 2)), (name, (np.zeros((2, 3)), -3)), (name, (np.zeros(()), 1)),
            (name, ([1.0, 2.0], -1)), (name, (np.zeros(3, np.int64), 0)), (name, (None, 0)),
            (f"{name}_backward", (np.zeros(3), f32, 0)), (f"{name}_backward", (np.zeros(4), np.zeros(3), 0)),
            (f"{name}_backward", (np.zeros((2, 3)), np.zeros((2, 3)), 2)), (f"{name}_backward", (None, f32, 0)),
        ]
    for op in ("cross_entropy", "cross_entropy_backward"):
        cases += [
            (op, (x, t.astype(np.float64), "mean")), (op, (x, np.array([True, False, True]), "mean")),
            (op, (x, [0, 1, 2], "mean")), (op, (x, None, "sum")), (op, (x, np.array([0, 3, 4]), "mean")),
            (op, (x, np.array([-1, 0, 1], np.int8), "none")), (op, (x, np.array([0, 1]), "mean")),
            (op, (x, t[:, None], "mean")), (op, (x[None], t, "mean")), (op, (x[0], t, "mean")),
            (op, (np.zeros((3, 4), np.int64), t, "mean")), (op, (x, t, "avg")), (op, ("x", t, "mean")),
            (op, (x, np.array([0, 9, 2]), "avg")),  # the reduction is checked before the indices
        ]
    for op in ("mse_loss", "mse_loss_backward"):
        cases += [
            (op, (x, np.zeros(4), "mean")), (op, (x, np.zeros((3, 4), np.float32), "mean")), (op, (1.0, x, "sum")),
            (op, (x, np.zeros((3, 4), np.int32), "none")), (op, (x, x, "max")), (op, (x, None, "mean")),
        ]
    for op, args in cases:
        # functional normalises dim and reduction before _C; the backend gets them as _C does
        assert error_of(getattr(backend, op), *args) == error_of(getattr(cnnkit._C, op), *args), (op, args)


# ---- dispatch in cnnkit.functional (no GPU needed)


class FakeCudaArray:
    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3}


def test_cuda_dispatch_softmax_family_mixed_operands():
    x = np.zeros(3, np.float32)
    cuda = FakeCudaArray()
    assert _dispatch.classify(cuda) == _dispatch.CUDA
    cases = [
        (F.softmax_backward, (cuda, x), "softmax_backward: output: expected a cupy.ndarray like grad_output"),
        (F.log_softmax_backward, (x, cuda), "log_softmax_backward: grad_output: expected a cupy.ndarray like output"),
        (F.cross_entropy, (cuda, np.zeros(3, np.int64)), "cross_entropy: target: expected a cupy.ndarray like input"),
        (F.cross_entropy_backward, (x, cuda), "cross_entropy_backward: input: expected a cupy.ndarray like target"),
        (F.mse_loss, (cuda, x), "mse_loss: target: expected a cupy.ndarray like input"),
        (F.mse_loss_backward, (x, cuda), "mse_loss_backward: input: expected a cupy.ndarray like target"),
    ]
    for fn, args, msg in cases:
        with pytest.raises(TypeError, match=rf"^{re.escape(msg)}, got numpy.ndarray$"):
            fn(*args)
    # Arguments are normalised before dispatch, as on the CPU path.
    with pytest.raises(TypeError, match="softmax: dim: expected an int"):
        F.softmax(cuda, 1.0)
    with pytest.raises(TypeError, match="mse_loss: reduction: expected 'mean', 'sum' or 'none', got NoneType"):
        F.mse_loss(cuda, cuda, None)


# ---- cnnkit.testing: its samples and reference checks, through dispatch on the stand-in GPU


@pytest.mark.parametrize("op", FAMILY_OPS["softmax"])
def test_cuda_host_softmax_check_op(op, monkeypatch):
    """check_op over the softmax family and the losses: every sample case, float32 and float64, forward and backward."""
    with standin_gpu(monkeypatch, max_blocks=2) as gpu:  # few blocks: each costs a barrier round on the host
        assert "forward and backward" in check_on_device(gpu, op)
