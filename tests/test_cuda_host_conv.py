"""The convolution and linear kernels (cuda/im2col.cu, cuda/conv.cu) run on the CPU
through the backend that runs them on CuPy (cnnkit.cuda.Backend over NumPy and the
host-compiled kernels), against cnnkit.reference (float64) and the CPU path
(cnnkit.functional on NumPy), in float32 and float64: a random sweep over stride,
padding (asymmetric too), dilation, groups, depthwise, transposed with output_padding,
1x1, kernels as large as the input, empty and degenerate shapes, non-contiguous
operands, workspace chunking, grid-stride loops, and the errors (those of _C).
"""

import numpy as np
import pytest

import cnnkit
from cnnkit import _C, _dispatch
from cnnkit import functional as F

import cuda_host
from cuda_host.device import FAMILY_OPS, check_on_device, standin_gpu
from cuda_host import error_of
from cnnkit import reference as ref
from conftest import assert_close, random_array
from test_conv import ConvCase, _conv2d_case, _conv_transpose2d_case



def _launches(family):
    return cuda_host.host_module(family).launches


# ---------------------------------------------------------------------------------------
# Running a case on the backend with the arguments functional passes to _C


def _forward(b, case, x, w, bias):
    kw = case.kwargs()
    if case.transposed:
        args = F._conv_transpose_args(kw["stride"], kw["padding"], kw["output_padding"], kw["groups"],
                                      kw["dilation"], "conv_transpose2d")
        return b.conv_transpose2d(x, w, bias, *args)
    args = F._conv_args(w, kw["stride"], kw["padding"], kw["dilation"], kw["groups"], "conv2d")
    return b.conv2d(x, w, bias, *args)


def _backward(b, case, gy, x, w, output_mask=(True, True, True)):
    kw = case.kwargs()
    if case.transposed:
        args = F._conv_transpose_args(kw["stride"], kw["padding"], kw["output_padding"], kw["groups"],
                                      kw["dilation"], "conv_transpose2d_backward")
        return b.conv_transpose2d_backward(gy, x, w, *args, output_mask)
    args = F._conv_args(w, kw["stride"], kw["padding"], kw["dilation"], kw["groups"], "conv2d_backward")
    return b.conv2d_backward(gy, x, w, *args, output_mask)


def _check(b, case, dtype, rng, operands=None):
    x, w, bias = operands or case.operands(rng, dtype)
    y = _forward(b, case, x, w, bias)
    assert type(y) is np.ndarray and y.flags.c_contiguous and y.shape == case.out_shape
    assert_close(y, case.reference(x, w, bias), dtype)
    assert_close(y, case.forward(x, w, bias).astype(np.float64), dtype)
    gy = random_array(rng, case.out_shape, dtype)
    got = _backward(b, case, gy, x, w)
    cpu = case.backward(gy, x, w)
    for name, g, e, c in zip(("grad_input", "grad_weight", "grad_bias"), got, case.reference_grads(gy, x, w), cpu):
        assert g.flags.c_contiguous
        assert_close(g, e, dtype, err_msg=name)
        assert_close(g, c.astype(np.float64), dtype, err_msg=name)


def _sweep():
    rng = np.random.default_rng(20250610)
    kinds2 = {"general": 4, "grouped": 3, "depthwise": 3, "pointwise": 2, "rect": 1, "same": 3, "valid": 1, "gemm": 2}
    kindsT = {"general": 2, "grouped": 2, "depthwise": 2, "pointwise": 1, "outpad": 2, "gemm": 1}
    cases = [_conv2d_case(rng, k) for k, c in kinds2.items() for _ in range(c)]
    cases += [_conv_transpose2d_case(rng, k) for k, c in kindsT.items() for _ in range(c)]
    return cases


SWEEP = _sweep()


