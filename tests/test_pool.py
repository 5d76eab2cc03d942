"""The pooling family (max_pool2d with switches, max_unpool2d, avg_pool2d, lp_pool2d and
their backwards) against the float64 references in cnnkit.reference: seeded sweeps
with ties and NaNs (switches compared exactly), finite differences, torch cross-checks,
edge cases (empty batch, odd layouts, threads) and every error path."""

import dataclasses
import math

import numpy as np
import pytest

import cnnkit
from cnnkit import _C
from cnnkit import functional as F

from cnnkit import reference as ref
from conftest import assert_close

INF = float("inf")

# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PoolCase:
    """One pooling configuration. max_pool2d uses every field; avg_pool2d ignores
    dilation; lp_pool2d ignores padding and dilation and uses norm_type."""

    n: int
    c: int
    h: int
    w: int
    kernel_size: object
    stride: object = None
    padding: object = 0
    dilation: object = 1
    ceil_mode: bool = False
    count_include_pad: bool = True
    norm_type: float = 2.0

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    def max_kwargs(self):
        return dict(
            kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation,
            ceil_mode=self.ceil_mode,
        )

    def avg_kwargs(self):
        return dict(
            kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )

    def lp_kwargs(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, ceil_mode=self.ceil_mode)

    def __str__(self):
        def fmt(v):
            return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

        return (
            f"n{self.n}c{self.c}-{self.h}x{self.w}-k{fmt(self.kernel_size)}-s{fmt(self.stride)}"
            f"-p{fmt(self.padding)}-d{fmt(self.dilation)}{'-ceil' if self.ceil_mode else ''}"
            f"{'' if self.count_include_pad else '-nopadcount'}-p{self.norm_type:g}"
        )


def _windows_hold_input(size, k, s, p, d, ceil_mode):
    """Every window along the axis has an input element (a dilated window that starts
    in the padding may not, and cnnkit refuses such a geometry)."""
    out = ref.pool_out_size(size, k, s, p, d, ceil_mode)
    return out >= 1 and all(
        any(0 <= o * s - p + i * d < size for i in range(k)) for o in range(out)
    )


def _valid(case, padding, dilation):
    k = ref._pair(case.kernel_size)
    s = k if case.stride is None else ref._pair(case.stride)
    p, d = ref._pair(padding), ref._pair(dilation)
    return all(
        p[a] <= k[a] // 2 and _windows_hold_input(case.x_shape[2 + a], k[a], s[a], p[a], d[a], case.ceil_mode)
        for a in range(2)
    )


def _int_or_pair(rng, lo, hi):
    if rng.random() < 0.5:
        return int(rng.integers(lo, hi + 1))
    return tuple(int(v) for v in rng.integers(lo, hi + 1, 2))


