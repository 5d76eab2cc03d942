"""Peak extra memory of conv2d forward stays within the output plus the workspace cap;
large outputs' blocks are kept for reuse, within a cap."""

import os
import subprocess
import sys
import textwrap

import numpy as np

import cnnkit
import cnnkit.functional as F
from cnnkit import _C

SCRIPT = textwrap.dedent(
    """
    import resource, numpy as np, cnnkit, cnnkit.functional as F
    cnnkit.set_workspace_bytes({cap})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 64, 64, 64), dtype=np.float32)   # 32 MiB
    w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
    F.conv2d(x[:2], w, padding=1)                                  # warm up OpenBLAS's own buffers
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    y = F.conv2d(x, w, padding=1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(after - before, y.nbytes)
    """
)


def test_conv2d_forward_peak_memory_is_output_plus_workspace():
    cap = 16 << 20
    root = os.path.dirname(os.path.dirname(cnnkit.__file__))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(cap=cap)], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    extra, output_bytes = int(out[0]), int(out[1])
    # A full im2col of this layer would be 32*576*4096 floats = 288 MiB.
    slack = 8 << 20
    assert extra <= output_bytes + cap + slack, (extra, output_bytes)


# ---- large outputs' blocks kept for reuse (csrc/common/output_blocks.h)

KEPT_MIN = 1 << 20
KEPT_MAX = 128 << 20


def _large(rng, nbytes=3 * KEPT_MIN):
    return rng.standard_normal(nbytes // 4).astype(np.float32).reshape(-1, 256)


def test_a_freed_large_output_block_is_reused_and_fully_overwritten():
    _C.free_kept_output_blocks()
    rng = np.random.default_rng(0)
    x, g = _large(rng), _large(rng)
    y = F.relu(x)
    address = y.ctypes.data
    y[...] = np.nan  # what the next owner of the block would see if a kernel skipped elements
    del y
    assert _C.kept_output_bytes() >= x.nbytes
    gx = F.relu_backward(g, x)
    assert gx.ctypes.data == address
    assert _C.kept_output_bytes() == 0
    np.testing.assert_array_equal(gx, g * (x > 0))


def test_a_kept_block_lives_as_long_as_any_view_of_its_array():
    _C.free_kept_output_blocks()
    rng = np.random.default_rng(1)
    x = _large(rng)
    y = F.relu(x)
    view = y[::3, 1:]
    del y
    assert _C.kept_output_bytes() == 0  # the view still holds the block
    F.relu(_large(rng))  # a same-sized output must not take it
    np.testing.assert_array_equal(view, np.maximum(x, 0)[::3, 1:])
    assert view.base is not None and view.flags.writeable
    del view
    assert _C.kept_output_bytes() >= x.nbytes


def test_large_outputs_are_64_byte_aligned_writeable_arrays():
    x = _large(np.random.default_rng(2))
    y = F.relu(x)
    assert y.ctypes.data % 64 == 0 and y.flags.writeable and y.flags.c_contiguous
    y += 1  # an ordinary array to numpy
    np.testing.assert_array_equal(y, np.maximum(x, 0) + 1)


def test_small_outputs_are_not_kept():
    _C.free_kept_output_blocks()
    y = F.relu(np.ones((KEPT_MIN // 4 - 1,), np.float32))
    del y
    assert _C.kept_output_bytes() == 0


def test_kept_bytes_stay_within_the_cap_and_can_be_freed():
    _C.free_kept_output_blocks()
    outputs = [F.relu(np.ones((k, KEPT_MIN // 4), np.float32)) for k in range(1, 24)]  # 276 MiB
    del outputs
    kept = _C.kept_output_bytes()
    assert KEPT_MAX - 23 * KEPT_MIN <= kept <= KEPT_MAX
    _C.free_kept_output_blocks()
    assert _C.kept_output_bytes() == 0


def test_an_output_over_the_cap_is_not_kept():
    _C.free_kept_output_blocks()
    y = F.relu(np.ones((KEPT_MAX // 4 + 1024,), np.float32))
    del y
    assert _C.kept_output_bytes() == 0