def test_cuda_host_conv_sweep_covers_the_space():
    c2 = [c for c in SWEEP if not c.transposed]
    ct = [c for c in SWEEP if c.transposed]
    assert any(isinstance(c.padding, tuple) and c.padding[0] != c.padding[1] for c in c2)
    assert any(c.padding == "same" and c.kh % 2 == 0 for c in c2 + EDGE_CASES)  # asymmetric 'same'
    assert {v for c in c2 for v in ref._pair(c.stride)} == {1, 2, 3}
    assert {v for c in c2 for v in ref._pair(c.dilation)} == {1, 2, 3}
    assert any(c.c_in == c.groups > 1 for c in c2) and any(c.c_in == c.groups > 1 for c in ct)
    assert any(ref._pair(c.output_padding) != (0, 0) for c in ct)
    assert any(c.groups > 1 and c.c_in != c.groups for c in SWEEP)


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{i:02d}-{c.id}") for i, c in enumerate(SWEEP)])
def test_cuda_host_conv_matches_reference_and_cpu(case, dtype, rng, backend):
    _check(backend, case, dtype, rng)


EDGE_CASES = [
    ConvCase("kernel-is-input", 2, 3, 4, 5, 4, 5, 4),
    ConvCase("kernel-is-padded-input", 2, 3, 2, 3, 4, 5, 6, padding=1),
    ConvCase("kernel-is-input-depthwise", 2, 4, 4, 3, 5, 3, 5, groups=4),
    ConvCase("h1w1", 3, 4, 5, 1, 1, 1, 1),
    ConvCase("pointwise-grouped", 2, 6, 4, 3, 5, 1, 1, groups=2),
    ConvCase("1x1-strided-padded", 2, 4, 3, 6, 5, 1, 1, stride=2, padding=1),
    ConvCase("1x1-dilated", 2, 4, 3, 5, 5, 1, 1, dilation=3),
    ConvCase("same-even", 2, 2, 3, 4, 5, 4, 2, padding="same", dilation=(1, 3)),
    ConvCase("T-output-1x1", 2, 3, 4, 3, 3, 3, 3, padding=2, transposed=True),
    ConvCase("T-pointwise", 2, 4, 6, 3, 3, 1, 1, groups=2, transposed=True),
    ConvCase("T-depthwise-outpad", 2, 3, 6, 3, 4, 3, 2, groups=3, stride=2, output_padding=1, transposed=True),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EDGE_CASES])
def test_cuda_host_conv_edge_shapes(case, dtype, rng, backend):
    _check(backend, case, dtype, rng)


def test_cuda_host_conv_asymmetric_padding(dtype, rng, backend):
    """(top, bottom, left, right) as functional passes it: top/left shift the taps."""
    x = random_array(rng, (2, 3, 7, 6), dtype)
    w = random_array(rng, (4, 3, 3, 2), dtype)
    bias = random_array(rng, (4,), dtype)
    for pad in [(0, 2, 1, 0), (2, 0, 0, 1), (1, 2, 3, 0)]:
        y = backend.conv2d(x, w, bias, (2, 1), pad, (1, 2), 1)
        assert_close(y, ref.conv2d(x, w, bias, stride=(2, 1), padding=pad, dilation=(1, 2)), dtype)
        gy = random_array(rng, y.shape, dtype)
        got = backend.conv2d_backward(gy, x, w, (2, 1), pad, (1, 2), 1)
        for g, e in zip(got, ref.conv2d_backward(gy, x, w, stride=(2, 1), padding=pad, dilation=(1, 2))):
            assert_close(g, e, dtype, err_msg=str(pad))