def _sweep(count, seed=20240611):
    """Random cases valid for all three pools: rows up to 45 wide so that the vector
    paths (16 float32 or 8 float64 outputs at a time, column stride 1 or 2) and their
    overlapping last chunks run, next to the scalar window path."""
    rng = np.random.default_rng(seed)
    norms = (2.0, 3.0, 1.5, INF, -INF, 1.0)
    cases = []
    while len(cases) < count:
        k = _int_or_pair(rng, 1, 4)
        kp = ref._pair(k)
        stride = None if rng.random() < 0.2 else _int_or_pair(rng, 1, 3)
        padding = tuple(int(rng.integers(0, kp[a] // 2 + 1)) for a in range(2))
        if rng.random() < 0.3:
            padding = min(padding)
        case = PoolCase(
            n=int(rng.integers(1, 3)), c=int(rng.integers(1, 4)),
            h=int(rng.integers(1, 12)), w=int(rng.integers(1, 46)),
            kernel_size=k, stride=stride, padding=padding,
            dilation=1 if rng.random() < 0.4 else _int_or_pair(rng, 1, 3),
            ceil_mode=bool(rng.random() < 0.5), count_include_pad=bool(rng.random() < 0.5),
            norm_type=norms[len(cases) % len(norms)],
        )
        if _valid(case, case.padding, case.dilation) and _valid(case, 0, 1):
            cases.append(case)
    return cases


CASES = _sweep(150)
CASE_PARAMS = [pytest.param(c, id=f"{i:03d}-{c}") for i, c in enumerate(CASES)]


def ties(rng, shape, dtype, nan_fraction=0.0):
    """Values drawn from a few integers (negative ones too, so padding must never
    win), with some NaNs: many ties in every window."""
    x = rng.integers(-2, 2, shape).astype(dtype)
    x[rng.random(shape) < nan_fraction] = np.nan
    return x


def distinct(rng, shape, dtype=np.float64, scale=0.1):
    """Distinct values of both signs, spaced scale apart: a unique maximum in every window."""
    size = math.prod(shape)
    return ((rng.permutation(size) - size / 2) * scale).reshape(shape).astype(dtype)


def positive(rng, shape, dtype=np.float64):
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


def lp_input(rng, case, dtype):
    """Inputs for lp_pool2d: both signs for p = 1 and 2; positive for other powers (whose
    power sums could otherwise be negative, with no real root); for the infinite norms,
    both signs with distinct absolute values, so that each window has one winner."""
    shape = case.x_shape
    if math.isinf(case.norm_type):
        magnitude = (rng.permutation(math.prod(shape)).reshape(shape) + 1) * 0.1
        return (magnitude * rng.choice([-1.0, 1.0], shape)).astype(dtype)
    if case.norm_type in (1.0, 2.0):
        return rng.standard_normal(shape).astype(dtype)
    return positive(rng, shape, dtype)


def assert_c_contiguous(*arrays):
    for a in arrays:
        assert a.flags.c_contiguous


# ---------------------------------------------------------------------------
# Sweeps against the references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_max_pool2d_sweep(case, dtype, rng):
    x = ties(rng, case.x_shape, dtype, nan_fraction=0.05)
    y, switches = F.max_pool2d(x, **case.max_kwargs(), return_indices=True)
    want_y, want_s = ref.max_pool2d(x, **case.max_kwargs(), return_indices=True)
    assert y.dtype == dtype and switches.dtype == np.int64
    assert_c_contiguous(y, switches)
    np.testing.assert_array_equal(y, want_y.astype(dtype))  # NaN where the reference has NaN
    np.testing.assert_array_equal(switches, want_s)
    np.testing.assert_array_equal(F.max_pool2d(x, **case.max_kwargs()), y)

    gy = ties(rng, y.shape, dtype)
    gx = F.max_pool2d_backward(gy, switches, x.shape)
    assert gx.dtype == dtype
    assert_close(gx, ref.max_pool2d_backward(gy, ref.max_pool2d(x, **case.max_kwargs(), return_indices=True)[1], x.shape), dtype)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_avg_pool2d_sweep(case, dtype, rng):
    x = rng.standard_normal(case.x_shape).astype(dtype)
    y = F.avg_pool2d(x, **case.avg_kwargs())
    assert_c_contiguous(y)
    assert_close(y, ref.avg_pool2d(x, **case.avg_kwargs()), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = F.avg_pool2d_backward(gy, x.shape, **case.avg_kwargs())
    assert_c_contiguous(gx)
    assert_close(gx, ref.avg_pool2d_backward(gy, x.shape, **case.avg_kwargs()), dtype)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_lp_pool2d_sweep(case, dtype, rng):
    x = lp_input(rng, case, dtype)
    y = F.lp_pool2d(x, case.norm_type, **case.lp_kwargs())
    assert_c_contiguous(y)
    assert_close(y, ref.lp_pool2d(x, case.norm_type, **case.lp_kwargs()), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = F.lp_pool2d_backward(gy, x, case.norm_type, **case.lp_kwargs())
    assert_close(gx, ref.lp_pool2d_backward(gy, x, case.norm_type, **case.lp_kwargs()), dtype)


def test_sweep_covers_the_kernel_paths():
    """The sweep reaches the vector paths (stride 1 and 2, rows wider than a chunk),
    the general-stride path, dilation, ceil_mode, stride None and every norm."""
    strides = {ref._pair(c.stride)[1] if c.stride is not None else ref._pair(c.kernel_size)[1] for c in CASES}
    assert {1, 2, 3} <= strides
    assert any(c.w >= 40 for c in CASES)
    assert any(c.dilation != 1 for c in CASES) and any(c.ceil_mode for c in CASES)
    assert any(c.stride is None for c in CASES)
    assert {2.0, 3.0, 1.5, INF, -INF, 1.0} == {c.norm_type for c in CASES}


# ---------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------


TORCH_CASES = CASE_PARAMS[::3]


@pytest.mark.parametrize("case", TORCH_CASES)
def test_max_pool2d_matches_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    x = ties(rng, case.x_shape, dtype, nan_fraction=0.05)
    ty, ts = torch.nn.functional.max_pool2d(torch.from_numpy(x), **case.max_kwargs(), return_indices=True)
    y, switches = F.max_pool2d(x, **case.max_kwargs(), return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(switches, ts.numpy())

    # Unpooling back to the input's size, where the unpooling geometry allows it.
    k, p = ref._pair(case.kernel_size), ref._pair(case.padding)
    s = k if case.stride is None else ref._pair(case.stride)
    default = [ref.unpool_out_size(y.shape[2 + a], k[a], s[a], p[a]) for a in range(2)]
    if all(abs(x.shape[2 + a] - default[a]) < s[a] for a in range(2)):
        tu = torch.nn.functional.max_unpool2d(ty, ts, k, s, p, output_size=x.shape[2:])
        np.testing.assert_array_equal(F.max_unpool2d(y, switches, k, s, p, output_size=x.shape), tu.numpy())


@pytest.mark.parametrize("case", TORCH_CASES)
def test_avg_and_lp_pool2d_match_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = rng.standard_normal(case.x_shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = tf.avg_pool2d(tx, **case.avg_kwargs())
    gy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.from_numpy(gy))
    assert_close(F.avg_pool2d(x, **case.avg_kwargs()), ty.detach().numpy(), dtype)
    assert_close(F.avg_pool2d_backward(gy, x.shape, **case.avg_kwargs()), tx.grad.numpy(), dtype)

    x = lp_input(rng, case, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = tf.lp_pool2d(tx, case.norm_type, **case.lp_kwargs())
    gy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.from_numpy(gy))
    assert_close(F.lp_pool2d(x, case.norm_type, **case.lp_kwargs()), ty.detach().numpy(), dtype)
    assert_close(F.lp_pool2d_backward(gy, x, case.norm_type, **case.lp_kwargs()), tx.grad.numpy(), dtype)


def test_pool_out_size_matches_reference_and_torch():
    torch = pytest.importorskip("torch")
    for size in range(1, 10):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    for d in (1, 2):
                        for ceil_mode in (False, True):
                            want = ref.pool_out_size(size, k, s, p, d, ceil_mode)
                            assert _C.pool_out_size(size, k, s, p, d, ceil_mode) == want
                            if want < 1:
                                continue
                            t = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, 1), (k, 1), (s, 1), (p, 0), (d, 1), ceil_mode)
                            assert t.shape[2] == want, (size, k, s, p, d, ceil_mode)


# ---------------------------------------------------------------------------
# Semantics spelled out
# ---------------------------------------------------------------------------


def test_max_pool2d_ties_take_the_first_maximum_in_row_major_order():
    x = np.array([[[[1, 3, 3], [3, 2, 1], [0, 3, 3]]]], np.float32)
    y, s = F.max_pool2d(x, 3, return_indices=True)
    assert y.item() == 3 and s.item() == 1


def test_max_pool2d_nan_wins_and_the_last_nan_is_the_switch():
    """PyTorch's rule (a NaN replaces any running maximum, NaN included), which makes
    its switch the window's last NaN."""
    x = np.array([[[[1, np.nan, 3, np.nan, 2]]]], np.float64)
    y, s = F.max_pool2d(x, (1, 5), return_indices=True)
    assert np.isnan(y.item()) and s.item() == 3
    y, s = F.max_pool2d(x, (1, 3), stride=1, return_indices=True)
    np.testing.assert_array_equal(s.ravel(), [1, 3, 3])


def test_max_pool2d_padding_never_wins():
    """All -inf windows that overlap the padding switch to their first input element."""
    x = np.full((1, 1, 2, 4), -np.inf, np.float32)
    y, s = F.max_pool2d(x, (1, 2), stride=1, padding=(0, 1), return_indices=True)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(s[0, 0], [[0, 0, 1, 2, 3], [4, 4, 5, 6, 7]])


def test_avg_pool2d_ceil_mode_divisors():
    """A 6x6 input, kernel 3, stride 2, padding 1, ceil_mode: the windows start at -1,
    1, 3 and 5 and the last one runs past the padded input ([5, 8) against [-1, 7))."""
    x = np.ones((1, 1, 6, 6))
    padded = np.array([3, 3, 3, 2])  # the window clipped to the padded input
    inside = np.array([2, 3, 3, 1])  # the input elements in it
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_allclose(F.avg_pool2d(x, **kw)[0, 0], np.outer(inside, inside) / np.outer(padded, padded))
    np.testing.assert_allclose(F.avg_pool2d(x, **kw, count_include_pad=False)[0, 0], np.ones((4, 4)))


def test_lp_pool2d_zero_window_passes_no_gradient():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[1.0, -2.0], [0.5, 3.0]]
    gx = F.lp_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, 2)
    assert np.all(np.isfinite(gx)) and np.all(gx[0, 0, :2, :2] == 0)
    np.testing.assert_allclose(gx[0, 0, 2:, 2:], x[0, 0, 2:, 2:] / np.sqrt(np.sum(x**2)))


def test_max_unpool2d_duplicate_switches_last_wins():
    """As on PyTorch's CPU: positions are written in row-major order."""
    x = np.array([[[[1.0, 2.0, 3.0, 4.0]]]])
    s = np.array([[[[0, 0, 2, 0]]]])
    y = F.max_unpool2d(x, s, (1, 2))
    np.testing.assert_array_equal(y, [[[[4, 0, 3, 0, 0, 0, 0, 0]]]])
    np.testing.assert_array_equal(y, ref.max_unpool2d(x, s, (1, 2), output_size=(1, 8)))
    # the backward gathers: every duplicate reads its switch
    np.testing.assert_array_equal(F.max_unpool2d_backward(np.arange(8.0).reshape(1, 1, 1, 8), s), [[[[0, 0, 2, 0]]]])


@pytest.mark.parametrize("output_size", [None, (9, 10), (1, 2, 10, 12), [8, 11]])
def test_max_unpool2d_output_size(output_size, rng):
    """x pooled from 10 x 11 by kernel 3, stride 2, padding 1: PyTorch's default output
    is 9 x 11, and any size within the stride of it is allowed."""
    x = rng.standard_normal((1, 2, 5, 6))
    out_hw = (9, 11) if output_size is None else tuple(output_size)[-2:]
    s = rng.integers(0, out_hw[0] * out_hw[1], x.shape)
    y = F.max_unpool2d(x, s, 3, 2, 1, output_size)
    assert y.shape == (1, 2) + out_hw
    np.testing.assert_array_equal(y, ref.max_unpool2d(x, s, 3, 2, 1, output_size))
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.max_unpool2d(torch.from_numpy(x), torch.from_numpy(s), 3, 2, 1, output_size)
    np.testing.assert_array_equal(y, want.numpy())


def test_max_unpool2d_matches_torch_default_size(rng):
    torch = pytest.importorskip("torch")
    x = ties(rng, (2, 3, 6, 9), np.float32)
    y, s = F.max_pool2d(x, (2, 3), (2, 2), (1, 1), return_indices=True)
    want = torch.nn.functional.max_unpool2d(torch.from_numpy(y), torch.from_numpy(s), (2, 3), (2, 2), (1, 1))
    got = F.max_unpool2d(y, s, (2, 3), (2, 2), (1, 1))
    np.testing.assert_array_equal(got, want.numpy())
    np.testing.assert_array_equal(got, ref.max_unpool2d(y, s, (2, 3), (2, 2), (1, 1)))


# ---------------------------------------------------------------------------
# Finite differences (float64)
# ---------------------------------------------------------------------------

FD_CASES = [
    PoolCase(2, 2, 6, 7, 2),
    PoolCase(1, 2, 6, 6, 3, 1, 1),
    PoolCase(2, 1, 7, 8, 3, 2, ceil_mode=True),
    PoolCase(1, 2, 6, 7, (2, 3), (1, 2), (1, 1), (2, 1), ceil_mode=True),
    PoolCase(1, 1, 9, 20, 3, 2, 1, count_include_pad=False, ceil_mode=True),
    PoolCase(1, 1, 5, 19, (3, 2), 1, (1, 0), count_include_pad=False),
]
FD_PARAMS = [pytest.param(c, id=str(c)) for c in FD_CASES]


def _check_grad(f, x, analytic, atol=1e-6):
    np.testing.assert_allclose(analytic, ref.numeric_grad(f, x), rtol=1e-6, atol=atol)


@pytest.mark.parametrize("case", FD_PARAMS)
def test_max_pool2d_backward_finite_differences(case, rng):
    x = distinct(rng, case.x_shape)
    y, s = F.max_pool2d(x, **case.max_kwargs(), return_indices=True)
    g = rng.standard_normal(y.shape)
    _check_grad(lambda v: np.sum(F.max_pool2d(v, **case.max_kwargs()) * g), x, F.max_pool2d_backward(g, s, x.shape))
    # max_pool2d_backward is linear in grad_output; its own gradient is a gather
    g2 = rng.standard_normal(x.shape)
    _check_grad(lambda v: np.sum(F.max_pool2d_backward(v, s, x.shape) * g2), g, F.max_unpool2d_backward(g2, s))


@pytest.mark.parametrize("kernel, stride, overlapping", [(2, None, False), ((2, 3), (3, 3), False), (3, 2, True)])
def test_max_unpool2d_finite_differences(kernel, stride, overlapping, rng):
    big = distinct(rng, (2, 2, 9, 10))
    x, s = F.max_pool2d(big, kernel, stride, return_indices=True)
    out_hw = big.shape[2:]
    y = F.max_unpool2d(x, s, kernel, stride, output_size=out_hw)
    g = rng.standard_normal(y.shape)
    # Overlapping windows can share a switch; the forward then keeps only the last
    # writer, which its gather backward does not model (as in PyTorch).
    if not overlapping:
        _check_grad(lambda v: np.sum(F.max_unpool2d(v, s, kernel, stride, output_size=out_hw) * g), x, F.max_unpool2d_backward(g, s))
    # The backward is a gather: its gradient is the scatter-add, duplicates or not.
    gx = rng.standard_normal(x.shape)
    _check_grad(lambda v: np.sum(F.max_unpool2d_backward(v, s) * gx), g, F.max_pool2d_backward(gx, s, y.shape))


@pytest.mark.parametrize("case", FD_PARAMS)
def test_avg_pool2d_backward_finite_differences(case, rng):
    x = rng.standard_normal(case.x_shape)
    y = F.avg_pool2d(x, **case.avg_kwargs())
    g = rng.standard_normal(y.shape)
    _check_grad(lambda v: np.sum(F.avg_pool2d(v, **case.avg_kwargs()) * g), x, F.avg_pool2d_backward(g, x.shape, **case.avg_kwargs()))


@pytest.mark.parametrize("norm_type", [2.0, 3.0, 1.5, 1.0, INF, -INF])
@pytest.mark.parametrize("case", [FD_PARAMS[0], FD_PARAMS[2], FD_PARAMS[4]])
def test_lp_pool2d_backward_finite_differences(case, norm_type, rng):
    case = dataclasses.replace(case, norm_type=norm_type)
    x = lp_input(rng, case, np.float64)
    y = F.lp_pool2d(x, norm_type, **case.lp_kwargs())
    g = rng.standard_normal(y.shape)
    _check_grad(lambda v: np.sum(F.lp_pool2d(v, norm_type, **case.lp_kwargs()) * g), x, F.lp_pool2d_backward(g, x, norm_type, **case.lp_kwargs()), atol=1e-5)


# ---------------------------------------------------------------------------
# Layouts, empty batches, threads
# ---------------------------------------------------------------------------


def test_non_contiguous_inputs(dtype, rng):
    base = ties(rng, (2, 3, 30, 52), dtype, nan_fraction=0.02)
    views = [base[:, :, ::2, 1::2], base.transpose(0, 1, 3, 2), np.asfortranarray(base), base[:, ::-1, :, ::-1]]
    for x in views:
        c = np.ascontiguousarray(x)
        y, s = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        yc, sc = F.max_pool2d(c, 3, 2, 1, return_indices=True)
        np.testing.assert_array_equal(y, yc)
        np.testing.assert_array_equal(s, sc)
        s_view = np.asfortranarray(s)
        np.testing.assert_array_equal(F.max_pool2d_backward(np.asfortranarray(y), s_view, x.shape), F.max_pool2d_backward(y, s, x.shape))
        np.testing.assert_array_equal(F.max_unpool2d(y[:, :, ::-1].copy()[:, :, ::-1], s_view, 3, 2, 1, x.shape), F.max_unpool2d(y, s, 3, 2, 1, x.shape))
        np.testing.assert_array_equal(F.avg_pool2d(x, 3, 2, 1), F.avg_pool2d(c, 3, 2, 1))
        np.testing.assert_array_equal(F.lp_pool2d(x, 2, 3, 2), F.lp_pool2d(c, 2, 3, 2))


def test_empty_batch(dtype):
    x = np.zeros((0, 3, 8, 9), dtype)
    y, s = F.max_pool2d(x, 2, return_indices=True)
    assert y.shape == s.shape == (0, 3, 4, 4) and y.dtype == dtype
    assert F.max_pool2d(x, 2).shape == (0, 3, 4, 4)
    assert F.max_pool2d_backward(y, s, x.shape).shape == x.shape
    assert F.max_unpool2d(y, s, 2).shape == (0, 3, 8, 8)
    assert F.max_unpool2d_backward(np.zeros((0, 3, 8, 8), dtype), s).shape == (0, 3, 4, 4)
    assert F.avg_pool2d(x, 3, 2, 1, True).shape == (0, 3, 5, 5)
    assert F.avg_pool2d_backward(np.zeros((0, 3, 5, 5), dtype), x.shape, 3, 2, 1, True).shape == x.shape
    assert F.lp_pool2d(x, 2, 2).shape == (0, 3, 4, 4)
    assert F.lp_pool2d_backward(y, x, 2, 2).shape == x.shape
    assert F.lp_pool2d(x, INF, 2).shape == (0, 3, 4, 4)


def test_results_do_not_depend_on_thread_count(num_threads, rng):
    x = ties(rng, (3, 5, 40, 70), np.float32, nan_fraction=0.01)
    results = []
    for n in (1, 2, 3):
        num_threads(n)
        y, s = F.max_pool2d(x, 3, 2, return_indices=True)
        results.append((y, s, F.max_pool2d_backward(y, s, x.shape), F.avg_pool2d(x, 3, 1, 1), F.avg_pool2d_backward(y, x.shape, 3, 2)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_large_plane_switches_are_exact(rng):
    """A plane wider than any vector chunk and taller than one thread's share."""
    x = ties(rng, (1, 1, 67, 301), np.float64, nan_fraction=0.01)
    for kw in (dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=2), dict(kernel_size=(3, 5), stride=(2, 2), dilation=(1, 2))):
        y, s = F.max_pool2d(x, **kw, return_indices=True)
        want_y, want_s = ref.max_pool2d(x, **kw, return_indices=True)
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(s, want_s)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

X = (2, 3, 6, 6)


def _x(shape=X, dtype=np.float64):
    return np.zeros(shape, dtype)


def _s(shape=(2, 3, 3, 3), value=0):
    return np.full(shape, value, np.int64)


def _bad_switches(*bad):
    s = _s()
    for pos, value in bad:
        s[pos] = value
    return s


POOL_ERRORS = [
    ("kernel-zero", ValueError, r"max_pool2d: kernel_size: expected positive values, got \(0, 2\)", lambda: F.max_pool2d(_x(), (0, 2))),
    ("kernel-float", TypeError, "max_pool2d: kernel_size:", lambda: F.max_pool2d(_x(), 2.0)),
    ("kernel-3-tuple", ValueError, "max_pool2d: kernel_size: expected an int or a pair", lambda: F.max_pool2d(_x(), (2, 2, 2))),
    ("stride-zero", ValueError, "max_pool2d: stride: expected positive values", lambda: F.max_pool2d(_x(), 2, 0)),
    ("dilation-zero", ValueError, "max_pool2d: dilation: expected positive values", lambda: F.max_pool2d(_x(), 2, dilation=(1, 0))),
    ("padding-negative", ValueError, "max_pool2d: padding: expected non-negative", lambda: F.max_pool2d(_x(), 2, padding=-1)),
    ("padding-over-half", ValueError, r"max_pool2d: padding: expected at most half of kernel_size \(3, 3\)", lambda: F.max_pool2d(_x(), 3, padding=2)),
    ("padding-over-half-dilated", ValueError, "max_pool2d: padding:", lambda: F.max_pool2d(_x(), 3, padding=(0, 2), dilation=3)),
    ("kernel-larger-than-padded-input", ValueError, r"max_pool2d: kernel_size: \(9, 9\) is larger than the padded input \(8, 8\)", lambda: F.max_pool2d(_x(), 9, padding=1)),
    ("dilated-kernel-too-large", ValueError, "max_pool2d: kernel_size: dilated extent", lambda: F.max_pool2d(_x(), 3, dilation=3)),
    ("dilated-window-misses-input", ValueError, "max_pool2d: dilation: the window of output row 0", lambda: F.max_pool2d(_x((1, 1, 2, 2)), (2, 1), padding=(1, 0), dilation=(3, 1))),
    ("input-3d", ValueError, r"max_pool2d: input: expected a 4-D array \(N, C, H, W\), got 3-D", lambda: F.max_pool2d(_x((3, 6, 6)), 2)),
    ("input-int", TypeError, "max_pool2d: input: expected dtype float32 or float64, got int64", lambda: F.max_pool2d(np.zeros(X, np.int64), 2)),
    ("input-list", TypeError, "max_pool2d: input: expected a numpy.ndarray", lambda: F.max_pool2d(_x().tolist(), 2)),
    ("avg-padding-over-half", ValueError, "avg_pool2d: padding: expected at most half", lambda: F.avg_pool2d(_x(), 2, padding=(0, 2))),
    ("avg-kernel-too-large", ValueError, "avg_pool2d: kernel_size:", lambda: F.avg_pool2d(_x(), (7, 1))),
    ("avg-stride-zero", ValueError, "avg_pool2d: stride:", lambda: F.avg_pool2d(_x(), 2, (1, 0))),
    ("avg-input-float16", TypeError, "avg_pool2d: input: expected dtype", lambda: F.avg_pool2d(np.zeros(X, np.float16), 2)),
    ("lp-norm-zero", ValueError, "lp_pool2d: norm_type: expected a non-zero number, got 0", lambda: F.lp_pool2d(_x(), 0, 2)),
    ("lp-norm-nan", ValueError, "lp_pool2d: norm_type:", lambda: F.lp_pool2d(_x(), float("nan"), 2)),
    ("lp-norm-str", TypeError, "lp_pool2d: norm_type:", lambda: F.lp_pool2d(_x(), "2", 2)),
    ("lp-kernel-too-large", ValueError, "lp_pool2d: kernel_size:", lambda: F.lp_pool2d(_x(), 2, 7)),
    ("lp-input-2d", ValueError, "lp_pool2d: input: expected a 4-D array", lambda: F.lp_pool2d(_x((6, 6)), 2, 2)),
]

BACKWARD_ERRORS = [
    ("max-switches-int32", TypeError, "max_pool2d_backward: switches: expected dtype int64, got int32", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _s().astype(np.int32), X)),
    ("max-switches-list", TypeError, "max_pool2d_backward: switches: expected a numpy.ndarray of int64", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _s().tolist(), X)),
    ("max-switches-shape", ValueError, r"max_pool2d_backward: switches: expected shape \(2, 3, 3, 3\)", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _s((2, 3, 3, 2)), X)),
    ("max-switch-too-large", ValueError, r"max_pool2d_backward: switches: expected flat indices h \* W \+ w in \[0, 36\) .*got 36 at \(1, 2, 0, 1\)", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _bad_switches(((1, 2, 0, 1), 36)), X)),
    ("max-switch-negative-first-reported", ValueError, r"switches: .*got -1 at \(0, 1, 2, 2\)", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _bad_switches(((1, 0, 0, 0), 99), ((0, 1, 2, 2), -1)), X)),
    ("max-input_shape-3", ValueError, r"max_pool2d_backward: input_shape: expected 4 values \(N, C, H, W\), got 3", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _s(), (3, 6, 6))),
    ("max-input_shape-batch", ValueError, "max_pool2d_backward: input_shape: expected N, C = 2, 3", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _s(), (1, 3, 6, 6))),
    ("max-input_shape-negative", ValueError, "max_pool2d_backward: input_shape: expected non-negative", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _s(), (2, 3, -6, 6))),
    ("max-input_shape-int", TypeError, "max_pool2d_backward: input_shape:", lambda: F.max_pool2d_backward(_x((2, 3, 3, 3)), _s(), 6)),
    ("max-grad_output-int", TypeError, "max_pool2d_backward: grad_output: expected dtype", lambda: F.max_pool2d_backward(_s(), _s(), X)),
    ("max-grad_output-3d", ValueError, "max_pool2d_backward: grad_output: expected a 4-D array", lambda: F.max_pool2d_backward(_x((3, 3, 3)), _s((3, 3, 3)), X)),
    ("avg-grad_output-shape", ValueError, r"avg_pool2d_backward: grad_output: expected shape \(2, 3, 3, 3\)", lambda: F.avg_pool2d_backward(_x((2, 3, 3, 4)), X, 2)),
    ("avg-input_shape-5", ValueError, "avg_pool2d_backward: input_shape: expected 4 values", lambda: F.avg_pool2d_backward(_x((2, 3, 3, 3)), X + (1,), 2)),
    ("avg-kernel-zero", ValueError, "avg_pool2d_backward: kernel_size:", lambda: F.avg_pool2d_backward(_x((2, 3, 3, 3)), X, 0)),
    ("lp-grad_output-shape", ValueError, "lp_pool2d_backward: grad_output: expected shape", lambda: F.lp_pool2d_backward(_x((2, 3, 3, 2)), _x(), 2, 2)),
    ("lp-dtype-mismatch", TypeError, "lp_pool2d_backward: input: expected dtype float32 to match grad_output", lambda: F.lp_pool2d_backward(_x((2, 3, 3, 3), np.float32), _x(), 2, 2)),
    ("lp-norm-zero", ValueError, "lp_pool2d_backward: norm_type:", lambda: F.lp_pool2d_backward(_x((2, 3, 3, 3)), _x(), 0.0, 2)),
]

