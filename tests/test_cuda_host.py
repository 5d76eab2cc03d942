"""The CUDA kernels run on the CPU: cuda/*.cu compiled with tests/cuda_host/shim.h and
launched by the very backend that runs them on CuPy (cnnkit.cuda.Backend with
xp = numpy and the host module in place of cupy.RawModule), over their whole grids with
the backend's launch configurations. Results are compared with cnnkit.reference and
with the CPU path (cnnkit.functional on NumPy), in float32 and float64.

Also: the helpers of cuda/common.cuh and the shim itself (tests/cuda_host/selftest.cu),
the host module's checks, and the dispatch of cnnkit.functional that needs no GPU.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnkit
from cnnkit import _dispatch
from cnnkit import functional as F
from cnnkit.cuda import _backend
from cnnkit.testing import OPS

import cuda_host
from cuda_host.device import FAMILY_OPS, check_on_device, standin_gpu
from cuda_host import error_of
from cnnkit import reference as ref
from conftest import assert_close, random_array


@pytest.fixture(scope="module")
def host():
    """The host build of cuda/activation.cu (records its launches)."""
    return cuda_host.host_module("activation")


@pytest.fixture(scope="module")
def selftest():
    return cuda_host.host_module("selftest")



def last_launch(host):
    return host.launches[-1] if host.launches else None


# ---------------------------------------------------------------------------------------
# Activations (cuda/activation.cu)

# name -> (reference forward, reference gradient, backward takes the output, kernel base names)
ACTIVATIONS = {
    "relu": (ref.relu, ref.relu_backward, False, ("relu_forward", "relu_backward")),
    "sigmoid": (ref.sigmoid, ref.sigmoid_backward, True, ("sigmoid_forward", "sigmoid_backward")),
    "tanh": (ref.tanh, ref.tanh_backward, True, ("tanh_forward", "tanh_backward")),
}
NAMES = list(ACTIVATIONS)
# Every rank; (5, 103) takes 3 blocks, the last one partly.
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (1, 2, 1, 3, 2), (5, 103)]


def _input(rng, shape, dtype):
    return np.asarray(rng.standard_normal(shape) * 6, dtype)


def _other(name, x):
    """The second operand of name's backward: its input (relu) or output."""
    fwd, _, takes_output, _ = ACTIVATIONS[name]
    return np.asarray(fwd(x), x.dtype) if takes_output else x