def test_cuda_host_conv_paths(rng, backend):
    """Depthwise runs the direct kernels and 1x1 stride-1 unpadded layers no im2col;
    the others im2col + GEMM + col2im."""
    x = random_array(rng, (2, 4, 5, 5), np.float64)

    def kernels(fn):
        before = {f: len(_launches(f)) for f in ("im2col", "conv")}
        fn()
        return {name for f in before for name, *_ in _launches(f)[before[f]:]}

    dw = random_array(rng, (8, 1, 3, 3), np.float64)
    assert kernels(lambda: backend.conv2d(x, dw, None, (1, 1), (1, 1, 1, 1), (1, 1), 4)) == {"depthwise_forward_f64"}
    gy = np.ones((2, 8, 5, 5))
    assert kernels(lambda: backend.conv2d_backward(gy, x, dw, (1, 1), (1, 1, 1, 1), (1, 1), 4)) == {
        "depthwise_backward_data_f64", "depthwise_backward_weight_f64", "bias_grad_f64"}
    pw = random_array(rng, (6, 4, 1, 1), np.float64)
    assert kernels(lambda: backend.conv2d(x, pw, np.ones(6), (1, 1), (0, 0, 0, 0), (1, 1), 1)) == {"bias_add_f64"}
    g3 = random_array(rng, (6, 4, 3, 3), np.float64)
    assert kernels(lambda: backend.conv2d(x, g3, None, (1, 1), (0, 0, 0, 0), (1, 1), 1)) == {"im2col_f64"}
    gy = np.ones((2, 6, 3, 3))
    assert kernels(lambda: backend.conv2d_backward(gy, x, g3, (1, 1), (0, 0, 0, 0), (1, 1), 1)) == {
        "im2col_f64", "col2im_f64", "bias_grad_f64"}


MASKS = [(True, False, False), (False, True, False), (False, False, True), (False, False, False)]


@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("xwb"[i] if v else "-" for i, v in enumerate(m)))
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in (
    ConvCase("3x3", 2, 4, 6, 7, 6, 3, 3, padding=1, bias=False),
    ConvCase("depthwise", 2, 4, 8, 6, 6, 3, 3, padding=1, groups=4, bias=False),
    ConvCase("T-4x4-s2", 2, 4, 6, 4, 5, 4, 4, stride=2, padding=1, transposed=True, bias=False),
    ConvCase("empty", 0, 4, 6, 6, 5, 3, 3, padding=1, bias=False),
)])
def test_cuda_host_conv_backward_output_mask(case, mask, rng, backend):
    """Only the requested gradients come back (None for the others), equal to the full
    call's; the kernels of the others never launch."""
    x, w, _ = case.operands(rng, np.float64)
    gy = random_array(rng, case.out_shape, np.float64)
    full = _backward(backend, case, gy, x, w)
    before = {f: len(_launches(f)) for f in ("im2col", "conv")}
    got = _backward(backend, case, gy, x, w, mask)
    launched = {name for f in before for name, *_ in _launches(f)[before[f]:]}
    for want, g, f in zip(mask, got, full):
        if want:
            np.testing.assert_array_equal(g, f)
        else:
            assert g is None
    if not mask[2]:
        assert "bias_grad_f64" not in launched
    if not any(mask):
        assert launched == set()


# ---------------------------------------------------------------------------------------
# Empty and degenerate shapes: bias or zeros, as ConvGeometry::degenerate on the CPU

EMPTY_CASES = [
    ConvCase("empty", 0, 4, 6, 6, 5, 3, 3, padding=1),
    ConvCase("empty-depthwise", 0, 4, 8, 5, 5, 3, 3, groups=4),
    ConvCase("empty-pointwise", 0, 40, 4, 3, 3, 1, 1),
    ConvCase("no-input-channels", 2, 0, 3, 4, 4, 3, 3, padding=1),
    ConvCase("no-output-channels", 2, 3, 0, 4, 4, 3, 3),
    ConvCase("empty-plane", 2, 3, 2, 0, 4, 1, 3, padding=(0, 1)),
    ConvCase("T-empty", 0, 4, 6, 3, 3, 3, 3, stride=2, transposed=True),
    ConvCase("T-no-output-channels", 2, 3, 0, 3, 3, 3, 3, transposed=True),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EMPTY_CASES])