UNPOOL_ERRORS = [
    ("switches-shape", ValueError, r"max_unpool2d: switches: expected shape \(2, 3, 3, 3\)", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _s((2, 3, 3, 4)), 2)),
    ("switches-float", TypeError, "max_unpool2d: switches: expected dtype int64, got float64", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _x((2, 3, 3, 3)), 2)),
    ("switch-out-of-range", ValueError, r"max_unpool2d: switches: expected flat indices h \* W \+ w in \[0, 36\).*got 40 at \(0, 0, 1, 1\)", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _bad_switches(((0, 0, 1, 1), 40)), 2)),
    ("switch-out-of-range-output_size", ValueError, r"max_unpool2d: switches: .*\[0, 25\).*got 30", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _bad_switches(((1, 1, 1, 1), 30)), 2, output_size=(5, 5))),
    ("output_size-too-small", ValueError, r"max_unpool2d: output_size: expected \(H, W\) within stride \(2, 2\) of the default \(6, 6\)", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _s(), 2, output_size=(4, 6))),
    ("output_size-too-large", ValueError, "max_unpool2d: output_size: expected", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _s(), 2, output_size=(6, 8))),
    ("output_size-3", ValueError, r"max_unpool2d: output_size: expected \(H, W\) or \(N, C, H, W\), got 3 values", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _s(), 2, output_size=(3, 6, 6))),
    ("output_size-batch", ValueError, "max_unpool2d: output_size: expected N, C = 2, 3", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _s(), 2, output_size=(2, 4, 6, 6))),
    ("output_size-float", TypeError, "max_unpool2d: output_size:", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _s(), 2, output_size=(6.0, 6))),
    ("padding-empties-output", ValueError, r"max_unpool2d: padding: output size \(0, 0\) is not positive", lambda: F.max_unpool2d(_x((2, 3, 1, 1)), _s((2, 3, 1, 1)), 2, padding=1)),
    ("kernel-zero", ValueError, "max_unpool2d: kernel_size: expected positive", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _s(), 0)),
    ("stride-zero", ValueError, "max_unpool2d: stride: expected positive", lambda: F.max_unpool2d(_x((2, 3, 3, 3)), _s(), 2, 0)),
    ("input-3d", ValueError, "max_unpool2d: input: expected a 4-D array", lambda: F.max_unpool2d(_x((3, 3, 3)), _s((3, 3, 3)), 2)),
    ("backward-grad_output-batch", ValueError, "max_unpool2d_backward: grad_output: expected N, C = 2, 3", lambda: F.max_unpool2d_backward(_x((1, 3, 6, 6)), _s())),
    ("backward-switch-out-of-range", ValueError, r"max_unpool2d_backward: switches: .*got -5 at \(1, 2, 2, 2\)", lambda: F.max_unpool2d_backward(_x(), _bad_switches(((1, 2, 2, 2), -5)))),
    ("backward-switches-int32", TypeError, "max_unpool2d_backward: switches: expected dtype int64", lambda: F.max_unpool2d_backward(_x(), _s().astype(np.int32))),
    ("backward-grad_output-list", TypeError, "max_unpool2d_backward: grad_output:", lambda: F.max_unpool2d_backward(_x().tolist(), _s())),
]


