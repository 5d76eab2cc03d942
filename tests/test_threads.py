"""cnnkit's threads: the thread-count setting, determinism across thread counts,
concurrent calls from Python threads, GIL release, and OMP_NUM_THREADS."""

import concurrent.futures
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cnnkit
from cnnkit import functional as F

from cnnkit import reference as ref
from conftest import assert_close, random_array


DEFAULT_THREADS = cnnkit.get_num_threads()


def test_num_threads_round_trip(num_threads):
    for n in (1, 3, 2):
        num_threads(n)
        assert cnnkit.get_num_threads() == n


def test_num_threads_fixture_restored():
    """Runs after the round trip: the fixture put the old count back."""
    assert cnnkit.get_num_threads() == DEFAULT_THREADS >= 1


@pytest.mark.parametrize("n", [0, -2, 1025, 2**40, 2**64])
def test_num_threads_must_be_in_range(n):
    before = cnnkit.get_num_threads()
    with pytest.raises(ValueError, match="set_num_threads: n: expected an (integer in \\[1, 1024\\]|int within the int64 range), got"):
        cnnkit.set_num_threads(n)
    assert cnnkit.get_num_threads() == before


@pytest.mark.parametrize("fn, arg", [(cnnkit.set_num_threads, "n"), (cnnkit.set_workspace_bytes, "bytes")])
@pytest.mark.parametrize("value", [2.0, "2", None, True])
def test_thread_and_workspace_setters_take_ints_only(fn, arg, value):
    with pytest.raises(TypeError, match=f"{fn.__name__}: {arg}: expected an int, got"):
        fn(value)


@pytest.mark.parametrize("value", [0, -1, 2**63])
def test_workspace_bytes_must_be_a_positive_int64(value, workspace_bytes):
    with pytest.raises(ValueError, match="set_workspace_bytes: bytes: expected"):
        workspace_bytes(value)


def test_numpy_integers_are_ints(num_threads, workspace_bytes):
    num_threads(np.int64(1))
    assert cnnkit.get_num_threads() == 1
    workspace_bytes(np.int32(1 << 20))
    assert cnnkit.get_workspace_bytes() == 1 << 20


# Workloads large enough for parallel_for to split them, one per kernel path (the
# Winograd ones take it in both directions). The direct kernels split work into
# disjoint parts whose sums keep their order, so their results must not depend on the
# thread count at all; the GEMM paths go through OpenBLAS, whose threaded sgemm rounds
# differently from its single-threaded one (_C.matmul alone shows it), so there only
# the reference tolerance is asked for.
DIRECT = {"depthwise", "direct-small"}
WORKLOADS = {
    "gemm": ((4, 8, 32, 32), (16, 8, 3, 3), dict(padding=1)),
    "gemm-strided-grouped": ((3, 8, 33, 30), (8, 4, 3, 3), dict(stride=2, groups=2, dilation=(1, 2))),
    "pointwise": ((4, 40, 16, 16), (8, 40, 1, 1), {}),
    "depthwise": ((4, 16, 32, 32), (32, 1, 3, 3), dict(padding=1, groups=16)),
    "direct-small": ((8, 2, 40, 40), (6, 2, 3, 3), {}),
    "winograd": ((4, 16, 21, 22), (16, 16, 3, 3), dict(padding=1)),
    "winograd-strided": ((3, 4, 41, 38), (16, 4, 6, 6), dict(stride=2, padding=2)),
    # More filter rows than tiles, and the other way round: a product split across
    # threads by rows (of packed filters, with the own sgemm), or by columns.
    "winograd-deep": ((2, 256, 8, 8), (168, 256, 3, 3), dict(padding=1)),
    "winograd-wide": ((2, 64, 40, 40), (32, 64, 3, 3), dict(padding=1)),
}


def _run_all(x, w, b, gy, kw):
    """conv2d, conv2d_backward, and the transposed pair on the same operands."""
    y = F.conv2d(x, w, b, **kw)
    grads = F.conv2d_backward(gy, x, w, **kw)
    yt = F.conv_transpose2d(gy, w, None, **kw)  # maps gy back to (nearly) x's shape
    gt = F.conv_transpose2d_backward(x[:, :, : yt.shape[2], : yt.shape[3]], gy, w, **kw)
    return [y, *grads, yt, *gt]


def _workload(name, dtype, rng):
    xs, ws, kw = WORKLOADS[name]
    x = random_array(rng, xs, dtype)
    w = random_array(rng, ws, dtype)
    b = random_array(rng, (ws[0],), dtype)
    out = ref.conv2d(x[:1], w, None, **kw).shape
    gy = random_array(rng, (xs[0],) + out[1:], dtype)
    return x, w, b, gy, kw


def _assert_same(name, got, want):
    """got equals want: bit for bit on the direct paths, to the dtype's tolerance on GEMM paths."""
    for g, w in zip(got, want):
        if name in DIRECT:
            np.testing.assert_array_equal(g, w)
        else:
            assert_close(g, w.astype(np.float64), w.dtype)