def test_cuda_host_conv_empty_and_degenerate(case, dtype, rng, backend):
    x, w, bias = case.operands(rng, dtype)
    try:
        want = case.forward(x, w, bias)
    except ValueError as e:  # a shape the CPU refuses: the backend refuses it alike
        with pytest.raises(ValueError, match=str(e).replace("(", r"\(").replace(")", r"\)")):
            _forward(backend, case, x, w, bias)
        return
    y = _forward(backend, case, x, w, bias)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, want)
    gy = random_array(rng, want.shape, dtype)
    for g, c in zip(_backward(backend, case, gy, x, w), case.backward(gy, x, w)):
        assert g.dtype == dtype and g.shape == c.shape
        assert_close(g, c.astype(np.float64), dtype)


# ---------------------------------------------------------------------------------------
# Layouts, inputs untouched, grid-stride loops, NaN


def _strided(a):
    base = np.full(tuple(2 * s + 1 for s in a.shape), np.nan, a.dtype)
    out = base[tuple(slice(1, None, 2) for _ in a.shape)]
    out[...] = a
    return out


LAYOUT_CASES = [
    ConvCase("gemm", 2, 6, 4, 6, 5, 3, 3, padding=1, stride=(2, 1)),
    ConvCase("depthwise", 2, 3, 6, 6, 5, 3, 3, groups=3, stride=2),
    ConvCase("pointwise", 2, 8, 4, 3, 4, 1, 1),
    ConvCase("T-gemm", 2, 3, 6, 4, 4, 3, 3, stride=2, transposed=True),
]


@pytest.mark.parametrize("layout", ["stepped", "fortran"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in LAYOUT_CASES])
def test_cuda_host_conv_non_contiguous(case, layout, dtype, rng, backend):
    relayout = {"stepped": _strided, "fortran": np.asfortranarray, "flipped": lambda a: a[::-1].copy()[::-1]}[layout]
    x, w, bias = case.operands(rng, dtype)
    saved = [a.copy() for a in (x, w, bias)]
    ops = tuple(relayout(a) for a in (x, w, bias))
    assert not ops[0].flags.c_contiguous
    _check(backend, case, dtype, rng, operands=ops)
    for a, s in zip((x, w, bias), saved):
        np.testing.assert_array_equal(a, s)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in LAYOUT_CASES[1:] + EDGE_CASES[-1:]])
def test_cuda_host_conv_grid_stride_loops(case, dtype, rng, tiny_grid):
    _check(tiny_grid, case, dtype, rng)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in LAYOUT_CASES[::3]])
def test_cuda_host_conv_nan_reaches_the_cpu_outputs(case, dtype, rng, backend):
    x, w, bias = case.operands(rng, dtype)
    x[1, 0, 2, 1] = np.nan
    y = _forward(backend, case, x, w, bias)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(case.forward(x, w, bias)))
    gy = random_array(rng, case.out_shape, dtype)
    gy[0, 1, 1, 0] = np.nan
    for g, c in zip(_backward(backend, case, gy, x, w), case.backward(gy, x, w)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(c))


def test_cuda_host_conv_is_deterministic(rng, backend):
    case = ConvCase("T-overlap", 2, 4, 6, 5, 5, 3, 3, stride=1, transposed=True)
    x, w, bias = case.operands(rng, np.float32)
    first = _forward(backend, case, x, w, bias)
    np.testing.assert_array_equal(_forward(backend, case, x, w, bias), first)


# ---------------------------------------------------------------------------------------
# Workspace chunking: the column buffer stays within cnnkit.get_workspace_bytes()

CHUNK_CASES = [
    ConvCase("gemm", 3, 3, 4, 5, 4, 3, 3, padding=1),
    ConvCase("gemm-grouped-strided", 3, 4, 6, 9, 8, 3, 3, groups=2, stride=2, padding=(1, 0), dilation=(1, 2)),
    ConvCase("T-gemm", 3, 3, 4, 3, 4, 3, 3, stride=(2, 1), padding=1, output_padding=(1, 0), transposed=True),
]


def _per_col(case, dtype):
    c_img, c_col = (case.c_out, case.c_in) if case.transposed else (case.c_in, case.c_out)
    return (c_img * case.kh * case.kw + c_col) * np.dtype(dtype).itemsize