def _error_params(table, prefix=""):
    return [pytest.param(exc, match, call, id=prefix + name) for name, exc, match, call in table]


@pytest.mark.parametrize(
    "exc, match, call",
    _error_params(POOL_ERRORS) + _error_params(BACKWARD_ERRORS, "backward-") + _error_params(UNPOOL_ERRORS, "unpool-"),
)
def test_error(exc, match, call):
    with pytest.raises(exc, match=match):
        call()


def test_error_calls_are_otherwise_valid():
    """The error tables' base operands work, so each error test fails for its one reason."""
    assert F.max_pool2d(_x(), 2).shape == (2, 3, 3, 3)
    assert F.max_pool2d(_x(), 3, padding=1, dilation=3).shape == (2, 3, 1, 1)
    assert F.max_pool2d_backward(_x((2, 3, 3, 3)), _s(), X).shape == X
    assert F.max_pool2d_backward(_x((2, 3, 3, 3)), _s(value=35), X).shape == X
    assert F.avg_pool2d_backward(_x((2, 3, 3, 3)), X, 2).shape == X
    assert F.lp_pool2d_backward(_x((2, 3, 3, 3)), _x(), 2, 2).shape == X
    assert F.max_unpool2d(_x((2, 3, 3, 3)), _s(value=35), 2).shape == X
    assert F.max_unpool2d(_x((2, 3, 3, 3)), _s(value=24), 2, output_size=(5, 5)).shape == (2, 3, 5, 5)
    assert F.max_unpool2d(_x((2, 3, 3, 3)), _s(), 2, output_size=(2, 3, 7, 5)).shape == (2, 3, 7, 5)
    assert F.max_unpool2d_backward(_x(), _s(value=35)).shape == (2, 3, 3, 3)
