"""Shared fixtures and tolerances for cnnkit's tests.

- `rng`: a NumPy Generator seeded per test (from the test's node id), so every test
  is reproducible on its own and tests do not share a random stream.
- `dtype`: parametrises a test over float32 and float64 (ids f32 / f64).
- `assert_close(actual, expected, dtype)`: compares with the dtype's tolerance,
  rtol plus an atol scaled to the magnitude of the expected result.
- `workspace_bytes`: sets cnnkit's im2col workspace bound for one test and restores it.

Test modules import the helpers with `from conftest import ...` (pytest puts tests/
on sys.path); the references are cnnkit.reference.
"""

import zlib

import numpy as np
import pytest

import cnnkit

DTYPES = (np.float32, np.float64)
DTYPE_IDS = ("f32", "f64")

# Relative tolerance per dtype: float32 results of sums of a few hundred terms
# agree with a float64 reference to about 1e-5 relative to the largest value.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def tolerance(dtype, expected):
    """(rtol, atol) for comparing a result of `dtype` with the float64 `expected`:
    atol is rtol times the largest magnitude in expected, so that entries that
    cancel to near zero are judged on the scale of the whole result (an all-zero
    expected result must then be matched exactly)."""
    rtol = RTOL[np.dtype(dtype)]
    expected = np.asarray(expected)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    return rtol, rtol * scale


def assert_close(actual, expected, dtype, err_msg=""):
    """actual (a cnnkit result) has exactly `dtype` and the shape of expected, and
    matches it to the dtype's tolerance."""
    assert isinstance(actual, np.ndarray), f"expected an ndarray, got {type(actual).__name__}"
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == np.shape(expected), f"shape {actual.shape}, expected {np.shape(expected)}"
    rtol, atol = tolerance(dtype, expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=err_msg)


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
def num_threads():
    """Returns cnnkit.set_num_threads; the old thread count is restored after the test."""
    saved = cnnkit.get_num_threads()
    yield cnnkit.set_num_threads
    cnnkit.set_num_threads(saved)