def test_cuda_host_every_activation_kernel_is_tested(host):
    import re

    src = (cnnkit.cuda.kernel_dir() / "activation.cu").as_posix()
    found = set(cuda_host.kernel_names(src, cnnkit.cuda.kernel_dir()))
    tested = {f"{k}_{s}" for v in ACTIVATIONS.values() for k in v[3] for s in ("f32", "f64")}
    assert found == tested
    assert tested <= set(host.names)
    assert all(re.fullmatch(r"\w+_f(32|64)", n) for n in found)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cuda_host_forward(name, shape, rng, dtype, backend, host):
    x = _input(rng, shape, dtype)
    y = getattr(backend, name)(x)
    assert type(y) is np.ndarray and y.flags.c_contiguous and y.shape == shape
    assert_close(y, ACTIVATIONS[name][0](x), dtype)
    assert_close(y, getattr(F, name)(x).astype(np.float64), dtype)
    n = x.size
    kernel = f"{ACTIVATIONS[name][3][0]}_{'f32' if dtype == np.float32 else 'f64'}"
    assert last_launch(host) == (kernel, (-(-n // 256),), (256,), 0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cuda_host_backward(name, shape, rng, dtype, backend):
    x = _input(rng, shape, dtype)
    other = _other(name, x)
    gy = random_array(rng, shape, dtype)
    gx = getattr(backend, f"{name}_backward")(gy, other)
    assert type(gx) is np.ndarray and gx.flags.c_contiguous and gx.dtype == dtype
    assert_close(gx, ACTIVATIONS[name][1](gy, other), dtype)
    assert_close(gx, getattr(F, f"{name}_backward")(gy, other).astype(np.float64), dtype)


@pytest.mark.parametrize("name", NAMES)
def test_cuda_host_grid_stride_loop(name, rng, dtype, tiny_grid, host):
    x = _input(rng, (1500,), dtype)  # 6 blocks of work on a grid of 2
    y = getattr(tiny_grid, name)(x)
    assert last_launch(host)[1:3] == ((2,), (256,))
    assert_close(y, ACTIVATIONS[name][0](x), dtype)
    other = _other(name, x)
    gy = random_array(rng, x.shape, dtype)
    assert_close(getattr(tiny_grid, f"{name}_backward")(gy, other), ACTIVATIONS[name][1](gy, other), dtype)
    assert last_launch(host)[1] == (2,)


def test_cuda_host_launch_configuration_is_capped(backend):
    assert backend.grid_1d(1) == ((1,), (256,))
    assert backend.grid_1d(256 * 10 + 1) == ((11,), (256,))
    assert backend.grid_1d(10**12) == ((_backend.MAX_BLOCKS,), (256,))


def test_cuda_host_relu_nan_as_torch(dtype, backend):
    x = np.array([np.nan, -1.0, 0.0, -0.0, 2.0, -np.inf, np.inf], dtype)
    np.testing.assert_array_equal(backend.relu(x), F.relu(x))
    np.testing.assert_array_equal(backend.relu(x), [np.nan, 0.0, 0.0, -0.0, 2.0, 0.0, np.inf])
    gx = backend.relu_backward(np.full(7, 3.0, dtype), x)
    np.testing.assert_array_equal(gx, [3.0, 0.0, 0.0, 0.0, 3.0, 0.0, 3.0])


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_cuda_host_nan_and_infinities(name, dtype, backend):
    y = getattr(backend, name)(np.array([np.nan, np.inf, -np.inf], dtype))
    assert np.isnan(y[0])
    np.testing.assert_array_equal(y[1:], [1.0, 0.0 if name == "sigmoid" else -1.0])
    g = getattr(backend, f"{name}_backward")(np.array([1.0, np.nan], dtype), np.array([np.nan, 0.5], dtype))
    assert np.isnan(g).all()


def test_cuda_host_sigmoid_is_stable_for_large_inputs(dtype, backend):
    x = np.array([-1e4, -1000.0, -80.0, -30.0, 0.0, 30.0, 80.0, 1000.0, 1e4], dtype)
    y = backend.sigmoid(x)
    assert np.all(np.isfinite(y))
    small = x < -20
    np.testing.assert_allclose(y[small], ref.sigmoid(x[small]), rtol=1e-5 if dtype == np.float32 else 1e-13)


def test_cuda_host_tanh_keeps_relative_accuracy_near_zero(dtype, backend):
    x = np.array([1e-30, -1e-12, 1e-7, -3e-4, 0.01, -0.3, 0.5, 2.0, -9.0, 19.0, -0.0], dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    y = backend.tanh(x)
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=rtol, atol=0)
    assert np.signbit(y[-1])


@pytest.mark.parametrize("name", NAMES)
def test_cuda_host_exp_range_sweep(name, dtype, backend):
    x = np.linspace(-800, 800, 2001).astype(dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(getattr(backend, name)(x), ACTIVATIONS[name][0](x), rtol=rtol,
                               atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", ["strided", "fortran", "transposed", "reversed"])
def test_cuda_host_non_contiguous(name, layout, rng, dtype, backend):
    base = _input(rng, (6, 10, 8), dtype)
    x = {
        "strided": base[:, ::3, 1::2],
        "fortran": np.asfortranarray(base),
        "transposed": base.transpose(2, 0, 1),
        "reversed": base[::-1, :, ::-1],
    }[layout]
    assert not x.flags.c_contiguous
    y = getattr(backend, name)(x)
    assert y.flags.c_contiguous
    assert_close(y, ACTIVATIONS[name][0](x), dtype)
    gy = random_array(rng, x.shape, dtype)[..., ::-1]
    other = _other(name, x)
    assert_close(getattr(backend, f"{name}_backward")(gy, other), ACTIVATIONS[name][1](gy, other), dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)], ids=str)
def test_cuda_host_empty_launches_nothing(name, shape, dtype, backend, host):
    x = np.zeros(shape, dtype)
    before = len(host.launches)
    y = getattr(backend, name)(x)
    gx = getattr(backend, f"{name}_backward")(x, x)
    assert y.shape == gx.shape == shape and y.dtype == gx.dtype == dtype
    assert len(host.launches) == before  # a GPU refuses an empty grid


@pytest.mark.parametrize("name", NAMES)
def test_cuda_host_inputs_not_modified(name, rng, dtype, backend):
    x = _input(rng, (5, 7), dtype)
    saved = x.copy()
    y = getattr(backend, name)(x)
    assert y is not x
    getattr(backend, f"{name}_backward")(x, x)
    np.testing.assert_array_equal(x, saved)



@pytest.mark.parametrize("name", NAMES)
def test_cuda_host_errors_are_the_cpu_ones(name, backend):
    """Validation has one home (_C): the backend raises what the CPU path raises."""
    f32, f64 = np.zeros(3, np.float32), np.zeros(3, np.float64)
    cases = [
        (name, ([1.0, 2.0],)),
        (name, (np.zeros(3, np.int64),)),
        (name, (np.zeros(3, np.float16),)),
        (name, (None,)),
        (f"{name}_backward", (f32, f64)),
        (f"{name}_backward", (f64, np.zeros(3, np.int32))),
        (f"{name}_backward", (np.zeros((3, 2)), np.zeros((2, 3)))),
        (f"{name}_backward", (None, f64)),
        (f"{name}_backward", (f64, "x")),
    ]
    for op, args in cases:
        assert error_of(getattr(backend, op), *args) == error_of(getattr(F, op), *args), (op, args)


# ---------------------------------------------------------------------------------------
# cuda/common.cuh and the shim (tests/cuda_host/selftest.cu)

SFX = {np.float32: "f32", np.float64: "f64"}


@pytest.mark.parametrize("grid", [1, 3, 16])
def test_cuda_host_block_reductions(grid, rng, dtype, selftest):
    rows, cols = 9, 700  # a row per block, 3 columns per thread (the last partly)
    x = random_array(rng, (rows, cols), dtype)
    x[1, 5] = np.nan
    x[2, :] = -np.inf
    x[3, 699] = np.nan
    x[4, :] = np.nan
    x[5, 300] = 1e30
    for kernel, expected in (("row_sum", x.astype(np.float64).sum(1)), ("row_max", x.max(1))):
        out = np.full(rows, 7.0, dtype)
        selftest.get_function(f"selftest_{kernel}_{SFX[dtype]}")((grid,), (256,), (x, out, np.int64(rows), np.int64(cols)))
        finite = np.isfinite(expected)
        np.testing.assert_array_equal(out[~finite], expected[~finite])  # a NaN anywhere in a row wins
        assert_close(out[finite], expected[finite], dtype)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1000])
@pytest.mark.parametrize("block", [32, 256])
def test_cuda_host_shared_memory_and_barrier(n, block, rng, dtype, selftest):
    x = random_array(rng, (n,), dtype)
    y = np.full(n, np.nan, dtype)
    blocks = -(-n // block)
    selftest.get_function(f"selftest_reverse_blocks_{SFX[dtype]}")(
        (blocks,), (block,), (x, y, np.int64(n)), shared_mem=block * x.itemsize
    )
    expected = np.concatenate([x[b : b + block][::-1] for b in range(0, n, block)])
    np.testing.assert_array_equal(y, expected)


def test_cuda_host_atomic_add(rng, dtype, selftest):
    x = np.ones(3000, dtype)
    out = np.zeros(1, dtype)
    selftest.get_function(f"selftest_atomic_sum_{SFX[dtype]}")((4,), (256,), (x, out, np.int64(x.size)))
    assert out[0] == 3000


def test_cuda_host_nan_aware_compare(dtype, selftest):
    nan, inf = np.nan, np.inf
    a = np.array([1, 2, nan, 1, nan, -inf, 0.0, -0.0], dtype)
    b = np.array([2, 1, 1, nan, nan, -inf, -0.0, 0.0], dtype)
    n = a.size
    mx, mn, gt = np.zeros(n, dtype), np.zeros(n, dtype), np.zeros(n, np.uint8)
    selftest.get_function(f"selftest_compare_{SFX[dtype]}")((1,), (32,), (a, b, mx, mn, gt, np.int64(n)))
    np.testing.assert_array_equal(mx, [2, 2, nan, nan, nan, -inf, 0.0, -0.0])
    np.testing.assert_array_equal(mn, [1, 1, nan, nan, nan, -inf, 0.0, -0.0])
    np.testing.assert_array_equal(gt, [0, 1, 1, 0, 0, 0, 0, 0])  # a NaN beats a number, not a NaN
    assert not np.signbit(mx[6]) and np.signbit(mx[7])  # ties keep the first operand


def test_cuda_host_index_helpers(selftest):
    cases = [(o, s, i, out) for o in range(-7, 8) for s in (1, 2, 3) for i in (0, 1, 5) for out in (0, 1, 4, 9)]
    args = np.array(cases, np.int64)
    res = np.zeros((len(cases), 3), np.int64)
    selftest.get_function("selftest_index")((2,), (256,), (args, res, np.int64(len(cases))))
    for (o, s, i, out), (lo, hi, fd) in zip(cases, res):
        inside = [k for k in range(out) if 0 <= k * s + o < i]
        assert (lo, hi) == ((inside[0], inside[-1] + 1) if inside else (lo, lo)), (o, s, i, out)
        assert 0 <= lo <= hi <= out and fd == o // s


@pytest.mark.parametrize("grid,block", [((3,), (7,)), ((2, 3), (4, 2)), ((2, 1, 2), (3, 2, 2))])
def test_cuda_host_thread_and_block_indices(grid, block, selftest):
    g, b = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
    n = int(np.prod(g) * np.prod(b))
    out = np.zeros((n, 6), np.uint32)
    selftest.get_function("selftest_thread_ids")(grid, block, (out, np.int64(n)))
    expected = [
        (tx, ty, tz, bx, by, bz)
        for bz in range(g[2]) for by in range(g[1]) for bx in range(g[0])
        for tz in range(b[2]) for ty in range(b[1]) for tx in range(b[0])
    ]
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------------------------------
# The host module catches what a GPU would not report


def test_cuda_host_module_checks_arguments(host):
    k = host.get_function("relu_forward_f32")
    x, y = np.zeros(10, np.float32), np.zeros(10, np.float32)
    assert k.params == ("Pf", "pf", "q")
    with pytest.raises(TypeError, match="expected a NumPy scalar"):
        k((1,), (32,), (x, y, 10))  # CuPy would guess the type of a Python int
    with pytest.raises(TypeError, match="expected a 'q' scalar, got int32"):
        k((1,), (32,), (x, y, np.int32(10)))
    with pytest.raises(TypeError, match="got dtype float64"):
        k((1,), (32,), (x.astype(np.float64), y, np.int64(10)))
    with pytest.raises(ValueError, match="C-contiguous"):
        k((1,), (32,), (np.zeros(20, np.float32)[::2], y, np.int64(10)))
    frozen = np.zeros(10, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        k((1,), (32,), (x, frozen, np.int64(10)))
    with pytest.raises(TypeError, match="expected 3 arguments"):
        k((1,), (32,), (x, y))
    with pytest.raises(RuntimeError, match="invalid grid"):
        k((0,), (32,), (x, y, np.int64(10)))
    with pytest.raises(RuntimeError, match="invalid block"):
        k((1,), (2048,), (x, y, np.int64(10)))
    with pytest.raises(AttributeError, match="no kernel"):
        host.get_function("relu_forward_f16")


def test_cuda_host_module_catches_out_of_bounds_writes(host):
    k = host.get_function("relu_forward_f32")
    x, y = np.ones(10, np.float32), np.zeros(10, np.float32)
    with pytest.raises(AssertionError, match="wrote outside argument 1"):
        k((1,), (32,), (x, y, np.int64(12)))
    np.testing.assert_array_equal(y, 0)  # nothing copied back


def test_cuda_host_module_in_place(host):
    x = np.array([-1.0, 2.0, np.nan], np.float64)
    host.get_function("relu_forward_f64")((1,), (32,), (x, x, np.int64(3)))
    np.testing.assert_array_equal(x, [0.0, 2.0, np.nan])


# ---------------------------------------------------------------------------------------
# Dispatch in cnnkit.functional (no GPU needed)


class FakeCudaArray:
    """Claims to be a CUDA array (as a torch CUDA tensor would)."""

    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3}


class FakeDLPack:
    def __init__(self, device_type):
        self.device_type = device_type

    def __dlpack_device__(self):
        return (self.device_type, 0)


def test_cuda_dispatch_classifies_operands():
    assert _dispatch.classify(np.zeros(3)) == _dispatch.NUMPY
    assert _dispatch.classify(np.zeros(3).view(np.matrix)) == _dispatch.NUMPY
    assert _dispatch.classify(FakeCudaArray()) == _dispatch.CUDA
    assert _dispatch.classify(FakeDLPack(2)) == _dispatch.CUDA  # kDLCUDA
    assert _dispatch.classify(FakeDLPack(13)) == _dispatch.CUDA  # kDLCUDAManaged
    assert _dispatch.classify(FakeDLPack(1)) is None  # kDLCPU
    assert _dispatch.classify(FakeDLPack(3)) is None  # kDLCUDAHost: host memory
    for v in (None, 1, 2.5, (2, 2), [1.0], "same", np.float32(1)):
        assert _dispatch.classify(v) is None


def test_cuda_dispatch_classifies_torch_tensors():
    torch = pytest.importorskip("torch")
    assert _dispatch.classify(torch.zeros(3)) is None  # a CPU tensor takes the CPU path's error


def test_cuda_dispatch_mixed_operands_raise_type_error():
    x = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match=r"^relu_backward: input: expected a cupy.ndarray like grad_output, got numpy.ndarray$"):
        F.relu_backward(FakeCudaArray(), x)
    with pytest.raises(TypeError, match=r"^sigmoid_backward: grad_output: expected a cupy.ndarray like output, got numpy.ndarray$"):
        F.sigmoid_backward(x, FakeCudaArray())
    with pytest.raises(TypeError, match=r"^tanh_backward: output: expected a cupy.ndarray like grad_output"):
        F.tanh_backward(FakeDLPack(2), x)


def test_cuda_dispatch_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(ImportError, match=r"relu: .*needs CuPy"):
        F.relu(FakeCudaArray())
    assert cnnkit.cuda.is_available() is False
    y = F.relu(np.array([-1.0, 1.0]))  # NumPy never needs CuPy
    np.testing.assert_array_equal(y, [0.0, 1.0])


def test_cuda_dispatch_numpy_path_is_the_cpu_path():
    x = np.array([-1.0, 2.0])
    assert type(F.relu(x)) is np.ndarray
    with pytest.raises(TypeError, match=r"relu: input: expected a numpy.ndarray of float32 or float64, got list"):
        F.relu([1.0])


def test_cuda_importing_cnnkit_does_not_import_cupy():
    code = (
        "import sys, numpy as np, cnnkit, cnnkit.cuda\n"
        "cnnkit.functional.relu(np.zeros(3)); cnnkit.functional.tanh_backward(np.zeros(3), np.zeros(3))\n"
        "assert 'cupy' not in sys.modules, 'cupy imported'\n"
        "assert isinstance(cnnkit.cuda.is_available(), bool)\n"
    )
    package_parent = str(Path(cnnkit.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr


class _FakeCupy:
    """Just enough of CuPy for the dispatcher: arrays that know their device."""

    class ndarray:
        def __init__(self, device=0):
            self.device = type("Device", (), {"id": device})()

    class cuda:
        current = []

        class Device:
            def __init__(self, id):
                self.id = id

            def __enter__(self):
                _FakeCupy.cuda.current.append(self.id)

            def __exit__(self, *exc):
                _FakeCupy.cuda.current.pop()

    @staticmethod
    def from_dlpack(v):
        return _FakeCupy.ndarray(device=1)

    @staticmethod
    def asarray(v):
        return _FakeCupy.ndarray(device=0)


def test_cuda_dispatch_routes_cuda_operands_to_the_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _FakeCupy)
    calls = []

    class Recorder:
        def __getattr__(self, op):
            return lambda *args: calls.append((op, args, list(_FakeCupy.cuda.current))) or "result"

    monkeypatch.setattr(cnnkit.cuda, "backend", lambda: Recorder())
    a, b = _FakeCupy.ndarray(0), _FakeCupy.ndarray(0)
    assert F.relu_backward(a, b) == "result"
    assert calls[-1] == ("relu_backward", (a, b), [0])
    # other CUDA arrays are taken as CuPy arrays (no copy), on their device
    assert F.tanh(FakeDLPack(2)) == "result"
    assert isinstance(calls[-1][1][0], _FakeCupy.ndarray) and calls[-1][2] == [1]
    F.sigmoid(FakeCudaArray())
    assert calls[-1][2] == [0]
    # non-array operands pass through to the backend, which names them
    F.relu_backward(a, [1.0])
    assert calls[-1][1] == (a, [1.0])
    with pytest.raises(ValueError, match=r"^tanh_backward: output: expected an array on CUDA device 0 like grad_output, got one on device 1$"):
        F.tanh_backward(a, _FakeCupy.ndarray(1))


# ---- cnnkit.testing: its samples and reference checks, through dispatch on the stand-in GPU


@pytest.mark.parametrize("op", FAMILY_OPS["activation"])
def test_cuda_host_activation_check_op(op, monkeypatch):
    """check_op over relu, sigmoid and tanh: every sample case, float32 and float64, forward and backward."""
    with standin_gpu(monkeypatch, max_blocks=2) as gpu:  # few blocks: each costs a barrier round on the host
        assert "forward and backward" in check_on_device(gpu, op)


def test_cuda_host_check_op_covers_every_op():
    ops = [op for family in FAMILY_OPS.values() for op in family]
    assert sorted(ops) == sorted(OPS)
    assert set(FAMILY_OPS) <= set(cnnkit.cuda.families())


def test_cuda_host_check_op_runs_the_kernels(monkeypatch):
    """A wrong backend op fails check_on_device: the samples run on the device, not the CPU path."""
    with standin_gpu(monkeypatch, max_blocks=2) as gpu:
        backend = cnnkit.cuda.backend()
        monkeypatch.setattr(backend, "relu", backend.sigmoid)
        with pytest.raises(AssertionError, match=r"check_op\('relu'\) float32 case 'random 0'"):
            check_on_device(gpu, "relu")