@pytest.mark.parametrize("mode", ["rows1", "rows3", "samples2", "default"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CHUNK_CASES])
def test_cuda_host_conv_workspace_chunking(case, mode, dtype, rng, backend, workspace_bytes):
    ho, wo = (case.h, case.w) if case.transposed else case.out_hw()
    per_col = _per_col(case, dtype)
    bound = {"rows1": 1, "rows3": per_col * wo * 3, "samples2": per_col * ho * wo * 2, "default": 64 << 20}[mode]
    workspace_bytes(bound)
    launches = _launches("im2col")
    before = len(launches)
    _check(backend, case, dtype, rng)
    calls = [n for n, *_ in launches[before:] if n.startswith("im2col")]
    blocks = {
        "rows1": case.n * ho,
        "rows3": case.n * -(-ho // 3),
        "samples2": -(-case.n // 2),
        "default": 1,
    }[mode]
    assert len(calls) == 2 * blocks  # im2col runs in the forward and in one backward product
    assert cnnkit.get_workspace_bytes() == bound


# ---------------------------------------------------------------------------------------
# Kernels: every one is exercised, and im2col/col2im are adjoint


def test_cuda_host_conv_every_kernel_is_tested():
    found = set()
    for family in ("im2col", "conv"):
        found |= set(cuda_host.kernel_names(cnnkit.cuda.kernel_dir() / f"{family}.cu", cnnkit.cuda.kernel_dir()))
    bases = {"im2col", "col2im", "depthwise_forward", "depthwise_backward_data", "depthwise_backward_weight",
             "bias_add", "bias_grad"}
    assert found == {f"{b}_{s}" for b in bases for s in ("f32", "f64")}


@pytest.mark.parametrize("geom", [(1, 1, 0, 0, 1, 1), (2, 3, 1, 2, 1, 2), (3, 1, 2, 0, 2, 1)], ids=str)
def test_cuda_host_im2col_col2im_are_adjoint(geom, rng):
    """<im2col(x), c> == <x, col2im(c)>, over row blocks and with accumulation."""
    sh, sw, ph, pw, dh, dw = geom
    mod = cuda_host.host_module("im2col")
    nb, c, h, w, kh, kw = 2, 3, 7, 6, 3, 2
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x = rng.standard_normal((nb, c, h, w))
    I = np.int64
    g = (I(kh), I(kw), I(sh), I(sw), I(ph), I(pw), I(dh), I(dw))
    col = np.empty(c * kh * kw * nb * ho * wo)
    mod.get_function("im2col_f64")((3,), (256,), (x, col, I(nb), I(c), I(h), I(w), I(wo), *g, I(0), I(ho)))
    cm = rng.standard_normal(col.shape)
    back = np.empty_like(x)
    mod.get_function("col2im_f64")((3,), (256,), (cm, back, I(nb), I(c), I(h), I(w), I(ho), I(wo), *g, I(0), I(ho), I(0)))
    np.testing.assert_allclose(np.dot(col, cm), np.sum(x * back), rtol=1e-12)
    # the same through row blocks of one output row, the later ones accumulating
    acc = np.full_like(x, np.nan)
    cm4 = cm.reshape(c * kh * kw, nb, ho, wo)
    for oh0 in range(ho):
        part = np.ascontiguousarray(cm4[:, :, oh0 : oh0 + 1])
        mod.get_function("col2im_f64")((1,), (256,), (part, acc, I(nb), I(c), I(h), I(w), I(ho), I(wo), *g, I(oh0),
                                                      I(1), I(oh0 > 0)))
    np.testing.assert_allclose(acc, back, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------
# linear


LINEAR_CASES = [((5,), 7, 3, True), ((1,), 1, 1, True), ((9,), 33, 17, False), ((300,), 4, 2, True),
                ((0,), 4, 3, True), ((3,), 0, 2, True), ((4,), 3, 0, True)]


@pytest.mark.parametrize("case", LINEAR_CASES, ids=str)
def test_cuda_host_linear(case, dtype, rng, backend):
    lead, in_f, out_f, has_bias = case
    x = random_array(rng, lead + (in_f,), dtype)
    w = random_array(rng, (out_f, in_f), dtype)
    bias = random_array(rng, (out_f,), dtype) if has_bias else None
    y = backend.linear(x, w, bias)
    assert y.flags.c_contiguous and y.dtype == dtype
    assert_close(y, ref.linear(x, w, bias), dtype)
    assert_close(y, F.linear(x, w, bias).astype(np.float64), dtype)
    gy = random_array(rng, lead + (out_f,), dtype)
    got = backend.linear_backward(gy, x, w)
    cpu = F.linear_backward(gy, x, w)
    want = cpu if 0 in (in_f, out_f) else ref.linear_backward(gy, x, w)  # the reference needs features
    for g, e, c in zip(got, want, cpu):
        assert g.flags.c_contiguous and g.dtype == dtype
        assert_close(g, np.asarray(e, np.float64), dtype)
        assert_close(g, c.astype(np.float64), dtype)


def test_cuda_host_linear_non_contiguous(dtype, rng, backend):
    x = _strided(random_array(rng, (6, 5), dtype))
    w = random_array(rng, (5, 4), dtype).T
    bias = _strided(random_array(rng, (4,), dtype))
    assert_close(backend.linear(x, w, bias), ref.linear(x, w, bias), dtype)
    gy = np.asfortranarray(random_array(rng, (6, 4), dtype))
    for g, e in zip(backend.linear_backward(gy, x, w), ref.linear_backward(gy, x, w)):
        assert_close(g, e, dtype)


def test_cuda_host_bias_grad_reduces_long_rows(dtype, rng, tiny_grid):
    gy = random_array(rng, (3, 5, 31, 29), dtype)  # 2697 terms per channel, 5 channels on 2 blocks
    gb = tiny_grid._bias_grad(gy, 3, 5, 31 * 29)
    assert_close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)), dtype)


