"""Reliability inside a host program: forks from a busy process, interpreter exit with
daemon threads inside kernels, arguments whose geometry overflows int64, zero-size
dims for every op, validation that must not scale with a claimed (unallocated) size,
and misaligned views. Bad-input fuzzing of every public function is tests/test_fuzz.py.
"""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit import _C

from cnnkit import reference
from conftest import assert_close

ROOT = os.path.dirname(os.path.dirname(cnnkit.__file__))


def run_python(code, timeout, threads=2):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(threads))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, timeout=timeout,
                          capture_output=True, text=True)


# ---- fork while other threads are inside kernels


FORK_UNDER_LOAD = """
import os, signal, threading, time
import numpy as np
import cnnkit, cnnkit.functional as F

def kernel_loop(stop, seed):
    # small operands: the calls spend most of their time taking locks, which is when a
    # fork can catch one held
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    a = rng.standard_normal((4, 16)).astype(np.float32)
    while not stop.is_set():
        F.conv2d(x, w, padding=1)
        F.max_pool2d(x, 3, 1, 1, return_indices=True)
        F.linear(a, a)
        F.softmax(x, dim=1)

def wait_child(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.001)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None

x = np.random.default_rng(0).standard_normal((4, 8, 16, 16))
w = np.random.default_rng(1).standard_normal((8, 8, 3, 3))
expected = F.conv2d(x, w, padding=1)
stop = threading.Event()
workers = [threading.Thread(target=kernel_loop, args=(stop, i), daemon=True) for i in range(3)]
for t in workers:
    t.start()
hung = failed = 0
for _ in range(FORKS):
    pid = os.fork()
    if pid == 0:  # the pool and OpenBLAS must work, and give the parent's answer
        ok = np.array_equal(F.conv2d(x, w, padding=1), expected) and cnnkit.get_num_threads() == 2
        os._exit(0 if ok else 3)
    code = wait_child(pid, timeout=20)
    hung += code is None
    failed += code not in (None, 0)
stop.set()
for t in workers:
    t.join()
print(hung, failed)
"""


