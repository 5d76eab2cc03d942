"""Shared fixtures and tolerances for cnnkit's tests.

- `rng`: a NumPy Generator seeded per test (from the test's node id), so every test
  is reproducible on its own and tests do not share a random stream.
- `dtype`: parametrises a test over float32 and float64 (ids f32 / f64).
- `assert_close(actual, expected, dtype)`: cnnkit.testing.assert_close for an ndarray of
  exactly `dtype` (rtol plus an atol scaled to the magnitude of the expected result).
- `workspace_bytes`: sets cnnkit's im2col workspace bound for one test and restores it.

Test modules import the helpers with `from conftest import ...` (pytest puts tests/
on sys.path); the references are cnnkit.reference.
"""

import zlib

import numpy as np
import pytest

import cnnkit
from cnnkit import testing

DTYPES = (np.float32, np.float64)
DTYPE_IDS = ("f32", "f64")


def assert_close(actual, expected, dtype, err_msg=""):
    """actual (a cnnkit result) is an ndarray of exactly `dtype` and matches expected by
    cnnkit.testing.assert_close (the dtype's rtol, atol scaled to the largest value)."""
    assert isinstance(actual, np.ndarray), f"expected an ndarray, got {type(actual).__name__}"
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    testing.assert_close(actual, np.asarray(expected, np.float64), dtype, note=err_msg)


def random_array(rng, shape, dtype):
    """Standard-normal values (distinct, both signs) rounded to dtype."""
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture
def rng(request):
    """A Generator seeded from the test's node id: reproducible per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=DTYPES, ids=DTYPE_IDS)
def dtype(request):
    """Parametrises the test over float32 and float64."""
    return request.param


@pytest.fixture
def workspace_bytes():
    """Returns a setter for cnnkit's workspace bound; the old bound is restored after the test."""
    saved = cnnkit.get_workspace_bytes()
    yield cnnkit.set_workspace_bytes
    cnnkit.set_workspace_bytes(saved)


@pytest.fixture
def sgemm_kernel():
    """Returns cnnkit.set_sgemm_kernel; the old choice is restored after the test."""
    saved = "openblas" if cnnkit.get_sgemm_kernel() == "openblas" else "auto"
    yield cnnkit.set_sgemm_kernel
    cnnkit.set_sgemm_kernel(saved)


@pytest.fixture
def num_threads():
    """Returns cnnkit.set_num_threads; the old thread count is restored after the test."""
    saved = cnnkit.get_num_threads()
    yield cnnkit.set_num_threads
    cnnkit.set_num_threads(saved)


# ---- the CUDA backend on the host-executed kernels (tests/cuda_host)


@pytest.fixture(scope="module")
def backend():
    """The backend as it runs on CuPy, over NumPy arrays and the host-compiled kernels."""
    import cuda_host
    from cnnkit.cuda import Backend

    return Backend(np, cuda_host.host_module)


@pytest.fixture(scope="module")
def tiny_grid():
    """A backend whose grids are capped at 2 blocks, so that every grid-stride loop loops."""
    import cuda_host
    from cnnkit.cuda import Backend

    return Backend(np, cuda_host.host_module, max_blocks=2)