# ---------------------------------------------------------------------------------------
# Errors: _C's messages; dispatch of mixed operands



def test_cuda_host_conv_errors_are_the_cpu_ones(backend):
    f32, f64 = np.zeros((2, 3, 5, 5), np.float32), np.zeros((2, 3, 5, 5))
    w, w32 = np.zeros((4, 3, 3, 3)), np.zeros((4, 3, 3, 3), np.float32)
    s, p, d = (1, 1), (0, 0, 0, 0), (1, 1)
    cases = [
        ("conv2d", (f32, w, None, s, p, d, 1)),
        ("conv2d", ([1.0], w, None, s, p, d, 1)),
        ("conv2d", (f64, w, np.zeros(3), s, p, d, 1)),
        ("conv2d", (f64, np.zeros((4, 2, 3, 3)), None, s, p, d, 1)),
        ("conv2d", (f64, w, None, s, p, d, 2)),
        ("conv2d", (f64, np.zeros((4, 3, 7, 7)), None, s, p, d, 1)),
        ("conv2d", (np.zeros((3, 5, 5)), w, None, s, p, d, 1)),
        ("conv2d", (f64.astype(np.int64), w, None, s, p, d, 1)),
        ("conv2d", (f64, w, None, (0, 1), p, d, 1)),
        ("conv2d", (f64, w, None, s, (-1, 0, 0, 0), d, 1)),
        ("conv2d_backward", (np.zeros((2, 4, 3, 2)), f64, w, s, p, d, 1)),
        ("conv2d_backward", (np.zeros((2, 4, 3, 3), np.float32), f64, w, s, p, d, 1)),
        ("conv2d_backward", (None, f64, w, s, p, d, 1)),
        ("conv_transpose2d", (f64, np.zeros((3, 2, 3, 3)), np.zeros(3), s, (0, 0), (0, 0), 1, d)),
        ("conv_transpose2d", (f64, np.zeros((4, 2, 3, 3)), None, s, (0, 0), (0, 0), 1, d)),
        ("conv_transpose2d", (f64, np.zeros((3, 2, 3, 3)), None, s, (0, 0), (1, 1), 1, d)),
        ("conv_transpose2d", (f32, w32[:3], None, s, (0, 0), (0, 0), 2, d)),
        ("conv_transpose2d_backward", (np.zeros((2, 2, 7, 6)), f64, np.zeros((3, 2, 3, 3)), s, (0, 0), (0, 0), 1, d)),
        ("conv_transpose2d_backward", (np.zeros((2, 2, 7, 7)), f32, np.zeros((3, 2, 3, 3)), s, (0, 0), (0, 0), 1, d)),
        ("linear", (np.zeros((2, 3)), np.zeros((4, 2)), None)),
        ("linear", (np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3))),
        ("linear", (np.zeros((2, 3), np.float32), np.zeros((4, 3)), None)),
        ("linear", (np.zeros(3), np.zeros((4, 3)), None)),
        ("linear", ("x", np.zeros((4, 3)), None)),
        ("linear_backward", (np.zeros((2, 5)), np.zeros((2, 3)), np.zeros((4, 3)))),
        ("linear_backward", (np.zeros((2, 4), np.float32), np.zeros((2, 3)), np.zeros((4, 3)))),
    ]
    for op, args in cases:
        assert error_of(getattr(backend, op), *args) == error_of(getattr(_C, op), *args), (op, args)