# 24 threads split each of a Winograd layer's 36 products across threads (fewer than
# two products per thread).
@pytest.mark.parametrize("threads", [2, 24])
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_results_identical_for_1_and_more_threads(name, threads, dtype, rng, num_threads):
    x, w, b, gy, kw = _workload(name, dtype, rng)
    num_threads(1)
    one = _run_all(x, w, b, gy, kw)
    num_threads(threads)
    more = _run_all(x, w, b, gy, kw)
    _assert_same(name, more, one)
    assert_close(one[0], ref.conv2d(x, w, b, **kw), dtype)  # and they are right
    assert_close(one[1], ref.conv2d_backward(gy, x, w, **kw)[0], dtype)


def test_concurrent_calls_match_single_threaded(rng, num_threads):
    """Four Python threads call the kernels at once; each result equals the one
    computed alone with one thread."""
    names = [name for name in WORKLOADS for _ in (np.float32, np.float64)]
    jobs = [_workload(name, dtype, rng) for name in WORKLOADS for dtype in (np.float32, np.float64)]
    num_threads(1)
    alone = [_run_all(*job) for job in jobs]
    num_threads(2)

    def run(i):
        return i, [_run_all(*jobs[i]) for _ in range(3)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for i, repeats in pool.map(run, [i for _ in range(2) for i in range(len(jobs))]):
            for results in repeats:
                _assert_same(names[i], results, alone[i])


def test_concurrent_errors_are_raised_in_their_thread():
    """A failing call in one thread does not disturb the others."""
    x = np.ones((2, 4, 8, 8))
    w = np.ones((4, 4, 3, 3))

    def call(i):
        if i % 2:
            with pytest.raises(ValueError, match="conv2d: stride:"):
                F.conv2d(x, w, stride=0)
            return None
        return F.conv2d(x, w)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for y in pool.map(call, range(16)):
            if y is not None:
                np.testing.assert_array_equal(y, np.full((2, 4, 6, 6), 36.0))


def _long_conv_operands():
    """float64 operands for one conv2d call of at least 0.2 s on this machine,
    found by doubling the batch."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((128, 128, 3, 3))
    n = 2
    while True:
        x = rng.standard_normal((n, 128, 32, 32))
        t = time.perf_counter()
        F.conv2d(x, w, padding=1)
        if time.perf_counter() - t >= 0.2 or n >= 256:
            return x, w
        n *= 2


def test_gil_is_released_during_a_kernel(num_threads):
    """While one thread is inside a long conv2d, the main thread keeps running
    Python code. Checked without timing thresholds on the machine's speed: the
    longest stretch in which the main thread made no progress while the other
    thread was inside the call must be a small part of that call. Were the GIL
    held, that stretch would be the whole call."""
    num_threads(1)
    x, w = _long_conv_operands()
    inside = threading.Event()
    span = {}

    def worker():
        inside.set()
        span["t0"] = time.perf_counter()
        F.conv2d(x, w, padding=1)
        span["t1"] = time.perf_counter()
        inside.clear()

    th = threading.Thread(target=worker)
    samples, first, last, max_gap = 0, None, None, 0.0
    th.start()
    while th.is_alive():
        if inside.is_set():
            now = time.perf_counter()
            if last is not None:
                max_gap = max(max_gap, now - last)
            first = now if first is None else first
            last = now
            samples += 1
    th.join()
    duration = span["t1"] - span["t0"]
    assert duration >= 0.1
    assert samples >= 100, f"main thread ran only {samples} iterations during a {duration:.3f} s call"
    max_gap = max(max_gap, first - span["t0"], span["t1"] - last)
    assert max_gap < 0.5 * duration, f"main thread stalled {max_gap:.3f} s of a {duration:.3f} s call"


def _run_python(code, **env_vars):
    """Runs code in a fresh interpreter that imports this cnnkit (installed or from
    PYTHONPATH=python alike); returns the CompletedProcess."""
    package_parent = os.path.join(os.path.dirname(cnnkit.__file__), "..")
    env = dict(os.environ, **env_vars)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("omp", ["1", "3"])
def test_omp_num_threads_is_honoured(omp):
    out = _run_python("import cnnkit; print(cnnkit.get_num_threads())", OMP_NUM_THREADS=omp)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == omp


def test_set_num_threads_after_a_parallel_call():
    """Restarting the thread pool after it has run a job must leave a working pool
    (in a subprocess, so that a crash fails this test alone)."""
    code = """if True:
        import time
        import numpy as np
        import cnnkit
        cnnkit.set_num_threads(2)
        x, w = np.ones((4, 8, 32, 32)), np.ones((16, 8, 3, 3))
        y = cnnkit.F.conv2d(x, w, padding=1)  # a job split over two threads
        for n in (2, 3, 1, 2):
            cnnkit.set_num_threads(n)
            time.sleep(0.1)  # the new workers wake up before any new job
            assert np.array_equal(cnnkit.F.conv2d(x, w, padding=1), y)
        print("ok")
    """
    out = _run_python(code)
    assert out.returncode == 0, f"exit status {out.returncode} (-11: segfault)\n{out.stderr[-2000:]}"
    assert out.stdout.strip() == "ok"
