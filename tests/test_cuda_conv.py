"""conv2d, conv_transpose2d and linear (forward and backward) on CuPy arrays, against
the CPU path on the same values. Runs only where CuPy sees a GPU (skipped otherwise;
tests/test_cuda_host_conv.py runs the same kernels on the CPU)."""

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F

from conftest import assert_close, random_array
from cuda_host.device import FAMILY_OPS, check_on_device

cupy = pytest.importorskip("cupy")
if not cnnkit.cuda.is_available():
    pytest.skip("no CUDA device (cupy.is_available() is False)", allow_module_level=True)

from test_conv import CONV2D_CASES, CONV_TRANSPOSE2D_CASES, ConvCase  # noqa: E402

CASES = CONV2D_CASES[::4] + CONV_TRANSPOSE2D_CASES[::4] + [
    ConvCase("big-gemm", 4, 32, 64, 28, 28, 3, 3, padding=1),
    ConvCase("big-depthwise", 4, 32, 64, 17, 17, 5, 5, groups=32, stride=2, padding=2),
    ConvCase("big-pointwise", 4, 64, 32, 14, 14, 1, 1),
    ConvCase("T-big", 4, 32, 16, 14, 14, 4, 4, stride=2, padding=1, transposed=True),
    ConvCase("empty", 0, 4, 6, 6, 5, 3, 3, padding=1),
    ConvCase("no-output-channels", 2, 3, 0, 4, 4, 3, 3),
]


def _check(actual, expected, dtype):
    assert isinstance(actual, cupy.ndarray) and actual.flags.c_contiguous and actual.dtype == dtype
    assert_close(cupy.asnumpy(actual), np.asarray(expected, np.float64), dtype)


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{i:03d}-{c.id}") for i, c in enumerate(CASES)])
def test_cuda_conv_matches_cpu(case, dtype, rng):
    x, w, b = case.operands(rng, dtype)
    gx_, gw_, gb_ = (None if a is None else cupy.asarray(a) for a in (x, w, b))
    _check(case.forward(gx_, gw_, gb_), case.forward(x, w, b), dtype)
    gy = random_array(rng, case.out_shape, dtype)
    for g, c in zip(case.backward(cupy.asarray(gy), gx_, gw_), case.backward(gy, x, w)):
        _check(g, c, dtype)


@pytest.mark.parametrize("rows", [1, 3])
def test_cuda_conv_workspace_chunking(rows, dtype, rng, workspace_bytes):
    case = ConvCase("gemm", 5, 8, 6, 9, 8, 3, 3, groups=2, stride=2, padding=(1, 0), dilation=(1, 2))
    x, w, b = case.operands(rng, dtype)
    want = case.forward(x, w, b)
    workspace_bytes((8 * 9 + 6) * np.dtype(dtype).itemsize * case.out_hw()[1] * rows)
    _check(case.forward(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b)), want, dtype)


@pytest.mark.parametrize("lead", [(7,), (2, 3), (), (0,)], ids=str)
def test_cuda_linear_matches_cpu(lead, dtype, rng):
    x = random_array(rng, lead + (33,), dtype)
    w = random_array(rng, (17, 33), dtype)
    b = random_array(rng, (17,), dtype)
    _check(F.linear(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b)), F.linear(x, w, b), dtype)
    gy = random_array(rng, lead + (17,), dtype)
    got = F.linear_backward(cupy.asarray(gy), cupy.asarray(x), cupy.asarray(w))
    for g, c in zip(got, F.linear_backward(gy, x, w)):
        _check(g, c, dtype)


def test_cuda_conv_errors_are_the_cpu_ones():
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError) as cpu:
        F.conv2d(x, w)
    with pytest.raises(ValueError) as gpu:
        F.conv2d(cupy.asarray(x), cupy.asarray(w))
    assert str(gpu.value) == str(cpu.value)
    with pytest.raises(TypeError, match="expected a cupy.ndarray like input, got numpy.ndarray"):
        F.conv2d(cupy.asarray(x), w)


@pytest.mark.parametrize("op", FAMILY_OPS["conv"])
def test_cuda_conv_check_op(op):
    """cnnkit.testing.check_op on CuPy arrays (conv2d, conv_transpose2d and linear): every sample
    case, float32 and float64, forward and backward."""
    assert "forward and backward" in check_on_device(cupy, op)