class FakeCudaArray:
    """Claims to be a CUDA array (as a torch CUDA tensor would)."""

    __cuda_array_interface__ = {"shape": (2, 3, 5, 5), "typestr": "<f4", "data": (0, False), "version": 3}


def test_cuda_dispatch_conv_mixed_operands_raise_type_error():
    x, w = np.zeros((2, 3, 5, 5), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    cuda = FakeCudaArray()
    with pytest.raises(TypeError, match=r"^conv2d: weight: expected a cupy.ndarray like input, got numpy.ndarray$"):
        F.conv2d(cuda, w)
    with pytest.raises(TypeError, match=r"^conv2d: input: expected a cupy.ndarray like bias"):
        F.conv2d(x, w, cuda)
    with pytest.raises(TypeError, match=r"^conv2d_backward: input: expected a cupy.ndarray like grad_output"):
        F.conv2d_backward(cuda, x, w)
    with pytest.raises(TypeError, match=r"^conv_transpose2d: input: expected a cupy.ndarray like weight"):
        F.conv_transpose2d(x, cuda)
    with pytest.raises(TypeError, match=r"^conv_transpose2d_backward: weight: expected a cupy.ndarray like"):
        F.conv_transpose2d_backward(cuda, cuda, w)
    with pytest.raises(TypeError, match=r"^linear: weight: expected a cupy.ndarray like input"):
        F.linear(cuda, np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError, match=r"^linear_backward: input: expected a cupy.ndarray like grad_output"):
        F.linear_backward(cuda, np.zeros((2, 5), np.float32), np.zeros((4, 5), np.float32))


def test_cuda_dispatch_conv_numpy_path_unchanged():
    x = np.ones((1, 1, 3, 3))
    assert type(F.conv2d(x, np.ones((1, 1, 3, 3)))) is np.ndarray
    assert _dispatch.classify(x) == _dispatch.NUMPY
    assert F.linear(np.ones((2, 3, 4)), np.ones((5, 4))).shape == (2, 3, 5)  # leading dims still flattened
    with pytest.raises(TypeError, match=r"^conv2d: input: expected a numpy.ndarray of float32 or float64, got list"):
        F.conv2d([1.0], np.ones((1, 1, 1, 1)))


# ---- cnnkit.testing: its samples and reference checks, through dispatch on the stand-in GPU


@pytest.mark.parametrize("op", FAMILY_OPS["conv"])
def test_cuda_host_conv_check_op(op, monkeypatch):
    """check_op over conv2d, conv_transpose2d and linear: every sample case, float32 and float64, forward and backward."""
    with standin_gpu(monkeypatch, max_blocks=2) as gpu:  # few blocks: each costs a barrier round on the host
        assert "forward and backward" in check_on_device(gpu, op)
