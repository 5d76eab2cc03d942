"""cnnkit.functional on CuPy arrays, against the CPU path on the same values.

Runs only where CuPy sees a GPU (skipped otherwise; tests/test_cuda_host.py proves the
same kernels on the CPU). Results must be cupy arrays on the operands' device, of their
dtype, C-contiguous, and equal to the CPU path's within 1e-4 relative (float32) and
1e-10 (float64). Errors are the CPU path's.
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

# name -> backward takes the output (else the input)
ACTIVATIONS = {"relu": False, "sigmoid": True, "tanh": True}
NAMES = list(ACTIVATIONS)
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4, 5), (300, 257), (1 << 21) + 3]


def on_gpu(a):
    return cupy.asarray(a)


def check_gpu_result(actual, expected, dtype, device=None):
    """actual is a C-contiguous cupy array on device equal to the CPU path's expected."""
    assert isinstance(actual, cupy.ndarray), type(actual)
    assert actual.flags.c_contiguous
    if device is not None:
        assert actual.device.id == device
    assert_close(cupy.asnumpy(actual), np.asarray(expected, np.float64), dtype)


def _other(name, x):
    return getattr(F, name)(x) if ACTIVATIONS[name] else x


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cuda_forward_and_backward_match_cpu(name, shape, rng, dtype):
    shape = shape if isinstance(shape, tuple) else (shape,)
    x = np.asarray(rng.standard_normal(shape) * 6, dtype)
    check_gpu_result(getattr(F, name)(on_gpu(x)), getattr(F, name)(x), dtype)
    other = _other(name, x)
    gy = random_array(rng, shape, dtype)
    bwd = getattr(F, f"{name}_backward")
    check_gpu_result(bwd(on_gpu(gy), on_gpu(other)), bwd(gy, other), dtype)


@pytest.mark.parametrize("name", NAMES)
def test_cuda_special_values(name, dtype):
    x = np.array([np.nan, -np.inf, -1e4, -80.0, -1.0, -1e-30, -0.0, 0.0, 1e-7, 0.5, 30.0, np.inf], dtype)
    y = getattr(F, name)(on_gpu(x))
    np.testing.assert_allclose(cupy.asnumpy(y), getattr(F, name)(x), rtol=1e-6 if dtype == np.float32 else 1e-14,
                               atol=np.finfo(dtype).tiny)  # float32 GPU results below FLT_MIN flush to 0
    bwd = getattr(F, f"{name}_backward")
    g = np.full(x.shape, 3.0, dtype)
    other = _other(name, x)
    np.testing.assert_allclose(cupy.asnumpy(bwd(on_gpu(g), on_gpu(other))), bwd(g, other),
                               rtol=1e-6 if dtype == np.float32 else 1e-14, atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", ["strided", "fortran", "transposed"])
def test_cuda_non_contiguous(name, layout, rng, dtype):
    base = np.asarray(rng.standard_normal((6, 10, 8)) * 6, dtype)
    view = {
        "strided": lambda a: a[:, ::3, 1::2],
        "fortran": lambda a: a.T.copy().T if isinstance(a, np.ndarray) else cupy.asfortranarray(a),
        "transposed": lambda a: a.transpose(2, 0, 1),
    }[layout]
    x, xg = view(base), view(on_gpu(base))
    assert not xg.flags.c_contiguous
    check_gpu_result(getattr(F, name)(xg), getattr(F, name)(x), dtype)
    other = _other(name, x)
    gy = random_array(rng, x.shape, dtype)
    bwd = getattr(F, f"{name}_backward")
    check_gpu_result(bwd(on_gpu(gy)[..., ::-1], view(on_gpu(_other(name, base)))), bwd(gy[..., ::-1], other), dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)], ids=str)
def test_cuda_empty(name, shape, dtype):
    x = cupy.zeros(shape, dtype)
    y = getattr(F, name)(x)
    gx = getattr(F, f"{name}_backward")(x, x)
    assert isinstance(y, cupy.ndarray) and y.shape == gx.shape == shape and y.dtype == gx.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_cuda_errors_are_the_cpu_ones(name):
    def message(fn, *args):
        with pytest.raises((TypeError, ValueError)) as e:
            fn(*args)
        return e.type, str(e.value)

    fwd, bwd = getattr(F, name), getattr(F, f"{name}_backward")
    other = "output" if ACTIVATIONS[name] else "input"
    for bad in (np.int64, np.float16):
        assert message(fwd, on_gpu(np.zeros(3, bad))) == message(fwd, np.zeros(3, bad))
    pairs = [(np.zeros(3, np.float32), np.zeros(3)), (np.zeros((3, 2)), np.zeros((2, 3)))]
    for a, b in pairs:
        assert message(bwd, on_gpu(a), on_gpu(b)) == message(bwd, a, b)
    assert message(bwd, on_gpu(np.zeros(3)), [1.0, 2.0, 3.0]) == (
        TypeError, f"{name}_backward: {other}: expected a cupy.ndarray of float32 or float64, got list")
    assert message(bwd, on_gpu(np.zeros(3)), np.zeros(3)) == (
        TypeError, f"{name}_backward: {other}: expected a cupy.ndarray like grad_output, got numpy.ndarray")


def test_cuda_result_stays_on_the_operands_device(rng):
    devices = cupy.cuda.runtime.getDeviceCount()
    x = np.asarray(rng.standard_normal((4, 5)), np.float32)
    for d in range(min(devices, 2)):
        with cupy.cuda.Device(d):
            xg = on_gpu(x)
        with cupy.cuda.Device(0):
            y = F.tanh(xg)
        check_gpu_result(y, F.tanh(x), np.float32, device=d)
    if devices > 1:
        with cupy.cuda.Device(0):
            a = on_gpu(x)
        with cupy.cuda.Device(1):
            b = on_gpu(x)
        with pytest.raises(ValueError, match="tanh_backward: output: expected an array on CUDA device 0"):
            F.tanh_backward(a, b)


def test_cuda_array_interface_and_dlpack_operands(rng):
    x = np.asarray(rng.standard_normal((3, 4)), np.float64)
    xg = on_gpu(x)

    class Interface:
        __cuda_array_interface__ = xg.__cuda_array_interface__

    check_gpu_result(F.sigmoid(Interface()), F.sigmoid(x), np.float64)
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    t = torch.from_numpy(x).cuda()
    check_gpu_result(F.relu(t), F.relu(x), np.float64)
    check_gpu_result(F.relu_backward(t, xg), F.relu_backward(x, x), np.float64)


def test_cuda_kernels_compile_once_per_device():
    b = cnnkit.cuda.backend()
    F.relu(cupy.zeros(3, cupy.float32))
    k = b.kernel("activation", "relu_forward", np.float32)
    F.relu(cupy.zeros(3, cupy.float32))
    assert b.kernel("activation", "relu_forward", np.float32) is k
    assert cnnkit.cuda.backend() is b


@pytest.mark.parametrize("op", FAMILY_OPS["activation"])
def test_cuda_activation_check_op(op):
    """cnnkit.testing.check_op on CuPy arrays (relu, sigmoid and tanh): every sample
    case, float32 and float64, forward and backward."""
    assert "forward and backward" in check_on_device(cupy, op)