def test_fork_under_load_never_hangs_a_child():
    """Forks from a process whose threads keep entering the pool and OpenBLAS: a child
    that inherits a lock held by a parent thread blocks for ever (the pool registry's
    lock, about 1 child in 300, or OpenBLAS's allocator lock, about 1 in 1000, before
    the fork handlers). Every child must run kernels on a fresh pool and exit. In its
    own process: forking the test process, with torch loaded, costs far more."""
    forks = 400
    result = run_python(f"FORKS = {forks}\n" + FORK_UNDER_LOAD, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    hung, failed = map(int, result.stdout.split())
    assert (hung, failed) == (0, 0), f"{hung} children hung and {failed} failed of {forks}"


# ---- interpreter exit while daemon threads are inside kernels

EXIT_OPS = {
    "max_pool2d": "F.max_pool2d(x, 3, 1, 1)",
    "conv2d": "F.conv2d(x, w, padding=1)",
    "conv2d_backward": "F.conv2d_backward(F.conv2d(x, w), x, w)",
    "softmax": "F.softmax(x, dim=1)",
    "batch_norm": "F.batch_norm(x, None, None)",
    "local_response_norm": "F.local_response_norm(x, 5)",
    "linear": "F.linear(x.reshape(8, -1), x.reshape(8, -1))",
}


@pytest.mark.parametrize("op", sorted(EXIT_OPS))
def test_exit_with_daemon_threads_inside_kernels(op):
    """CPython ends a daemon thread that wants the GIL back during finalisation with
    pthread_exit: its forced unwind must not meet a noexcept frame (exit code 134)."""
    code = f"""
    import threading, time, numpy as np
    import cnnkit.functional as F
    x = np.random.default_rng(0).standard_normal((8, 16, 24, 24)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((16, 16, 3, 3)).astype(np.float32)
    def loop():
        while True:
            {EXIT_OPS[op]}
    for _ in range(3):
        threading.Thread(target=loop, daemon=True).start()
    time.sleep(0.3)
    print("exiting")
    """
    result = run_python(code, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "exiting"), result.stderr[-2000:]
    assert "terminate" not in result.stderr


# ---- geometry that overflows int64

X8 = np.ones((1, 1, 8, 8))
W3 = np.ones((1, 1, 3, 3))
S8 = np.zeros((1, 1, 4, 4), np.int64)
HUGE = [
    # (call, argument named in the message)
    (lambda: F.conv2d(X8, W3, dilation=2**61), "weight"),  # extent 2**62 + 1 > the input
    (lambda: F.conv2d(X8, W3, dilation=2**62), "dilation"),
    (lambda: F.conv2d(np.arange(64.0).reshape(1, 1, 8, 8), np.ones((1, 1, 5, 5)), dilation=2**62), "dilation"),
    (lambda: F.conv2d(X8, W3, dilation=(1, 2**63 - 1)), "dilation"),
    (lambda: F.conv2d(X8, W3, padding=2**62), "padding"),
    (lambda: F.conv2d(X8, W3, padding=2**40), "padding"),  # fits int64, but not as an array
    (lambda: F.conv2d(X8, W3, padding="same", dilation=2**62), "padding"),
    (lambda: F.conv2d(X8, W3, stride=2**64), "stride"),
    (lambda: F.conv2d(X8, W3, groups=2**64), "groups"),
    (lambda: F.conv2d(X8, W3, padding=-(2**63) - 1), "padding"),
    (lambda: F.conv2d_algorithm(np.ones((1, 64, 8, 8)), np.ones((64, 64, 5, 5)), dilation=2**62), "dilation"),
    (lambda: F.conv2d_backward(np.ones((1, 1, 6, 6)), X8, W3, dilation=2**62), "dilation"),
    (lambda: F.conv_transpose2d(X8, W3, stride=2**62, output_padding=2**62 - 1), "stride"),
    (lambda: F.conv_transpose2d(X8, W3, dilation=2**62), "dilation"),
    (lambda: F.conv_transpose2d(X8, W3, stride=2**31, dilation=2**31), "stride"),
    (lambda: F.conv_transpose2d(X8, W3, stride=2**62), "stride"),
    (lambda: F.conv_transpose2d_algorithm(X8, W3, stride=2**62), "stride"),
    (lambda: F.conv_transpose2d_backward(X8, X8, W3, stride=2**62), "stride"),
    (lambda: F.max_pool2d(X8, 2, dilation=2**62), "kernel_size"),  # extent 2**62 + 1 > the input
    (lambda: F.max_pool2d(X8, 3, dilation=2**62), "dilation"),
    (lambda: F.max_pool2d(X8, 2**63 - 1, padding=2**62), "padding"),
    (lambda: F.max_pool2d(X8, 2, stride=2**64), "stride"),
    (lambda: F.avg_pool2d(X8, 2**63 - 1, padding=2**62), "padding"),
    (lambda: F.lp_pool2d(X8, 2, 2**64), "kernel_size"),
    (lambda: F.max_unpool2d(X8[:, :, :4, :4], S8, 2, stride=2**62), "stride"),
    (lambda: F.max_unpool2d(X8[:, :, :4, :4], S8, 2**63 - 1, stride=2**62), "stride"),
    (lambda: F.max_unpool2d(X8[:, :, :4, :4], S8, 2, output_size=(2**64, 8)), "output_size"),
    (lambda: F.max_pool2d_backward(np.ones((1, 1, 4, 4)), S8, (1, 1, 2**32, 2**32)), "input_shape"),
    (lambda: F.avg_pool2d_backward(np.ones((2, 3, 4, 4)), (2, 3, 2**32, 2**32), 2), "input_shape"),
    (lambda: F.avg_pool2d_backward(np.ones((2, 3, 4, 4)), (2, 3, 2**64, 4), 2), "input_shape"),
    (lambda: F.softmax(X8, dim=2**64), "dim"),
    (lambda: F.local_response_norm(X8, 2**64), "size"),
    (lambda: F.dropout(X8, p=10**400), "p"),
    (lambda: F.batch_norm(X8, None, None, eps=10**400), "eps"),
    (lambda: _C.conv_out_size(8, 3, 1, 2**62, 2**62, 1), "padding"),
    (lambda: _C.conv_out_size(8, 3, 0, 0, 0, 1), "stride"),
    (lambda: _C.conv_transpose_out_size(8, 3, 2**62, 0, 0, 1), "stride"),
    (lambda: _C.pool_out_size(8, 3, 1, 0, 2**62, False), "dilation"),
    (lambda: _C.pool_out_size(8, 3, -1, 0, 1, True), "stride"),
]


@pytest.mark.parametrize("case", range(len(HUGE)))
def test_huge_arguments_raise_value_error_naming_the_argument(case):
    call, name = HUGE[case]
    with pytest.raises(ValueError) as info:
        call()
    assert f": {name}:" in str(info.value)


def test_formulas_agree_with_python_integers_near_the_int64_limit():
    big = 2**62
    assert _C.conv_out_size(big, 1, 1, 0, 0, 1) == big
    assert _C.conv_out_size(big, 2, big // 2, big // 2, big // 2 - 1, 1) == 4  # (2**63 - 3) // 2**61 + 1
    assert _C.conv_transpose_out_size(2, 1, big, 0, 0, 1) == big + 1
    assert _C.pool_out_size(big, 2, big // 4, 1, 1, True) == 5
    assert _C.pool_out_size(2**63 - 3, 1, 2**62, 1, 1, True) == 2


def test_validation_does_not_scale_with_a_claimed_input_shape():
    """A backward's input_shape is not an allocated array: checking it against
    grad_output must take constant time (it took hours at 2**40 before)."""
    result = run_python(
        """
        import numpy as np, cnnkit.functional as F
        for call in (lambda: F.avg_pool2d_backward(np.ones((2, 3, 4, 4)), (2, 3, 2**28, 2**28), 2),
                     lambda: F.avg_pool2d_backward(np.ones((1, 1, 4, 4)), (1, 1, 2**40, 2**19), 2, 1, 1),
                     lambda: F.lp_pool2d_backward(np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4)), 2, 2**40)):
            try:
                call()
            except ValueError as e:
                print(e)
        """,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(": grad_output: " in l or ": kernel_size: " in l for l in lines), lines


# ---- valid geometry with terms near int64's limit: the right answer in bounded memory


def test_conv2d_with_huge_padding_and_stride(dtype, rng):
    """Rows 2**61 apart: output row 1 is the valid convolution of input rows 0..2 and
    rows 0 and 2 see only padding (a padded-plane buffer of 2**62 rows overflowed)."""
    x = rng.standard_normal((2, 2, 8, 8)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    y = F.conv2d(x, w, padding=(2**61, 0), stride=(2**61, 1))
    expected = np.zeros((2, 3, 3, 6))
    expected[:, :, 1:2] = reference.conv2d(x[:, :, :3].astype(np.float64), w.astype(np.float64))
    assert_close(y, expected, dtype)


@pytest.mark.skipif("CNNKIT_SANITIZE_LOGS" in os.environ, reason="ASan's shadow memory needs more address space")
def test_conv2d_with_huge_padding_and_dilation_stays_in_bounded_memory():
    """Taps 2**24 apart on an 8-wide row: the direct path's padded copy of each plane
    would take 2.7 GB per thread; the result must come within a 1.5 GiB address space."""
    result = run_python(
        """
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
        import numpy as np, cnnkit.functional as F
        x = np.arange(64.0).reshape(1, 1, 8, 8)
        y = F.conv2d(x, np.ones((1, 1, 3, 3)), dilation=(1, 2**24), padding=(1, 2**24))
        print(y.shape, y.sum())
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # Only the centre column of each window is inside: a vertical 3-tap sum of x.
    x = np.arange(64.0).reshape(8, 8)
    column_sums = np.pad(x, ((1, 1), (0, 0)))
    expected = sum(column_sums[i:i + 8] for i in range(3)).sum()
    assert result.stdout.split() == ["(1,", "1,", "8,", "8)", str(expected)]


def test_pooling_with_a_window_beyond_int64_area(dtype):
    """kernel_size 2**32 on a 7x7 input with ceil_mode: one window covering the input,
    whose area kH * kW (2**64) does not fit int64."""
    x = np.arange(1.0, 50.0).reshape(1, 1, 7, 7).astype(dtype)
    k = 2**32
    # PyTorch's Lp pool: (avg_pool2d(x^2) * kH * kW)^(1/2), the average over the 49
    # elements inside the window (count_include_pad, no padding).
    expected = np.sqrt(np.mean(x.astype(np.float64) ** 2) * float(k) ** 2)
    assert_close(F.lp_pool2d(x, 2, kernel_size=k, ceil_mode=True), np.full((1, 1, 1, 1), expected), dtype)
    assert_close(F.avg_pool2d(x, kernel_size=2**62, ceil_mode=True), np.full((1, 1, 1, 1), 25.0), dtype)
    y, switches = F.max_pool2d(x, kernel_size=2**63 - 1, ceil_mode=True, return_indices=True)
    assert y.item() == 49 and switches.item() == 48


def test_pooling_with_a_stride_near_int64_max(dtype):
    """stride 2**63 - 1: one window per axis, at the top-left corner."""
    x = np.arange(49.0).reshape(1, 1, 7, 7).astype(dtype)
    y, switches = F.max_pool2d(x, 2, stride=2**63 - 1, ceil_mode=True, return_indices=True)
    assert y.item() == 8 and switches.item() == 8
    # The window at (-1, -1) of a 3x3 kernel with padding 1: x[0:2, 0:2] over 9 cells.
    avg = F.avg_pool2d(x, 3, stride=2**63 - 1, padding=1, ceil_mode=True)
    assert_close(avg, np.full((1, 1, 1, 1), (0 + 1 + 7 + 8) / 9), dtype)
    avg = F.avg_pool2d(x, 3, stride=2**63 - 1, padding=1, ceil_mode=True, count_include_pad=False)
    assert_close(avg, np.full((1, 1, 1, 1), (0 + 1 + 7 + 8) / 4), dtype)


def _hits(out, size, k, stride, pad, dilation):
    """For each output position along an axis, the (input position, tap) pairs inside
    the input: exact Python integers, linear in the input, whatever k may be."""
    hits = []
    for o in range(out):
        start = o * stride - pad
        hits.append([(i, (i - start) // dilation) for i in range(size)
                     if i >= start and (i - start) % dilation == 0 and (i - start) // dilation < k])
    return hits


_HUGE_TERMS = [1, 2, 3, 2**31 - 1, 2**31, 2**32, 2**40, 2**61, 2**62 - 1, 2**62, 2**63 - 1]
_MAX_OUTPUT = 4096


def _huge_geometries(seed, count, pool, ceil=False):
    """Seeded random (kernel, stride, padding, dilation, ceil_mode, output size) of one
    axis, each term small or near 2**63: `count` whose output is small enough to check
    by hand, and as many that must be refused."""
    rng = np.random.default_rng(seed)
    term = lambda: int(rng.integers(1, 5)) if rng.random() < 0.5 else int(rng.choice(_HUGE_TERMS))  # noqa: E731
    computed, refused = [], []
    while len(computed) < count or len(refused) < count:
        k = term() if pool else int(rng.integers(1, 4))  # a conv kernel is an array
        s, p, d = term(), term() - 1, term()
        if pool:
            p = min(p, k // 2)
        if max(5 + 2 * p, d * (k - 1) + 1) >= 2**63:
            out = -1  # a term of the formula beyond int64: must be refused
        elif pool:
            out = reference.pool_out_size(5, k, s, p, d, ceil)
            if 1 <= out <= 64 and not all(_hits(out, 5, k, s, p, d)):
                out = 0  # a window with no input cell: refused
        else:
            out = reference.conv_out_size(5, k, s, p, p, d)
        if 1 <= out <= 64 and len(computed) < count:
            computed.append((k, s, p, d, ceil, out))
        elif out < 1 and len(refused) < count:
            refused.append((k, s, p, d, ceil, out))
    cases = computed + refused
    return [cases[i] for i in rng.permutation(len(cases))]


def _expect_result_or_named_error(call, out_h, out_w, names):
    """A geometry whose output is empty (or whose formula leaves int64) must raise
    naming one of `names`; else it must return (the caller compares the result)."""
    if out_h < 1 or out_w < 1:
        with pytest.raises(ValueError) as info:
            call()
        assert any(f": {n}:" in str(info.value) for n in names), str(info.value)
        return None
    return call()


@pytest.mark.parametrize("seed", range(4))
def test_conv2d_geometry_near_int64_limits_matches_exact_integer_reference(seed):
    """Random strides, paddings and dilations up to 2**63 - 1 on each axis: every call
    either raises naming its argument or equals a reference computed with Python
    integers (the kernels' index arithmetic must not wrap)."""
    rng = np.random.default_rng(100 + seed)
    x = rng.standard_normal((1, 2, 5, 5))
    rows, cols = _huge_geometries(seed, 24, False), _huge_geometries(seed + 50, 24, False)
    for (kh, sh, ph, dh, _, ho), (kw, sw, pw, dw, _, wo) in zip(rows, cols):
        w = rng.standard_normal((3, 2, kh, kw))
        y = _expect_result_or_named_error(
            lambda: F.conv2d(x, w, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw)),
            ho, wo, ("kernel_size", "dilation", "padding", "weight"))
        if y is None:
            continue
        expected = np.zeros((1, 3, ho, wo))
        hr, hc = _hits(ho, 5, kh, sh, ph, dh), _hits(wo, 5, kw, sw, pw, dw)
        for oh in range(ho):
            for ow in range(wo):
                for ih, ki in hr[oh]:
                    for iw, kj in hc[ow]:
                        expected[0, :, oh, ow] += w[:, :, ki, kj] @ x[0, :, ih, iw]
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12,
                                   err_msg=f"rows {kh, sh, ph, dh}, columns {kw, sw, pw, dw}")


@pytest.mark.parametrize("seed", range(4))
def test_pool_geometry_near_int64_limits_matches_exact_integer_reference(seed):
    """As above for max pool (with switches), avg pool (both divisor rules) and Lp pool:
    kernels, strides, paddings and dilations up to 2**63 - 1, with ceil_mode."""
    rng = np.random.default_rng(200 + seed)
    x = rng.permutation(50)[:25].reshape(1, 1, 5, 5).astype(np.float64)
    ceil = seed % 2 == 1
    rows, cols = _huge_geometries(seed, 24, True, ceil), _huge_geometries(seed + 50, 24, True, ceil)
    for (kh, sh, ph, dh, _, ho), (kw, sw, pw, dw, _, wo) in zip(rows, cols):
        args = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), ceil_mode=ceil)
        where = f"rows {kh, sh, ph, dh}, columns {kw, sw, pw, dw}, ceil_mode={ceil}"
        names = ("kernel_size", "dilation", "padding", "stride")
        got = _expect_result_or_named_error(
            lambda: F.max_pool2d(x, **args, dilation=(dh, dw), return_indices=True), ho, wo, names)
        if got is None:
            continue
        hr, hc = _hits(ho, 5, kh, sh, ph, dh), _hits(wo, 5, kw, sw, pw, dw)
        y, switches = got
        for oh in range(ho):
            for ow in range(wo):
                cells = [ih * 5 + iw for ih, _ in hr[oh] for iw, _ in hc[ow]]
                best = max(cells, key=lambda c: x.flat[c])
                assert (y[0, 0, oh, ow], switches[0, 0, oh, ow]) == (x.flat[best], best), where
        if dh != 1 or dw != 1:
            continue  # avg and Lp pooling take no dilation
        for include_pad in (True, False):
            avg = F.avg_pool2d(x, **args, count_include_pad=include_pad)
            lp = None  # Lp pooling takes no padding
            if include_pad and ph == pw == 0:
                lp = F.lp_pool2d(x, 2, kernel_size=(kh, kw), stride=(sh, sw), ceil_mode=ceil)
            for oh in range(ho):
                for ow in range(wo):
                    total = sum(x[0, 0, ih, iw] for ih, _ in hr[oh] for iw, _ in hc[ow])
                    squares = sum(x[0, 0, ih, iw] ** 2 for ih, _ in hr[oh] for iw, _ in hc[ow])
                    h0, w0 = oh * sh - ph, ow * sw - pw
                    if include_pad:  # the window clipped to the padded input
                        count = (min(h0 + kh, 5 + ph) - h0) * (min(w0 + kw, 5 + pw) - w0)
                    else:
                        count = len(hr[oh]) * len(hc[ow])
                    np.testing.assert_allclose(avg[0, 0, oh, ow], total / count, rtol=1e-12, err_msg=where)
                    if lp is not None:  # PyTorch's form: (avg of squares * kH * kW) ** 0.5
                        np.testing.assert_allclose(lp[0, 0, oh, ow], math.sqrt(squares / count * kh * kw),
                                                   rtol=1e-12, err_msg=where)


# ---- zero-size dims: every op gives the empty (or bias-only) result, never a crash


def _zeros(*shape):
    return np.zeros(shape)


def _conv_cases():
    cases = []
    for xs, ws, groups in [((2, 0, 5, 5), (3, 0, 3, 3), 1), ((2, 0, 5, 5), (4, 0, 3, 3), 2),
                           ((2, 0, 5, 5), (3, 0, 1, 1), 1), ((2, 0, 5, 5), (3, 0, 5, 5), 1),
                           ((2, 4, 5, 5), (0, 4, 3, 3), 1), ((0, 4, 5, 5), (3, 4, 3, 3), 1),
                           ((2, 4, 5, 5), (0, 2, 3, 3), 2), ((2, 0, 5, 5), (0, 0, 3, 3), 1),
                           ((2, 3, 0, 5), (4, 3, 1, 1), 1), ((2, 3, 5, 0), (4, 3, 1, 1), 1),
                           ((2, 32, 0, 6), (32, 32, 3, 3), 1), ((2, 0, 12, 12), (32, 0, 3, 3), 1),
                           ((2, 0, 9, 9), (8, 0, 3, 3), 1), ((2, 8, 0, 9), (8, 1, 3, 3), 8)]:
        for padding in (0, 1):
            cases.append(("conv2d", xs, ws, groups, padding))
    return cases


@pytest.mark.parametrize("case", _conv_cases(), ids=lambda c: f"{c[0]}-x{c[1]}-w{c[2]}-g{c[3]}-p{c[4]}")
def test_zero_size_conv2d(case, dtype):
    """An empty sum is zero: a convolution over zero input channels, or whose windows
    hold only padding, is its bias; one with no batch, output channels or plane is empty."""
    _, xs, ws, groups, padding = case
    x = np.ones(xs, dtype)
    w = np.ones(ws, dtype)
    b = np.arange(1, ws[0] + 1, dtype=dtype)
    ho, wo = (s + 2 * padding - k + 1 for s, k in zip(xs[2:], ws[2:]))
    if ho < 1 or wo < 1:
        with pytest.raises(ValueError, match="conv2d: weight: dilated kernel size .* larger than the padded input"):
            F.conv2d(x, w, b, padding=padding, groups=groups)
        return
    y = F.conv2d(x, w, b, padding=padding, groups=groups)
    assert y.shape == (xs[0], ws[0], ho, wo) and y.dtype == dtype
    if xs[1] == 0 or xs[2] == 0 or xs[3] == 0:
        np.testing.assert_array_equal(y, np.broadcast_to(b[:, None, None], y.shape))
    gy = np.ones_like(y)
    gx, gw, gb = F.conv2d_backward(gy, x, w, padding=padding, groups=groups)
    assert (gx.shape, gw.shape, gb.shape) == (x.shape, w.shape, (ws[0],))
    np.testing.assert_array_equal(gb, np.full(ws[0], xs[0] * ho * wo, dtype))
    if xs[2] == 0 or xs[3] == 0 or xs[0] == 0:
        np.testing.assert_array_equal(gw, 0)
    if ws[0] == 0:
        np.testing.assert_array_equal(gx, 0)


@pytest.mark.parametrize("xs, ws, groups", [((2, 0, 5, 5), (0, 3, 3, 3), 1), ((2, 4, 5, 5), (4, 0, 3, 3), 1),
                                            ((0, 4, 5, 5), (4, 3, 3, 3), 1), ((2, 0, 5, 5), (0, 2, 3, 3), 2),
                                            ((2, 4, 0, 5), (4, 3, 3, 3), 1), ((2, 0, 6, 6), (0, 32, 4, 4), 1)])
def test_zero_size_conv_transpose2d(xs, ws, groups, dtype):
    x = np.ones(xs, dtype)
    w = np.ones(ws, dtype)
    c_out = ws[1] * groups
    b = np.arange(1, c_out + 1, dtype=dtype)
    y = F.conv_transpose2d(x, w, b, stride=2, groups=groups)
    ho, wo = ((s - 1) * 2 + k for s, k in zip(xs[2:], ws[2:]))
    assert y.shape == (xs[0], c_out, ho, wo)
    if xs[1] == 0 or xs[2] == 0:
        np.testing.assert_array_equal(y, np.broadcast_to(b[:, None, None], y.shape))
    gx, gw, gb = F.conv_transpose2d_backward(np.ones_like(y), x, w, stride=2, groups=groups)
    assert (gx.shape, gw.shape) == (x.shape, w.shape)
    np.testing.assert_array_equal(gb, np.full(c_out, xs[0] * ho * wo, dtype))
    if xs[0] == 0 or xs[2] == 0:
        np.testing.assert_array_equal(gw, 0)


@pytest.mark.parametrize("xs, ws", [((3, 0), (4, 0)), ((3, 5), (0, 5)), ((0, 5), (4, 5)), ((0, 0), (0, 0)),
                                    ((2, 3, 0), (4, 0))])
def test_zero_size_linear(xs, ws, dtype):
    x = np.ones(xs, dtype)
    w = np.ones(ws, dtype)
    b = np.arange(1, ws[0] + 1, dtype=dtype)
    y = F.linear(x, w, b)
    assert y.shape == xs[:-1] + (ws[0],)
    np.testing.assert_array_equal(y, np.broadcast_to(b + xs[-1], y.shape))
    gx, gw, gb = F.linear_backward(np.ones_like(y), x, w)
    assert (gx.shape, gw.shape, gb.shape) == (x.shape, w.shape, b.shape)
    np.testing.assert_array_equal(gb, np.full(ws[0], np.prod(xs[:-1]), dtype))
    np.testing.assert_array_equal(gx, ws[0])
    np.testing.assert_array_equal(gw, np.prod(xs[:-1]))


POOL_SHAPES = [(2, 0, 5, 5), (0, 3, 5, 5)]


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_zero_size_pooling(shape, dtype):
    x = np.ones(shape, dtype)
    y, s = F.max_pool2d(x, 2, return_indices=True)
    assert y.shape == s.shape == shape[:2] + (2, 2)
    assert F.max_pool2d_backward(y, s, shape).shape == shape
    u = F.max_unpool2d(y, s, 2, output_size=shape[2:])
    assert u.shape == shape and F.max_unpool2d_backward(u, s).shape == y.shape
    a = F.avg_pool2d(x, 3, 1, 1, ceil_mode=True)
    assert a.shape == shape and F.avg_pool2d_backward(a, shape, 3, 1, 1, ceil_mode=True).shape == shape
    p = F.lp_pool2d(x, 2, 2)
    assert p.shape == shape[:2] + (2, 2) and F.lp_pool2d_backward(p, x, 2, 2).shape == shape


@pytest.mark.parametrize("shape", [(2, 3, 0, 5), (2, 3, 5, 0)])
def test_zero_size_plane_pooling_is_refused(shape):
    for call in (lambda: F.max_pool2d(np.ones(shape), 2), lambda: F.avg_pool2d(np.ones(shape), 2),
                 lambda: F.lp_pool2d(np.ones(shape), 2, 2)):
        with pytest.raises(ValueError, match="kernel_size: .*larger than the padded input"):
            call()


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 3), (2, 0, 4), (0, 0, 0)])
def test_zero_size_elementwise_and_softmax(shape, dtype):
    x = np.ones(shape, dtype)
    for fwd, bwd in ((F.relu, F.relu_backward), (F.sigmoid, F.sigmoid_backward), (F.tanh, F.tanh_backward)):
        y = fwd(x)
        assert y.shape == shape and bwd(y, y).shape == shape
    for dim in range(len(shape)):
        for fwd, bwd in ((F.softmax, F.softmax_backward), (F.log_softmax, F.log_softmax_backward)):
            y = fwd(x, dim)
            assert y.shape == shape and bwd(y, y, dim).shape == shape
    y, mask = F.dropout(x, 0.5, seed=1)
    assert y.shape == mask.shape == shape and F.dropout_backward(y, mask, 0.5).shape == shape
    assert F.mse_loss(x, x, "none").shape == shape
    assert float(F.mse_loss(x, x, "sum")) == 0.0
    assert np.isnan(F.mse_loss(x, x))  # the mean of nothing, as torch
    assert F.mse_loss_backward(x, x).shape == shape


@pytest.mark.parametrize("shape", [(0, 3), (2, 0), (0, 0)])
def test_zero_size_cross_entropy(shape, dtype):
    logits = np.ones(shape, dtype)
    target = np.zeros(shape[0], np.int64)
    if shape[0] and not shape[1]:
        with pytest.raises(ValueError, match="cross_entropy: target: expected class indices in \\[0, 0\\)"):
            F.cross_entropy(logits, target)
        return
    assert F.cross_entropy(logits, target, "none").shape == (0,)
    assert float(F.cross_entropy(logits, target, "sum")) == 0.0
    assert np.isnan(F.cross_entropy(logits, target))
    assert F.cross_entropy_backward(logits, target).shape == shape


@pytest.mark.parametrize("shape", [(2, 0, 4, 4), (0, 3, 4, 4), (2, 3, 0, 4), (2, 0), (0, 3)])
def test_zero_size_batch_norm_and_lrn(shape, dtype):
    c = shape[1]
    x = np.ones(shape, dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    y, saved = F.batch_norm(x, np.ones(c, dtype), np.zeros(c, dtype), rm, rv, training=True)
    assert y.shape == shape
    np.testing.assert_array_equal(rm, 0)  # no values: the running stats stay (as torch)
    np.testing.assert_array_equal(rv, 1)
    gx, gg, gb = F.batch_norm_backward(np.ones_like(y), saved)
    assert gx.shape == shape and gg.shape == gb.shape == (c,)
    np.testing.assert_array_equal(gg, 0)
    np.testing.assert_array_equal(gb, 0)
    y, saved = F.batch_norm(x, None, None, rm, rv, training=False)
    assert y.shape == shape and F.batch_norm_backward(y, saved)[0].shape == shape
    if len(shape) >= 3:
        assert F.local_response_norm(x, 3).shape == shape
        assert F.local_response_norm_backward(x, x, 3).shape == shape


def test_zero_size_cases_match_torch_where_torch_answers():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    t = torch.from_numpy
    x = _zeros(0, 3, 5, 5)
    np.testing.assert_array_equal(F.conv2d(x, np.ones((4, 3, 3, 3))), tf.conv2d(t(x), t(np.ones((4, 3, 3, 3)))).numpy())
    lin = F.linear(_zeros(3, 0), np.ones((4, 0)), np.arange(4.0))
    np.testing.assert_array_equal(lin, tf.linear(t(_zeros(3, 0)), t(np.ones((4, 0))), t(np.arange(4.0))).numpy())
    for shape in [(2, 0), (0, 3)]:
        for d in (0, 1):
            np.testing.assert_array_equal(F.log_softmax(_zeros(*shape), d), tf.log_softmax(t(_zeros(*shape)), d).numpy())
    np.testing.assert_array_equal(F.cross_entropy(_zeros(0, 3), np.zeros(0, np.int64)),
                                  tf.cross_entropy(t(_zeros(0, 3)), t(np.zeros(0, np.int64))).numpy())
    y, s = F.max_pool2d(x, 2, return_indices=True)
    ty, ts = tf.max_pool2d(t(x), 2, return_indices=True)
    assert y.shape == tuple(ty.shape) and s.shape == tuple(ts.shape)


# ---- misaligned (valid) views are read as their values, not through misaligned pointers


def _misaligned(a):
    buf = np.frombuffer(bytearray(a.nbytes + 1), dtype=np.uint8)[1:]
    b = buf.view(a.dtype).reshape(a.shape)
    b[...] = a
    assert not b.flags.aligned
    return b


MISALIGNED_OPS = {
    "conv2d": lambda x, w, g, s, t: F.conv2d(x, w, padding=1),
    "conv2d_backward": lambda x, w, g, s, t: F.conv2d_backward(g, x, w, padding=1),
    "conv_transpose2d": lambda x, w, g, s, t: F.conv_transpose2d(x, w.transpose(1, 0, 2, 3).copy(), padding=1),
    "max_pool2d_backward": lambda x, w, g, s, t: F.max_pool2d_backward(g[:, :, ::2, ::2].copy(), s, x.shape),
    "max_unpool2d": lambda x, w, g, s, t: F.max_unpool2d(x[:, :, ::2, ::2].copy(), s, 2),
    "softmax": lambda x, w, g, s, t: F.softmax(x, 1),
    "cross_entropy": lambda x, w, g, s, t: F.cross_entropy(x[:, :, 0, 0].copy(), t, "none"),
    "batch_norm": lambda x, w, g, s, t: F.batch_norm(x, None, None)[0],
    "local_response_norm": lambda x, w, g, s, t: F.local_response_norm(x, 3),
    "relu_backward": lambda x, w, g, s, t: F.relu_backward(g, x),
}


@pytest.mark.parametrize("op", sorted(MISALIGNED_OPS))
def test_misaligned_views_give_the_aligned_result(op, rng):
    x = rng.standard_normal((2, 4, 6, 6))
    w = rng.standard_normal((4, 4, 3, 3))
    g = rng.standard_normal((2, 4, 6, 6))
    s = F.max_pool2d(x, 2, return_indices=True)[1]
    t = np.array([1, 3])
    fn = MISALIGNED_OPS[op]
    expected = fn(x, w, g, s, t)
    # every argument that the op reads, misaligned (switches and targets included)
    actual = fn(*(_misaligned(a) if a.flags.c_contiguous else a for a in (x, w, g, s, t)))
    if not isinstance(expected, tuple):
        actual, expected = (actual,), (expected,)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


def test_misaligned_running_stats_are_refused_not_updated_in_a_copy():
    x = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(ValueError, match="batch_norm: running_mean: expected a writeable, aligned .* misaligned"):
        F.batch_norm(x, None, None, _misaligned(np.zeros(3)), np.ones(3))
