"""conv2d, conv_transpose2d and their backwards against the float64 references in
cnnkit.reference: seeded random sweeps, finite differences, torch cross-checks,
edge cases (empty batch, odd layouts, workspace chunking) and every error path."""

import dataclasses

import numpy as np
import pytest

import cnnkit
from cnnkit import _C
from cnnkit import functional as F

from cnnkit import reference as ref
from conftest import assert_close, random_array

# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


def _fmt(v):
    if isinstance(v, str):
        return v
    if isinstance(v, tuple):
        return "x".join(str(i) for i in v)
    return str(v)


@dataclasses.dataclass(frozen=True)
class ConvCase:
    """One conv2d or conv_transpose2d configuration. c_in / c_out are the op's input
    and output channels; the weight layout follows torch for each op."""

    kind: str
    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    kh: int
    kw: int
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True
    transposed: bool = False
    output_padding: object = 0

    @property
    def x_shape(self):
        return (self.n, self.c_in, self.h, self.w)

    @property
    def weight_shape(self):
        if self.transposed:
            return (self.c_in, self.c_out // self.groups, self.kh, self.kw)
        return (self.c_out, self.c_in // self.groups, self.kh, self.kw)

    def kwargs(self):
        kw = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)
        if self.transposed:
            kw["output_padding"] = self.output_padding
        return kw

    def out_hw(self):
        if self.transposed:
            s, p, op, d = (ref._pair(v) for v in (self.stride, self.padding, self.output_padding, self.dilation))
            return tuple(
                ref.conv_transpose_out_size(size, k, s[i], p[i], op[i], d[i])
                for i, (size, k) in enumerate(((self.h, self.kh), (self.w, self.kw)))
            )
        s, d = ref._pair(self.stride), ref._pair(self.dilation)
        t, b, l, r = ref.conv_padding(self.padding, (self.kh, self.kw), d)
        return (
            ref.conv_out_size(self.h, self.kh, s[0], t, b, d[0]),
            ref.conv_out_size(self.w, self.kw, s[1], l, r, d[1]),
        )

    @property
    def out_shape(self):
        return (self.n, self.c_out) + self.out_hw()

    @property
    def id(self):
        parts = [
            self.kind,
            f"n{self.n}",
            f"c{self.c_in}to{self.c_out}",
            f"g{self.groups}",
            f"k{self.kh}x{self.kw}",
            f"s{_fmt(self.stride)}",
            f"p{_fmt(self.padding)}",
            f"d{_fmt(self.dilation)}",
        ]
        if self.transposed:
            parts.append(f"op{_fmt(self.output_padding)}")
        parts.append(f"{self.h}x{self.w}")
        if not self.bias:
            parts.append("nobias")
        return "-".join(parts)

    # The op under test and its reference, with this case's arguments.
    def forward(self, x, w, b):
        op = F.conv_transpose2d if self.transposed else F.conv2d
        return op(x, w, b, **self.kwargs())

    def backward(self, gy, x, w):
        op = F.conv_transpose2d_backward if self.transposed else F.conv2d_backward
        return op(gy, x, w, **self.kwargs())

    def reference(self, x, w, b):
        op = ref.conv_transpose2d if self.transposed else ref.conv2d
        return op(x, w, b, **self.kwargs())

    def reference_grads(self, gy, x, w):
        op = ref.conv_transpose2d_backward if self.transposed else ref.conv2d_backward
        return op(gy, x, w, **self.kwargs())

    def operands(self, rng, dtype):
        x = random_array(rng, self.x_shape, dtype)
        w = random_array(rng, self.weight_shape, dtype)
        b = random_array(rng, (self.c_out,), dtype) if self.bias else None
        return x, w, b


def _int_or_pair(rng, lo, hi):
    """An int, or (about half the time) an (h, w) pair, each in [lo, hi]."""
    if rng.random() < 0.5:
        return int(rng.integers(lo, hi + 1))
    return tuple(int(v) for v in rng.integers(lo, hi + 1, 2))


def _padding(rng):
    """An int, an asymmetric (h, w) pair, or 'valid'."""
    r = rng.random()
    if r < 0.4:
        return int(rng.integers(0, 3))
    if r < 0.85:
        ph = int(rng.integers(0, 3))
        return (ph, (ph + int(rng.integers(1, 3))) % 3)
    return "valid"


def _conv2d_case(rng, kind):
    """A random conv2d case of the given kind with N<=3, C<=8, H,W<=12 and a
    non-empty output."""
    while True:
        n = int(rng.integers(1, 4))
        groups, cig, cog = 1, int(rng.integers(1, 6)), int(rng.integers(1, 6))
        kh, kw = (int(v) for v in rng.integers(1, 6, 2))
        stride, dilation, padding = _int_or_pair(rng, 1, 3), _int_or_pair(rng, 1, 3), _padding(rng)
        if kind == "grouped":
            groups = int(rng.integers(2, 5))
            cig, cog = (int(v) for v in rng.integers(1, 8 // groups + 1, 2))
        elif kind == "depthwise":  # groups == C_in, channel multiplier 1..3
            cig, cog = 1, int(rng.integers(1, 4))
            groups = int(rng.integers(2, 8 // cog + 1))
        elif kind == "pointwise":
            kh = kw = 1
            padding = int(rng.integers(0, 2)) if rng.random() < 0.3 else 0
        elif kind == "rect":
            kh, kw = (int(v) for v in rng.choice(np.arange(1, 6), 2, replace=False))
        elif kind == "same":
            stride, padding = 1 if rng.random() < 0.5 else (1, 1), "same"
        elif kind == "valid":
            padding = "valid"
        elif kind == "gemm":  # C_in/groups * kH * kW > 32: the im2col + GEMM path
            groups = int(rng.integers(1, 3))
            cig = int(rng.integers(4, 8 // groups + 1))
            cog = int(rng.integers(1, 8 // groups + 1))
            kh, kw = (int(v) for v in rng.integers(3, 6, 2))
        h, w = (int(v) for v in rng.integers(1, 13, 2))
        case = ConvCase(
            kind, n, groups * cig, groups * cog, h, w, kh, kw, stride, padding, dilation, groups,
            bias=bool(rng.random() < 0.8),
        )
        if min(case.out_hw()) >= 1:
            return case


def _conv_transpose2d_case(rng, kind):
    """A random conv_transpose2d case with N<=3, C<=8, an input of at most 7x7 and
    an output of at most 16x16."""
    while True:
        n = int(rng.integers(1, 4))
        groups, cig, cog = 1, int(rng.integers(1, 6)), int(rng.integers(1, 6))
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        stride, dilation = _int_or_pair(rng, 1, 3), _int_or_pair(rng, 1, 3)
        padding = _int_or_pair(rng, 0, 2)
        s, d = ref._pair(stride), ref._pair(dilation)
        # output_padding must be below stride or dilation on each axis; mostly 0
        op = tuple(int(rng.integers(0, max(s[i], d[i]))) if rng.random() < 0.3 else 0 for i in range(2))
        if kind == "grouped":
            groups = int(rng.integers(2, 5))
            cig, cog = (int(v) for v in rng.integers(1, 8 // groups + 1, 2))
        elif kind == "depthwise":  # groups == C_in
            cig, cog = 1, int(rng.integers(1, 4))
            groups = int(rng.integers(2, 8 // cog + 1))
        elif kind == "pointwise":
            kh = kw = 1
            padding = 0
        elif kind == "outpad":  # output_padding > 0, sometimes >= stride (allowed by dilation)
            op = tuple(int(rng.integers(0, max(s[i], d[i]))) for i in range(2))
            if op == (0, 0):
                continue
        elif kind == "gemm":  # the adjoint convolution's K = C_out/groups * kH * kW > 32
            groups = int(rng.integers(1, 3))
            cog = int(rng.integers(4, 8 // groups + 1))
            cig = int(rng.integers(1, 8 // groups + 1))
            kh, kw = (int(v) for v in rng.integers(3, 5, 2))
        h, w = (int(v) for v in rng.integers(1, 8, 2))
        case = ConvCase(
            kind, n, groups * cig, groups * cog, h, w, kh, kw, stride, padding, dilation, groups,
            bias=bool(rng.random() < 0.8), transposed=True, output_padding=op if op[0] != op[1] else op[0],
        )
        if 1 <= min(case.out_hw()) and max(case.out_hw()) <= 16:
            return case


CONV2D_KINDS = {
    "general": 45, "grouped": 30, "depthwise": 30, "pointwise": 20,
    "rect": 20, "same": 25, "valid": 10, "gemm": 20,
}  # fmt: skip
CONV_TRANSPOSE2D_KINDS = {"general": 40, "grouped": 25, "depthwise": 20, "pointwise": 10, "outpad": 15, "gemm": 10}


def _sweep(make, kinds, seed):
    rng = np.random.default_rng(seed)
    return [make(rng, kind) for kind, count in kinds.items() for _ in range(count)]


CONV2D_CASES = _sweep(_conv2d_case, CONV2D_KINDS, seed=20240601)
CONV_TRANSPOSE2D_CASES = _sweep(_conv_transpose2d_case, CONV_TRANSPOSE2D_KINDS, seed=20240602)
SWEEP = [pytest.param(c, id=f"{i:03d}-{c.id}") for i, c in enumerate(CONV2D_CASES)] + [
    pytest.param(c, id=f"T{i:03d}-{c.id}") for i, c in enumerate(CONV_TRANSPOSE2D_CASES)
]


def check_forward(case, dtype, rng):
    x, w, b = case.operands(rng, dtype)
    assert_close(case.forward(x, w, b), case.reference(x, w, b), dtype)


def check_backward(case, dtype, rng):
    x, w, _ = case.operands(rng, dtype)
    gy = random_array(rng, case.out_shape, dtype)
    got = case.backward(gy, x, w)
    assert isinstance(got, tuple) and len(got) == 3
    for name, g, e in zip(("grad_input", "grad_weight", "grad_bias"), got, case.reference_grads(gy, x, w)):
        assert_close(g, e, dtype, err_msg=name)


def test_sweep_covers_the_configuration_space():
    """The generated sweeps really span what they claim (a guard on the generator)."""
    c2, ct = CONV2D_CASES, CONV_TRANSPOSE2D_CASES
    assert len(c2) == 200 and len(ct) == 120
    pairs = [ref._pair(c.stride) for c in c2] + [ref._pair(c.dilation) for c in c2]
    assert {v for p in pairs for v in p} == {1, 2, 3}
    assert any(isinstance(c.stride, tuple) and c.stride[0] != c.stride[1] for c in c2)
    assert any(isinstance(c.padding, tuple) and c.padding[0] != c.padding[1] for c in c2)
    same = [c for c in c2 if c.padding == "same"]
    assert {c.kh % 2 for c in same} == {0, 1} and any(ref._pair(c.dilation) != (1, 1) for c in same)
    assert {c.c_out // c.c_in for c in c2 if c.kind == "depthwise"} == {1, 2, 3}
    assert any(c.kh != c.kw for c in c2) and any(c.kh == c.kw == 1 for c in c2)
    assert any(c.c_in // c.groups * c.kh * c.kw > 32 for c in c2)
    assert any(not c.bias for c in c2) and any(c.n > 1 for c in c2)
    ops = [ref._pair(c.output_padding) for c in ct]
    assert any(o[0] >= ref._pair(c.stride)[0] for c, o in zip(ct, ops))  # allowed by dilation
    assert {c.groups > 1 for c in ct} == {True, False}
    assert any(c.c_out // c.groups * c.kh * c.kw > 32 for c in ct)


@pytest.mark.parametrize("case", SWEEP)
def test_forward_matches_reference(case, dtype, rng):
    check_forward(case, dtype, rng)


@pytest.mark.parametrize("case", SWEEP)
def test_backward_matches_reference(case, dtype, rng):
    check_backward(case, dtype, rng)


def test_asymmetric_padding_through_C(dtype, rng):
    """_C.conv2d takes (top, bottom, left, right); 'same' with an even kernel is the
    public way there, but every asymmetric combination must work."""
    x = random_array(rng, (2, 3, 7, 6), dtype)
    w = random_array(rng, (4, 3, 3, 2), dtype)
    b = random_array(rng, (4,), dtype)
    for pad in [(0, 2, 1, 0), (2, 0, 0, 1), (1, 2, 3, 0), (0, 0, 2, 1)]:
        expected = ref.conv2d(x, w, b, stride=(2, 1), padding=pad, dilation=(1, 2))
        assert_close(_C.conv2d(x, w, b, (2, 1), pad, (1, 2), 1), expected, dtype, err_msg=str(pad))
        gy = random_array(rng, expected.shape, dtype)
        got = _C.conv2d_backward(gy, x, w, (2, 1), pad, (1, 2), 1)
        want = ref.conv2d_backward(gy, x, w, stride=(2, 1), padding=pad, dilation=(1, 2))
        for g, e in zip(got, want):
            assert_close(g, e, dtype, err_msg=str(pad))


@pytest.mark.parametrize("stride", [(1, 2), (2, 4), (4, 4), (3, 5)], ids=str)
def test_im2col_strided_rows(dtype, rng, stride):
    """AlexNet conv1's lowering (k11, stride 4, pad 2) and the other horizontal strides:
    2 and 4 have their own vectorised gathers in im2col, 5 takes the generic loop."""
    x = random_array(rng, (2, 3, 29, 37), dtype)
    w = random_array(rng, (8, 3, 11, 11), dtype)  # K = 363: the GEMM path, not direct
    b = random_array(rng, (8,), dtype)
    expected = ref.conv2d(x, w, b, stride=stride, padding=2)
    assert_close(F.conv2d(x, w, b, stride=stride, padding=2), expected, dtype)
    gy = random_array(rng, expected.shape, dtype)
    got = F.conv2d_backward(gy, x, w, stride=stride, padding=2)
    for g, e in zip(got, ref.conv2d_backward(gy, x, w, stride=stride, padding=2)):
        assert_close(g, e, dtype)


# ---------------------------------------------------------------------------
# Finite differences (float64) of every backward, and of the references' own gradients
# ---------------------------------------------------------------------------

FD_CASES = [
    ConvCase("plain", 2, 3, 2, 5, 6, 3, 3, padding=1),
    ConvCase("grouped", 2, 4, 6, 5, 5, 2, 3, groups=2, padding=(1, 0)),
    ConvCase("depthwise", 2, 3, 6, 6, 5, 3, 3, groups=3, padding=1),
    ConvCase("dilated", 1, 2, 3, 7, 7, 3, 2, dilation=(2, 3), padding=(2, 1)),
    ConvCase("strided", 2, 2, 3, 7, 8, 3, 3, stride=(2, 3), padding=1),
    ConvCase("pointwise", 2, 5, 3, 4, 3, 1, 1),
    ConvCase("same-even", 1, 2, 2, 5, 6, 2, 4, padding="same", dilation=(1, 2)),
    ConvCase("gemm", 1, 6, 2, 5, 5, 3, 3, padding=1, groups=1),
    ConvCase("T-plain", 2, 3, 2, 4, 3, 3, 3, transposed=True),
    ConvCase("T-strided", 1, 2, 3, 3, 4, 3, 2, stride=(2, 3), padding=1, output_padding=(1, 2), transposed=True),
    ConvCase("T-grouped", 2, 4, 6, 3, 3, 2, 2, groups=2, stride=2, transposed=True),
    ConvCase("T-depthwise", 1, 3, 6, 4, 4, 3, 3, groups=3, padding=1, transposed=True),
    ConvCase("T-dilated", 1, 2, 2, 4, 3, 2, 3, dilation=(3, 2), output_padding=(2, 1), transposed=True),
    ConvCase("T-pointwise", 2, 3, 2, 3, 3, 1, 1, stride=2, transposed=True),
]
FD = [pytest.param(c, id=c.id) for c in FD_CASES]


def _fd_check(got, f, at, name):
    want = ref.numeric_grad(f, at)
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7 * scale, err_msg=name)


@pytest.mark.parametrize("case", FD)
def test_backward_finite_differences(case, rng):
    x, w, b = case.operands(rng, np.float64)
    gy = random_array(rng, case.out_shape, np.float64)
    gx, gw, gb = case.backward(gy, x, w)
    _fd_check(gx, lambda x_: np.sum(case.forward(x_, w, b) * gy), x, "grad_input")
    _fd_check(gw, lambda w_: np.sum(case.forward(x, w_, b) * gy), w, "grad_weight")
    _fd_check(gb, lambda b_: np.sum(case.forward(x, w, b_) * gy), b, "grad_bias")


@pytest.mark.parametrize("case", FD)
def test_reference_grads_finite_differences(case, rng):
    """The reference gradients, written by scattering, agree with finite
    differences of the reference forward: the oracle is checked too."""
    x, w, b = case.operands(rng, np.float64)
    gy = random_array(rng, case.out_shape, np.float64)
    gx, gw, gb = case.reference_grads(gy, x, w)
    _fd_check(gx, lambda x_: np.sum(case.reference(x_, w, b) * gy), x, "grad_input")
    _fd_check(gw, lambda w_: np.sum(case.reference(x, w_, b) * gy), w, "grad_weight")
    _fd_check(gb, lambda b_: np.sum(case.reference(x, w, b_) * gy), b, "grad_bias")


# ---------------------------------------------------------------------------
# torch cross-checks
# ---------------------------------------------------------------------------

_pick = np.random.default_rng(7)
TORCH_CASES = [
    pytest.param(CONV2D_CASES[i], id=f"{i:03d}-{CONV2D_CASES[i].id}")
    for i in sorted(_pick.choice(len(CONV2D_CASES), 25, replace=False))
] + [
    pytest.param(CONV_TRANSPOSE2D_CASES[i], id=f"T{i:03d}-{CONV_TRANSPOSE2D_CASES[i].id}")
    for i in sorted(_pick.choice(len(CONV_TRANSPOSE2D_CASES), 15, replace=False))
]


# torch warns that 'same' with an even kernel copies the input; that is not our concern
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("case", TORCH_CASES)
def test_matches_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    x, w, b = case.operands(rng, dtype)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if b is not None else None
    if case.transposed:
        ty = torch.nn.functional.conv_transpose2d(
            tx, tw, tb, case.stride, case.padding, case.output_padding, case.groups, case.dilation
        )
    else:
        ty = torch.nn.functional.conv2d(tx, tw, tb, case.stride, case.padding, case.dilation, case.groups)
    y = case.forward(x, w, b)
    want_y = ty.detach().numpy().astype(np.float64)
    assert_close(y, want_y, dtype)
    gy = random_array(rng, y.shape, dtype)
    ty.backward(torch.tensor(gy))
    gx, gw, gb = case.backward(gy, x, w)
    assert_close(gx, tx.grad.numpy().astype(np.float64), dtype, err_msg="grad_input")
    assert_close(gw, tw.grad.numpy().astype(np.float64), dtype, err_msg="grad_weight")
    if tb is not None:
        assert_close(gb, tb.grad.numpy().astype(np.float64), dtype, err_msg="grad_bias")


# ---------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------

EDGE_CASES = [
    ConvCase("kernel-is-input", 2, 3, 4, 5, 4, 5, 4),
    ConvCase("kernel-is-padded-input", 2, 3, 2, 3, 4, 5, 6, padding=1),
    ConvCase("kernel-is-input-depthwise", 2, 4, 4, 3, 5, 3, 5, groups=4),
    ConvCase("kernel-is-input-gemm", 1, 8, 3, 4, 4, 4, 4),
    ConvCase("h1", 2, 3, 2, 1, 9, 1, 3),
    ConvCase("h1-padded", 2, 3, 2, 1, 6, 3, 3, padding=1, stride=(1, 2)),
    ConvCase("w1", 2, 3, 2, 7, 1, 3, 1, padding=(1, 0)),
    ConvCase("h1w1", 3, 4, 5, 1, 1, 1, 1),
    ConvCase("h1w1-depthwise", 2, 3, 6, 1, 1, 1, 1, groups=3),
    ConvCase("1x1-strided-padded", 2, 4, 3, 6, 5, 1, 1, stride=2, padding=1),
    ConvCase("1x1-dilated", 2, 4, 3, 5, 5, 1, 1, dilation=3),
    ConvCase("same-h1", 2, 2, 3, 1, 5, 4, 3, padding="same"),
    ConvCase("T-h1w1", 2, 3, 2, 1, 1, 1, 1, transposed=True),
    ConvCase("T-h1w1-k3", 2, 3, 2, 1, 1, 3, 3, transposed=True),
    ConvCase("T-output-1x1", 2, 3, 4, 3, 3, 3, 3, padding=2, transposed=True),
    ConvCase("T-w1-strided", 1, 2, 3, 4, 1, 2, 1, stride=3, transposed=True),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EDGE_CASES])
def test_edge_shapes(case, dtype, rng):
    check_forward(case, dtype, rng)
    check_backward(case, dtype, rng)


def test_edge_cases_have_the_shapes_they_claim():
    by_kind = {c.kind: c for c in EDGE_CASES}
    for kind in ("kernel-is-input", "kernel-is-padded-input", "kernel-is-input-depthwise", "T-output-1x1"):
        assert by_kind[kind].out_hw() == (1, 1), kind


EMPTY_CASES = [
    ConvCase("empty", 0, 4, 6, 6, 5, 3, 3, padding=1),
    ConvCase("empty-gemm", 0, 8, 4, 6, 6, 3, 3),
    ConvCase("empty-depthwise", 0, 4, 8, 5, 5, 3, 3, groups=4),
    ConvCase("empty-pointwise", 0, 40, 4, 3, 3, 1, 1),
    ConvCase("T-empty", 0, 4, 6, 3, 3, 3, 3, stride=2),
    ConvCase("T-empty-gemm", 0, 2, 8, 3, 3, 3, 3),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in EMPTY_CASES])
def test_empty_batch(case, dtype, rng):
    x, w, b = case.operands(rng, dtype)
    y = case.forward(x, w, b)
    assert y.shape == case.out_shape and y.dtype == dtype
    gy = np.zeros(case.out_shape, dtype)
    gx, gw, gb = case.backward(gy, x, w)
    assert gx.shape == x.shape and gx.dtype == dtype
    np.testing.assert_array_equal(gw, np.zeros(case.weight_shape, dtype))
    np.testing.assert_array_equal(gb, np.zeros(case.c_out, dtype))
    assert gw.dtype == dtype and gb.dtype == dtype


NO_FILTER_CASES = [
    ConvCase("no-filters-direct", 2, 1, 0, 8, 8, 3, 3, padding=1),
    ConvCase("no-filters-depthwise", 2, 4, 0, 6, 6, 3, 3, padding=1, groups=4),
    ConvCase("no-filters-gemm", 2, 40, 0, 6, 6, 3, 3),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in NO_FILTER_CASES])
def test_no_output_channels(case, dtype, rng):
    """No filter reads x, so its gradient is zero (the degenerate-geometry path). The
    same layer with one filter per group runs first, so that memory it leaves behind
    would show in a gradient left unwritten."""
    warm = dataclasses.replace(case, c_out=case.groups)
    xw, ww, _ = warm.operands(rng, dtype)
    warm.backward(np.full(warm.out_shape, 1e3, dtype), xw, ww)
    x, w, b = case.operands(rng, dtype)
    y = case.forward(x, w, b)
    assert y.shape == case.out_shape == (case.n, 0) + case.out_hw()
    gx, gw, gb = case.backward(np.zeros(case.out_shape, dtype), x, w)
    np.testing.assert_array_equal(gx, np.zeros(case.x_shape, dtype))
    assert gw.shape == case.weight_shape and gb.shape == (0,)


def _relayout(a, layout):
    """The same values as a, held in a differently laid-out array."""
    if layout == "fortran":
        out = np.asfortranarray(a)
        assert a.ndim < 2 or not out.flags.c_contiguous
        return out
    if layout == "stepped":  # every other element of a larger, NaN-filled array
        base = np.full(tuple(2 * s + 1 for s in a.shape), np.nan, a.dtype)
        out = base[tuple(slice(1, None, 2) for _ in a.shape)]
    elif layout == "transposed":  # a transposed view of a contiguous array
        base = np.ascontiguousarray(a.T)
        return base.T
    elif layout == "flipped":  # negative strides
        base = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        out = base[(slice(None, None, -1),) * a.ndim]
        return out
    out[...] = a
    return out


LAYOUTS = ["fortran", "stepped", "transposed", "flipped"]
LAYOUT_CASES = [
    ConvCase("gemm", 2, 6, 4, 6, 5, 3, 3, padding=1),
    ConvCase("depthwise", 2, 3, 6, 6, 5, 3, 3, groups=3, stride=2),
    ConvCase("pointwise", 2, 40, 4, 3, 4, 1, 1),
    ConvCase("T-gemm", 2, 3, 6, 4, 4, 3, 3, stride=2, transposed=True),
    ConvCase("T-direct", 2, 4, 4, 4, 3, 2, 2, groups=2, transposed=True),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("operand", ["input", "weight", "bias"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in LAYOUT_CASES])
def test_forward_accepts_any_layout(case, operand, layout, dtype, rng):
    x, w, b = case.operands(rng, dtype)
    want = case.reference(x, w, b)
    x, w, b = (_relayout(a, layout) if name == operand else a for name, a in zip(("input", "weight", "bias"), (x, w, b)))
    assert_close(case.forward(x, w, b), want, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("operand", ["grad_output", "input", "weight"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in LAYOUT_CASES])
def test_backward_accepts_any_layout(case, operand, layout, dtype, rng):
    x, w, _ = case.operands(rng, dtype)
    gy = random_array(rng, case.out_shape, dtype)
    want = case.reference_grads(gy, x, w)
    gy, x, w = (
        _relayout(a, layout) if name == operand else a for name, a in zip(("grad_output", "input", "weight"), (gy, x, w))
    )
    for g, e in zip(case.backward(gy, x, w), want):
        assert_close(g, e, dtype)


def _check_fresh(results, inputs):
    for r in results:
        assert r.flags.c_contiguous
        for a in inputs:
            assert not np.shares_memory(r, a)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in LAYOUT_CASES])
def test_results_are_new_arrays_and_inputs_are_untouched(case, dtype, rng):
    x, w, b = case.operands(rng, dtype)
    gy = random_array(rng, case.out_shape, dtype)
    saved = [a.copy() for a in (x, w, b, gy)]
    y = case.forward(x, w, b)
    grads = case.backward(gy, x, w)
    _check_fresh([y, *grads], [x, w, b, gy])
    assert all(r.dtype == dtype for r in (y, *grads))
    for a, s in zip((x, w, b, gy), saved):
        np.testing.assert_array_equal(a, s)
    # outputs are distinct from each other too
    assert not any(np.shares_memory(p, q) for i, p in enumerate(grads) for q in grads[i + 1 :])


# ---------------------------------------------------------------------------
# Workspace chunking: the im2col workspace bound steers csrc/conv.cpp between one
# GEMM per few output rows of one sample, and GEMMs over several whole samples.
# ---------------------------------------------------------------------------

CHUNK_CASES = [
    ConvCase("gemm", 5, 8, 6, 7, 6, 3, 3, padding=1),
    ConvCase("gemm-grouped-strided", 5, 8, 6, 9, 8, 3, 3, groups=2, stride=2, padding=(1, 0), dilation=(1, 2)),
    ConvCase("gemm-pointwise", 5, 40, 8, 5, 6, 1, 1),
    ConvCase("T-gemm", 5, 3, 8, 5, 4, 3, 3, stride=(2, 1), padding=1, output_padding=(1, 0)),
    ConvCase("T-gemm-pointwise", 5, 6, 40, 4, 5, 1, 1),
]


def _workspace_for(case, dtype, mode):
    """Workspace bounds that, under make_plan in csrc/conv.cpp, give: one output row
    per GEMM ('rows1'), three rows per GEMM with a shorter last block ('rows3'), two
    samples per GEMM with a lone last sample ('samples2'), or all samples in one GEMM
    ('default'). The bounds only steer the path; every path must give the reference."""
    if case.transposed:  # the adjoint convolution runs: its columns are the input pixels
        c_img, c_col, (ho, wo) = case.c_out, case.c_in, (case.h, case.w)
    else:
        c_img, c_col, (ho, wo) = case.c_in, case.c_out, case.out_hw()
    per_col = (c_img * case.kh * case.kw + c_col) * np.dtype(dtype).itemsize
    return {
        "rows1": 1,
        "rows3": per_col * wo * 3,
        "samples2": per_col * (ho * wo * 5 // 2),
        "default": 64 << 20,
    }[mode]


@pytest.mark.parametrize("mode", ["rows1", "rows3", "samples2", "default"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CHUNK_CASES])
def test_workspace_chunking(case, mode, dtype, rng, workspace_bytes):
    x, w, b = case.operands(rng, dtype)
    gy = random_array(rng, case.out_shape, dtype)
    want_y, want_grads = case.reference(x, w, b), case.reference_grads(gy, x, w)
    workspace_bytes(_workspace_for(case, dtype, mode))
    assert_close(case.forward(x, w, b), want_y, dtype)
    for name, g, e in zip(("grad_input", "grad_weight", "grad_bias"), case.backward(gy, x, w), want_grads):
        assert_close(g, e, dtype, err_msg=name)


def test_workspace_bytes_round_trip(workspace_bytes):
    workspace_bytes(12345)
    assert cnnkit.get_workspace_bytes() == 12345
    workspace_bytes(1)
    assert cnnkit.get_workspace_bytes() == 1


def test_workspace_fixture_restored():
    assert cnnkit.get_workspace_bytes() == 64 << 20


@pytest.mark.parametrize("bytes_", [0, -1])
def test_workspace_bytes_must_be_positive(bytes_):
    before = cnnkit.get_workspace_bytes()
    with pytest.raises(ValueError, match="set_workspace_bytes: bytes:"):
        cnnkit.set_workspace_bytes(bytes_)
    assert cnnkit.get_workspace_bytes() == before


BATCH_CASES = [
    ConvCase("batch16-gemm", 16, 8, 8, 4, 4, 3, 3, padding=1),
    ConvCase("batch16-pointwise", 16, 40, 6, 4, 4, 1, 1),
    ConvCase("batch16-depthwise", 16, 8, 8, 4, 4, 3, 3, groups=8, padding=1),
    ConvCase("T-batch16-gemm", 16, 4, 8, 4, 4, 3, 3, padding=1, transposed=True),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BATCH_CASES])
def test_large_batch_small_planes(case, dtype, rng):
    check_forward(case, dtype, rng)
    check_backward(case, dtype, rng)


# ---------------------------------------------------------------------------
# Winograd path (3x3, 4x4 and 5x5 stride-1 layers with >= 16 channels per group;
# strided layers through their space-to-depth form; transposed ones through their
# stacked output phases)
# ---------------------------------------------------------------------------

WINOGRAD_CASES = [
    ConvCase("w3-partial-tiles", 2, 16, 16, 9, 11, 3, 3, padding=1),
    ConvCase("w3-one-tile", 1, 16, 20, 6, 6, 3, 3, bias=False),
    ConvCase("w3-pad-exceeds-kernel", 2, 16, 16, 5, 7, 3, 3, padding=2),
    ConvCase("w3-asymmetric-pad", 1, 17, 19, 8, 9, 3, 3, padding=(0, 2)),
    ConvCase("w3-dilated", 2, 16, 16, 13, 10, 3, 3, padding=2, dilation=2),
    ConvCase("w3-dilated-rect", 1, 16, 24, 12, 9, 3, 3, padding=(3, 1), dilation=(3, 1)),
    ConvCase("w3-same-dilated", 2, 16, 16, 11, 12, 3, 3, padding="same", dilation=2),
    ConvCase("w3-grouped", 2, 32, 48, 8, 10, 3, 3, padding=1, groups=2),
    ConvCase("w3-wide-rows", 1, 16, 16, 3, 300, 3, 3, padding=1),
    ConvCase("w5-partial-tiles", 2, 16, 16, 9, 11, 5, 5, padding=2),
    ConvCase("w5-valid", 3, 16, 17, 7, 8, 5, 5, bias=False),
    ConvCase("w5-dilated", 1, 16, 16, 12, 13, 5, 5, padding=(4, 3), dilation=2),
    ConvCase("w5-grouped", 2, 32, 32, 7, 9, 5, 5, padding=2, groups=2),
    ConvCase("w4-padded", 2, 16, 16, 10, 11, 4, 4, padding=(1, 2)),
    ConvCase("w4-dilated-same", 1, 16, 24, 10, 8, 4, 4, padding="same", dilation=(2, 3)),
    # Strided, through the space-to-depth form: taps per stride phase ceil(k / s).
    ConvCase("s-alexnet-conv1", 2, 3, 16, 31, 27, 11, 11, stride=4, padding=2),
    ConvCase("s-rect", 2, 2, 16, 23, 20, 9, 10, stride=(3, 4), padding=(2, 1)),
    ConvCase("s-6x6-s2", 1, 4, 16, 19, 18, 6, 6, stride=2, padding=(1, 2), bias=False),
    ConvCase("s-7x7-s2", 2, 4, 16, 26, 25, 7, 7, stride=2, padding=3),
    ConvCase("s-10x10-s2", 2, 4, 16, 24, 22, 10, 10, stride=2, padding=3),
    ConvCase("s-4x4-s2", 2, 4, 16, 22, 20, 4, 4, stride=2, padding=1),  # F(5x5, 2x2)
    # Transposed: taps per stride phase ceil(k / s). Without padding, output_padding
    # reaches past the stacked convolution's outputs, where only the bias lands.
    ConvCase("T-4x4-s2", 2, 16, 16, 7, 6, 4, 4, stride=2, padding=1, transposed=True),
    ConvCase("T-4x4-s2-outpad", 2, 16, 20, 6, 7, 4, 4, stride=2, padding=1, transposed=True, output_padding=1),
    ConvCase("T-4x4-s2-outpad-past", 2, 16, 16, 8, 9, 4, 4, stride=2, transposed=True, output_padding=1),
    ConvCase("T-rect-outpad-past", 1, 16, 16, 5, 4, 4, 6, stride=(2, 3), transposed=True, output_padding=(1, 2)),
    ConvCase("T-3x3-s1", 1, 32, 16, 6, 7, 3, 3, padding=1, transposed=True, bias=False),
    ConvCase("T-5x5-s1-wide-pad", 1, 16, 16, 4, 5, 5, 5, padding=2, transposed=True),
    ConvCase("T-4x4-s1", 2, 16, 16, 7, 8, 4, 4, padding=1, transposed=True),
    # Stride 1 runs as the adjoint convolution on the stride-1 path, with dilation,
    # groups, and output padding (below the dilation) as the bottom and right padding.
    ConvCase("T-3x3-s1-dilated", 2, 16, 24, 9, 10, 3, 3, padding=(1, 3), dilation=2, transposed=True),
    ConvCase("T-3x3-s1-grouped", 1, 32, 32, 7, 8, 3, 3, padding=1, groups=2, transposed=True),
    ConvCase("T-3x3-s1-pad-past-kernel", 1, 16, 16, 12, 13, 3, 3, padding=3, transposed=True),  # stacked form
    ConvCase("T-3x3-s1-d2-outpad", 1, 16, 16, 8, 7, 3, 3, padding=2, dilation=2, transposed=True, output_padding=1),
    ConvCase("T-7x7-s2", 1, 16, 4, 6, 7, 7, 7, stride=2, padding=3, transposed=True, output_padding=1),
    ConvCase("T-10x10-s2", 3, 16, 17, 4, 5, 10, 10, stride=2, padding=3, transposed=True, output_padding=1),
    ConvCase("T-rect", 2, 16, 16, 9, 9, 4, 6, stride=(2, 3), padding=(1, 2), transposed=True, output_padding=(1, 2)),
]


WINOGRAD_CASE_BY_KIND = {c.kind: c for c in WINOGRAD_CASES}


def _algorithm(case, x, w, grad=None):
    kw = case.kwargs()
    return (F.conv_transpose2d_algorithm if case.transposed else F.conv2d_algorithm)(x, w, **kw, grad=grad)


def test_winograd_cases_take_the_winograd_path():
    for case in WINOGRAD_CASES:
        x, w, _ = case.operands(np.random.default_rng(0), np.float32)
        assert _algorithm(case, x, w) == "winograd", case.id


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in WINOGRAD_CASES])
def test_winograd_matches_reference(case, dtype, rng):
    check_forward(case, dtype, rng)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in WINOGRAD_CASES])
def test_winograd_backward_matches_reference(case, dtype, rng):
    """A backward's input gradient runs the other direction's Winograd path where
    it applies (a convolution's is a transposed convolution of grad_output)."""
    check_backward(case, dtype, rng)


@pytest.mark.parametrize(
    "case, gx_algorithm",
    [
        pytest.param(ConvCase("3x3", 1, 16, 16, 8, 8, 3, 3, padding=1), F.conv_transpose2d_algorithm, id="3x3"),
        pytest.param(
            ConvCase("T-5x5-s2", 1, 16, 16, 6, 6, 5, 5, stride=2, padding=2, transposed=True, output_padding=1),
            F.conv2d_algorithm,
            id="T-5x5-s2",
        ),
    ],
)
def test_winograd_backward_finite_differences(case, gx_algorithm, rng):
    """Forward and input gradient both on Winograd paths, against finite differences."""
    x, w, b = case.operands(rng, np.float64)
    gy = random_array(rng, case.out_shape, np.float64)
    kw = {k: v for k, v in case.kwargs().items() if k != "output_padding"}
    assert _algorithm(case, x, w) == "winograd"
    assert gx_algorithm(gy, w, **kw) == "winograd"
    assert _algorithm(case, x, w, grad="input") == _algorithm(case, x, w, grad="weight") == "winograd"
    gx, gw, _ = case.backward(gy, x, w)
    _fd_check(gx, lambda x_: np.sum(case.forward(x_, w, b) * gy), x, "grad_input")
    _fd_check(gw, lambda w_: np.sum(case.forward(x, w_, b) * gy), w, "grad_weight")


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in WINOGRAD_CASES[::2]])
def test_winograd_matches_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    x, w, b = case.operands(rng, dtype)
    tb = torch.tensor(b) if b is not None else None
    op = torch.nn.functional.conv_transpose2d if case.transposed else torch.nn.functional.conv2d
    want = op(torch.tensor(x), torch.tensor(w), tb, **case.kwargs())
    assert_close(case.forward(x, w, b), want.numpy().astype(np.float64), dtype)


@pytest.mark.parametrize("k", [3, 5])
def test_winograd_float32_error_is_near_im2col(k, rng):
    """The transforms cost float32 some accuracy; on a deep layer (K = 256*k*k) the
    error stays within 2e-5 of the largest output, the bound the README gives."""
    x = rng.standard_normal((2, 256, 12, 12)).astype(np.float32)
    w = rng.standard_normal((32, 256, k, k)).astype(np.float32)
    assert F.conv2d_algorithm(x, w, padding=k // 2) == "winograd"
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), None, padding=k // 2)
    err = np.abs(F.conv2d(x, w, padding=k // 2) - want).max() / np.abs(want).max()
    assert err < 2e-5


@pytest.mark.parametrize("sgemm", ["auto", "openblas"])
@pytest.mark.parametrize("grad", ["input", "weight"])
@pytest.mark.parametrize("kind", ["w3-grouped", "w4-padded", "w5-partial-tiles", "w3-dilated", "s-alexnet-conv1",
                                  "T-4x4-s2", "T-3x3-s1"])
def test_a_gradient_runs_the_algorithm_reported_for_it(kind, grad, sgemm, rng, sgemm_kernel):
    """On small integers im2col + GEMM is exact whatever its blocking, while the Winograd
    transforms' fractions (1/6, 1/24) round: the result shows which path ran, and it is
    the one *_algorithm(grad=...) names, within the README's bound on Winograd."""
    sgemm_kernel(sgemm)
    case = WINOGRAD_CASE_BY_KIND[kind]
    x = rng.integers(-2, 3, case.x_shape).astype(np.float32)
    w = rng.integers(-2, 3, case.weight_shape).astype(np.float32)
    gy = rng.integers(-2, 3, case.out_shape).astype(np.float32)
    index = {"input": 0, "weight": 1}[grad]
    want = case.reference_grads(gy, x, w)[index]
    got = case.backward(gy, x, w)[index]
    if _algorithm(case, x, w, grad=grad) == "winograd":
        assert not np.array_equal(got, want)
        assert np.abs(got - want).max() < 2e-5 * np.abs(want).max()
    else:
        np.testing.assert_array_equal(got, want)


def test_which_gradients_take_winograd(sgemm_kernel):
    """Both gradients of a layer whose forward takes Winograd take it too where their
    tiles fit their planes, strided, dilated and transposed layers included, on either
    sgemm and dtype (measured faster than im2col + GEMM on each); a layer whose forward
    runs gemm keeps gemm."""
    rng = np.random.default_rng(0)
    cases = [WINOGRAD_CASE_BY_KIND[k] for k in ("w3-partial-tiles", "w3-dilated", "s-alexnet-conv1", "T-3x3-s1")]
    cases.append(ConvCase("T-4x4-s2", 1, 16, 16, 14, 14, 4, 4, stride=2, padding=1, transposed=True))
    gemm_case = ConvCase("3x3-s2", 2, 16, 16, 12, 12, 3, 3, stride=2, padding=1)
    ops = [(c, dtype, c.operands(rng, dtype)[:2]) for c in cases + [gemm_case] for dtype in (np.float32, np.float64)]
    for sgemm in ("auto", "openblas"):
        sgemm_kernel(sgemm)
        for case, dtype, (x, w) in ops:
            want = "gemm" if case is gemm_case else "winograd"
            for grad in (None, "input", "weight"):
                assert _algorithm(case, x, w, grad=grad) == want, (sgemm, case.id, dtype, grad)


def test_algorithm_grad_errors_name_the_argument():
    x, w = np.ones((1, 16, 8, 8), np.float32), np.ones((16, 16, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"conv2d_algorithm: grad: expected one of 'input', 'weight', got 'bias'"):
        F.conv2d_algorithm(x, w, grad="bias")
    with pytest.raises(TypeError, match=r"conv_transpose2d_algorithm: grad: expected one of 'input', 'weight', got int"):
        F.conv_transpose2d_algorithm(x, w, grad=1)
    with pytest.raises(ValueError, match=r"conv2d_algorithm: grad: expected None, 'input' or 'weight', got 'x'"):
        _C.conv2d_algorithm(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 1, "x")


@pytest.mark.parametrize(
    "k, size, stride, dilation",
    [(3, 12, 1, 1), (4, 12, 1, 1), (5, 12, 1, 1), (4, 24, 2, 1), (3, 14, 1, 2)],
    ids=["3x3", "4x4", "5x5", "4x4-s2", "3x3-d2"],
)
def test_winograd_gradients_float32_error_on_a_deep_layer(k, size, stride, dilation, rng):
    """Sums over N x H x W = 288 tiles' worth of outputs per weight (256 channels, four
    times that for a strided layer's stacked phases): both gradients within 2e-5 of
    their largest entry, as the forward."""
    kw = dict(stride=stride, padding=dilation * (k // 2), dilation=dilation)
    x = rng.standard_normal((2, 256, size, size)).astype(np.float32)
    w = rng.standard_normal((32, 256, k, k)).astype(np.float32)
    gy = rng.standard_normal(F.conv2d(x, w, **kw).shape).astype(np.float32)
    want = ref.conv2d_backward(gy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), **kw)
    got = F.conv2d_backward(gy, x, w, **kw, output_mask=(True, True, False))
    for index, grad in enumerate(("input", "weight")):
        assert F.conv2d_algorithm(x, w, **kw, grad=grad) == "winograd", grad
        assert np.abs(got[index] - want[index]).max() / np.abs(want[index]).max() < 2e-5, grad


def test_winograd_asymmetric_padding_through_C(dtype, rng):
    x = random_array(rng, (2, 16, 7, 9), dtype)
    w = random_array(rng, (16, 16, 3, 3), dtype)
    b = random_array(rng, (16,), dtype)
    for pad in [(0, 2, 1, 0), (2, 0, 0, 2), (1, 2, 2, 1)]:
        assert _C.conv2d_algorithm(x, w, (1, 1), pad, (1, 1), 1) == "winograd"
        expected = ref.conv2d(x, w, b, stride=1, padding=pad)
        assert_close(_C.conv2d(x, w, b, (1, 1), pad, (1, 1), 1), expected, dtype, err_msg=str(pad))


def test_winograd_non_contiguous_input(dtype, rng):
    case = WINOGRAD_CASES[0]
    x, w, b = case.operands(rng, dtype)
    xs = random_array(rng, (case.n, case.c_in, case.h, 2 * case.w), dtype)[..., ::2]
    ws = np.asfortranarray(w)
    assert_close(case.forward(xs, ws, b), case.reference(xs, ws, b), dtype)


@pytest.mark.parametrize("kind", ["w3-partial-tiles", "s-alexnet-conv1", "T-4x4-s2"])
def test_winograd_empty_batch(kind, dtype, rng):
    case = dataclasses.replace(WINOGRAD_CASE_BY_KIND[kind], n=0)
    x, w, b = case.operands(rng, dtype)
    assert _algorithm(case, x, w) == "winograd"
    y = case.forward(x, w, b)
    assert y.shape == case.out_shape and y.dtype == dtype


@pytest.mark.parametrize("kind", ["w3-partial-tiles", "s-alexnet-conv1", "T-4x4-s2"])
@pytest.mark.parametrize("operand", ["input", "weight"])
def test_winograd_non_finite_values_spread_as_in_a_direct_convolution(operand, kind, dtype, rng):
    """In the transform domain a NaN or infinity would spoil its whole tile; cnnkit
    falls back to im2col, so only the outputs whose windows hold it are affected."""
    case = WINOGRAD_CASE_BY_KIND[kind]
    x, w, b = case.operands(rng, dtype)
    if operand == "input":
        x[0, 1, 2, 3], x[1, 2, 3, 1] = np.nan, np.inf
    else:
        w[1, 1, 1, 1], w[2, 0, 0, 1] = np.nan, -np.inf
    y, want = case.forward(x, w, b), case.reference(x, w, b)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(want))
    assert 0 < np.count_nonzero(~np.isfinite(want)) < want.size // 4
    finite = np.isfinite(want)
    assert_close(y[finite], want[finite], dtype)


@pytest.mark.parametrize("kind", ["w3-partial-tiles", "s-alexnet-conv1", "T-4x4-s2"])
@pytest.mark.parametrize("operand", ["input", "grad_output"])
def test_winograd_weight_gradient_non_finite_values_as_in_a_direct_convolution(operand, kind, dtype, rng):
    """A NaN or infinity would spoil whole filters in the transform domain; the weight
    gradient then falls back to im2col, so it reaches only the taps that read it."""
    case = WINOGRAD_CASE_BY_KIND[kind]
    x, w, _ = case.operands(rng, dtype)
    gy = random_array(rng, case.out_shape, dtype)
    if operand == "input":
        x[0, 1, 2, 3] = np.nan
    else:
        gy[1, 2, 1, 1] = np.inf
    got, want = case.backward(gy, x, w)[1], case.reference_grads(gy, x, w)[1]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    assert 0 < np.count_nonzero(~np.isfinite(want)) < want.size
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite], dtype)


def _winograd_bytes(c_in, c_out, k, tiles_x, rows, dtype):
    """Workspace of the transformed filters plus `rows` rows of tiles (36 points each).
    For cnnkit's own sgemm the filters are packed in slivers of 14 output channels, and
    each point's transformed input in slivers of 32 tiles (up to 31 more per channel)."""
    packed = np.dtype(dtype) == np.float32 and cnnkit.get_sgemm_kernel() == "avx512"
    filter_rows = -(-c_out // 14) * 14 if packed else c_out
    slack = 31 * c_in if packed else 0
    return 36 * (filter_rows * c_in + rows * (c_in + c_out) * tiles_x + slack) * np.dtype(dtype).itemsize


@pytest.mark.parametrize("kernel", ["auto", "openblas"])
@pytest.mark.parametrize("rows", [1, 2, 5])
def test_winograd_passes_within_the_workspace(rows, kernel, dtype, rng, workspace_bytes,
                                              sgemm_kernel):
    """A bound that holds only a few rows of tiles splits the batch into passes, on
    either sgemm kernel (the own one takes the filters packed)."""
    sgemm_kernel(kernel)
    case = ConvCase("w3-passes", 3, 16, 24, 10, 17, 3, 3, padding=1)  # 3 x 3 rows of 5 tiles
    x, w, b = case.operands(rng, dtype)
    gy = random_array(rng, case.out_shape, dtype)
    workspace_bytes(_winograd_bytes(16, 24, 3, 5, rows, dtype))
    assert F.conv2d_algorithm(x, w, padding=1) == "winograd"
    assert_close(case.forward(x, w, b), case.reference(x, w, b), dtype)
    assert_close(case.backward(gy, x, w)[1], case.reference_grads(gy, x, w)[1], dtype)


@pytest.mark.parametrize("kind", ["s-alexnet-conv1", "T-4x4-s2"])
def test_winograd_rearranged_forms_run_in_passes(kind, dtype, rng, workspace_bytes):
    """When the bound cannot hold the whole batch, the space-to-depth form rearranges
    a few samples at a time and the transposed form's stride-1 pass runs a few rows
    of tiles at a time: down to the least bound that still takes the path."""
    case = dataclasses.replace(WINOGRAD_CASE_BY_KIND[kind], n=5)
    x, w, b = case.operands(rng, dtype)
    want = case.reference(x, w, b)
    cap, smallest = 64 << 20, None
    while cap > 1024:
        workspace_bytes(cap)
        if _algorithm(case, x, w) != "winograd":
            break
        smallest, cap = cap, int(cap * 0.9)
    assert smallest is not None and smallest < 1 << 20
    gy = random_array(rng, case.out_shape, dtype)
    want_gw = case.reference_grads(gy, x, w)[1]
    for cap in (64 << 20, smallest):
        workspace_bytes(cap)
        assert_close(case.forward(x, w, b), want, dtype, err_msg=str(cap))
        assert_close(case.backward(gy, x, w)[1], want_gw, dtype, err_msg=f"grad_weight, {cap}")


@pytest.mark.parametrize("kernel", ["auto", "openblas"])
def test_winograd_falls_back_when_the_workspace_is_too_small(kernel, dtype, rng, workspace_bytes,
                                                             sgemm_kernel):
    sgemm_kernel(kernel)
    case = ConvCase("w3-fallback", 2, 16, 24, 10, 17, 3, 3, padding=1)
    x, w, b = case.operands(rng, dtype)
    workspace_bytes(_winograd_bytes(16, 24, 3, 5, 1, dtype) - 1)
    assert F.conv2d_algorithm(x, w, padding=1) == "gemm"
    assert_close(case.forward(x, w, b), case.reference(x, w, b), dtype)


@pytest.mark.parametrize(
    "name, x_shape, w_shape, kwargs, algorithm",
    [
        ("15-channels", (2, 15, 8, 8), (16, 15, 3, 3), dict(padding=1), "gemm"),
        ("15-out-channels", (2, 16, 8, 8), (15, 16, 3, 3), dict(padding=1), "gemm"),
        ("strided-3x3", (2, 16, 8, 8), (16, 16, 3, 3), dict(padding=1, stride=2), "gemm"),  # 0.64 of the multiplies
        ("strided-5x5", (2, 16, 16, 16), (16, 16, 5, 5), dict(padding=2, stride=2), "winograd"),
        ("strided-4x4", (2, 16, 16, 16), (16, 16, 4, 4), dict(padding=1, stride=2), "winograd"),  # 2 taps per phase: F(5x5, 2x2)
        ("resnet-stem", (2, 3, 64, 64), (64, 3, 7, 7), dict(padding=3, stride=2), "gemm"),  # 12 phase channels
        ("strided-uneven-phases", (2, 16, 9, 9), (16, 16, 3, 4), dict(stride=(1, 2)), "gemm"),
        ("strided-even-phases", (2, 16, 9, 9), (16, 16, 3, 5), dict(stride=(1, 2)), "winograd"),
        ("strided-dilated", (2, 16, 12, 12), (16, 16, 4, 4), dict(stride=2, dilation=2), "gemm"),
        ("strided-grouped", (2, 32, 12, 12), (32, 16, 4, 4), dict(stride=2, groups=2), "gemm"),
        ("4x4-kernel", (2, 16, 8, 8), (16, 16, 4, 4), dict(padding=1), "winograd"),
        ("2x2-kernel", (2, 16, 10, 10), (16, 16, 2, 2), {}, "gemm"),
        ("3x5-kernel", (2, 16, 8, 8), (16, 16, 3, 5), dict(padding=1), "gemm"),
        ("1x1-output", (2, 16, 3, 3), (16, 16, 3, 3), {}, "gemm"),  # 15/16 of the tile wasted
        ("depthwise", (2, 16, 8, 8), (16, 1, 3, 3), dict(padding=1, groups=16), "direct"),
        ("pointwise", (2, 64, 8, 8), (64, 64, 1, 1), {}, "gemm"),
        ("vgg", (2, 64, 112, 112), (128, 64, 3, 3), dict(padding=1), "winograd"),
    ],
)
def test_conv2d_algorithm(name, x_shape, w_shape, kwargs, algorithm):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    assert F.conv2d_algorithm(x, w, **kwargs) == algorithm


@pytest.mark.parametrize(
    "name, x_shape, w_shape, kwargs, algorithm",
    [
        ("4x4-s2", (2, 64, 14, 14), (64, 32, 4, 4), dict(stride=2, padding=1), "winograd"),
        ("3x3-s2", (2, 64, 14, 14), (64, 32, 3, 3), dict(stride=2, padding=1), "gemm"),
        ("2x2-s1", (2, 64, 14, 14), (64, 32, 2, 2), {}, "gemm"),
        ("dilated", (2, 64, 14, 14), (64, 32, 3, 3), dict(dilation=2), "winograd"),
        ("grouped-s1", (2, 64, 14, 14), (64, 16, 3, 3), dict(padding=1, groups=2), "winograd"),
        ("dilated-s2", (2, 64, 14, 14), (64, 32, 3, 3), dict(stride=2, dilation=2), "gemm"),
        ("padding-past-kernel", (2, 64, 14, 14), (64, 32, 3, 3), dict(padding=3), "winograd"),
        ("grouped", (2, 64, 14, 14), (64, 16, 4, 4), dict(stride=2, groups=2), "gemm"),
        ("uneven-phases", (2, 64, 14, 14), (64, 32, 3, 5), dict(stride=2), "gemm"),
        ("15-in-channels", (2, 15, 14, 14), (15, 32, 4, 4), dict(stride=2), "gemm"),
        ("depthwise", (2, 16, 14, 14), (16, 1, 3, 3), dict(groups=16), "direct"),
    ],
)
def test_conv_transpose2d_algorithm(name, x_shape, w_shape, kwargs, algorithm):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    assert F.conv_transpose2d_algorithm(x, w, **kwargs) == algorithm


# ---------------------------------------------------------------------------
# Output-size formulas
# ---------------------------------------------------------------------------


def test_conv_out_size_formula():
    for size in range(1, 9):
        for k in range(1, 5):
            for s in range(1, 4):
                for pb, pe in [(0, 0), (1, 0), (0, 2), (2, 2)]:
                    for d in range(1, 3):
                        want = ref.conv_out_size(size, k, s, pb, pe, d)  # floors, may be <= 0
                        assert _C.conv_out_size(size, k, s, pb, pe, d) == want, (size, k, s, pb, pe, d)


def test_conv_transpose_out_size_formula():
    for size in range(1, 7):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, 3):
                    for op in range(0, 2):
                        for d in range(1, 3):
                            want = ref.conv_transpose_out_size(size, k, s, p, op, d)
                            assert _C.conv_transpose_out_size(size, k, s, p, op, d) == want


def test_out_size_known_values():
    # 224x224, AlexNet conv1: k11 s4 p2 -> 55; 'same' with k4 pads 1 + 2
    assert _C.conv_out_size(224, 11, 4, 2, 2, 1) == 55
    assert _C.conv_out_size(7, 4, 1, 1, 2, 1) == 7
    assert _C.conv_out_size(5, 3, 1, 0, 0, 3) == -1  # kernel (extent 7) larger than input
    assert _C.conv_transpose_out_size(4, 3, 2, 1, 1, 1) == 8
    assert _C.conv_transpose_out_size(1, 1, 5, 0, 0, 1) == 1


# ---------------------------------------------------------------------------
# Error paths
# ---------------------------------------------------------------------------


def _x(shape=(2, 4, 6, 6), dtype=np.float64):
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape) / 7.0


def _w(shape=(6, 4, 3, 3), dtype=np.float64):
    return np.linspace(-1, 1, int(np.prod(shape)), dtype=dtype).reshape(shape)


CONV2D_ERRORS = [
    ("input-3d", ValueError, "conv2d: input: expected a 4-D", lambda: F.conv2d(_x((4, 6, 6)), _w())),
    ("input-5d", ValueError, "conv2d: input: expected a 4-D", lambda: F.conv2d(_x((1, 2, 4, 6, 6)), _w())),
    ("weight-3d", ValueError, "conv2d: weight: expected a 4-D", lambda: F.conv2d(_x(), _w((6, 4, 3)))),
    ("channels-mismatch", ValueError, "conv2d: weight: expected C_in/groups", lambda: F.conv2d(_x(), _w((6, 3, 3, 3)))),
    (
        "grouped-channels-mismatch",
        ValueError,
        "conv2d: weight: expected C_in/groups",
        lambda: F.conv2d(_x(), _w((6, 4, 3, 3)), groups=2),
    ),
    (
        "groups-not-dividing-in",
        ValueError,
        "conv2d: groups: expected a divisor of in_channels",
        lambda: F.conv2d(_x(), _w((6, 1, 3, 3)), groups=3),
    ),
    (
        "groups-not-dividing-out",
        ValueError,
        "conv2d: groups: expected a divisor of out_channels",
        lambda: F.conv2d(_x(), _w((5, 2, 3, 3)), groups=2),
    ),
    ("groups-zero", ValueError, "conv2d: groups: expected a positive", lambda: F.conv2d(_x(), _w(), groups=0)),
    ("groups-float", TypeError, "conv2d: groups:", lambda: F.conv2d(_x(), _w(), groups=1.0)),
    ("kernel-too-large", ValueError, "conv2d: weight: dilated kernel size", lambda: F.conv2d(_x(), _w((6, 4, 7, 3)))),
    (
        "dilated-kernel-too-large",
        ValueError,
        "conv2d: weight: dilated kernel size",
        lambda: F.conv2d(_x(), _w(), dilation=(1, 3)),
    ),
    ("empty-kernel", ValueError, "conv2d: weight:", lambda: F.conv2d(_x(), _w((6, 4, 0, 3)))),
    ("stride-zero", ValueError, "conv2d: stride: expected positive", lambda: F.conv2d(_x(), _w(), stride=0)),
    ("stride-zero-w", ValueError, "conv2d: stride: expected positive", lambda: F.conv2d(_x(), _w(), stride=(1, 0))),
    ("stride-negative", ValueError, "conv2d: stride: expected positive", lambda: F.conv2d(_x(), _w(), stride=-1)),
    ("dilation-zero", ValueError, "conv2d: dilation: expected positive", lambda: F.conv2d(_x(), _w(), dilation=0)),
    ("padding-negative", ValueError, "conv2d: padding: expected non-negative", lambda: F.conv2d(_x(), _w(), padding=-1)),
    (
        "padding-negative-w",
        ValueError,
        "conv2d: padding: expected non-negative",
        lambda: F.conv2d(_x(), _w(), padding=(0, -1)),
    ),
    ("bias-length", ValueError, "conv2d: bias: expected shape", lambda: F.conv2d(_x(), _w(), _w((5,)))),
    ("bias-2d", ValueError, "conv2d: bias: expected shape", lambda: F.conv2d(_x(), _w(), _w((6, 1)))),
    (
        "weight-dtype-mismatch",
        TypeError,
        "conv2d: weight: expected dtype float32",
        lambda: F.conv2d(_x(dtype=np.float32), _w()),
    ),
    (
        "bias-dtype-mismatch",
        TypeError,
        "conv2d: bias: expected dtype float64",
        lambda: F.conv2d(_x(), _w(), np.zeros(6, np.float32)),
    ),
    ("input-int", TypeError, "conv2d: input: expected dtype", lambda: F.conv2d(_x().astype(np.int64), _w())),
    ("weight-int", TypeError, "conv2d: weight: expected dtype", lambda: F.conv2d(_x(), _w().astype(np.int32))),
    ("input-float16", TypeError, "conv2d: input: expected dtype", lambda: F.conv2d(_x().astype(np.float16), _w())),
    ("input-list", TypeError, "conv2d: input: expected a numpy.ndarray", lambda: F.conv2d(_x().tolist(), _w())),
    ("input-none", TypeError, "conv2d: input: expected a numpy.ndarray", lambda: F.conv2d(None, _w())),
    ("weight-list", TypeError, "conv2d: weight: expected a numpy.ndarray", lambda: F.conv2d(_x(), _w().tolist())),
    ("bias-list", TypeError, "conv2d: bias: expected a numpy.ndarray", lambda: F.conv2d(_x(), _w(), [0.0] * 6)),
    (
        "same-with-stride",
        ValueError,
        "conv2d: padding: 'same' needs stride 1",
        lambda: F.conv2d(_x(), _w(), stride=2, padding="same"),
    ),
    ("padding-unknown-string", ValueError, "conv2d: padding:", lambda: F.conv2d(_x(), _w(), padding="full")),
    ("padding-3-tuple", ValueError, "conv2d: padding: expected an int or a pair", lambda: F.conv2d(_x(), _w(), padding=(1, 1, 1))),
    ("padding-4-tuple", ValueError, "conv2d: padding: expected an int or a pair", lambda: F.conv2d(_x(), _w(), padding=(1, 1, 1, 1))),
    ("stride-3-tuple", ValueError, "conv2d: stride: expected an int or a pair", lambda: F.conv2d(_x(), _w(), stride=(1, 1, 1))),
    ("stride-float", TypeError, "conv2d: stride:", lambda: F.conv2d(_x(), _w(), stride=1.5)),
    ("stride-float-pair", TypeError, "conv2d: stride:", lambda: F.conv2d(_x(), _w(), stride=(1, 2.0))),
    ("stride-bool", TypeError, "conv2d: stride:", lambda: F.conv2d(_x(), _w(), stride=True)),
    ("padding-float", TypeError, "conv2d: padding:", lambda: F.conv2d(_x(), _w(), padding=1.0)),
    ("dilation-float", TypeError, "conv2d: dilation:", lambda: F.conv2d(_x(), _w(), dilation=2.0)),
]

CONV2D_BACKWARD_ERRORS = [
    (
        "grad_output-shape",
        ValueError,
        "conv2d_backward: grad_output: expected shape",
        lambda: F.conv2d_backward(_x((2, 6, 4, 5)), _x(), _w()),
    ),
    (
        "grad_output-channels",
        ValueError,
        "conv2d_backward: grad_output: expected shape",
        lambda: F.conv2d_backward(_x((2, 5, 4, 4)), _x(), _w()),
    ),
    (
        "grad_output-3d",
        ValueError,
        "conv2d_backward: grad_output: expected shape",
        lambda: F.conv2d_backward(_x((6, 4, 4)), _x(), _w()),
    ),
    ("input-3d", ValueError, "conv2d_backward: input: expected a 4-D", lambda: F.conv2d_backward(_x((2, 6, 4, 4)), _x((4, 6, 6)), _w())),
    (
        "channels-mismatch",
        ValueError,
        "conv2d_backward: weight:",
        lambda: F.conv2d_backward(_x((2, 6, 4, 4)), _x(), _w((6, 3, 3, 3))),
    ),
    (
        "groups-not-dividing",
        ValueError,
        "conv2d_backward: groups:",
        lambda: F.conv2d_backward(_x((2, 6, 4, 4)), _x(), _w(), groups=3),
    ),
    ("stride-zero", ValueError, "conv2d_backward: stride:", lambda: F.conv2d_backward(_x((2, 6, 4, 4)), _x(), _w(), stride=0)),
    (
        "same-with-stride",
        ValueError,
        "conv2d_backward: padding:",
        lambda: F.conv2d_backward(_x((2, 6, 3, 3)), _x(), _w(), stride=2, padding="same"),
    ),
    (
        "grad_output-dtype",
        TypeError,
        "conv2d_backward: input: expected dtype float32",
        lambda: F.conv2d_backward(_x((2, 6, 4, 4), np.float32), _x(), _w()),
    ),
    ("grad_output-none", TypeError, "conv2d_backward: grad_output:", lambda: F.conv2d_backward(None, _x(), _w())),
    (
        "grad_output-int",
        TypeError,
        "conv2d_backward: grad_output:",
        lambda: F.conv2d_backward(np.zeros((2, 6, 4, 4), int), _x(), _w()),
    ),
    ("weight-list", TypeError, "conv2d_backward: weight:", lambda: F.conv2d_backward(_x((2, 6, 4, 4)), _x(), _w().tolist())),
]

CT_X, CT_W = (2, 4, 3, 3), (4, 3, 3, 3)  # conv_transpose2d: weight (C_in, C_out/groups, kH, kW); out (2, 3, 5, 5)

CONV_TRANSPOSE2D_ERRORS = [
    ("input-3d", ValueError, "conv_transpose2d: input: expected a 4-D", lambda: F.conv_transpose2d(_x((4, 3, 3)), _w(CT_W))),
    ("weight-2d", ValueError, "conv_transpose2d: weight: expected a 4-D", lambda: F.conv_transpose2d(_x(CT_X), _w((4, 3)))),
    (
        "channels-mismatch",
        ValueError,
        "conv_transpose2d: weight: expected C_in",
        lambda: F.conv_transpose2d(_x(CT_X), _w((3, 3, 3, 3))),
    ),
    (
        "groups-not-dividing-in",
        ValueError,
        "conv_transpose2d: groups: expected a divisor of in_channels",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), groups=3),
    ),
    ("groups-zero", ValueError, "conv_transpose2d: groups:", lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), groups=0)),
    (
        "output_padding-too-large",
        ValueError,
        "conv_transpose2d: output_padding: expected values smaller than stride",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), stride=2, output_padding=2),
    ),
    (
        "output_padding-too-large-w",
        ValueError,
        "conv_transpose2d: output_padding:",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), stride=(2, 1), dilation=(1, 2), output_padding=(1, 2)),
    ),
    (
        "output_padding-stride-1",
        ValueError,
        "conv_transpose2d: output_padding:",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), output_padding=1),
    ),
    (
        "output_padding-negative",
        ValueError,
        "conv_transpose2d: output_padding: expected non-negative",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), output_padding=-1),
    ),
    ("stride-zero", ValueError, "conv_transpose2d: stride: expected positive", lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), stride=0)),
    (
        "dilation-zero",
        ValueError,
        "conv_transpose2d: dilation: expected positive",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), dilation=(0, 1)),
    ),
    (
        "padding-negative",
        ValueError,
        "conv_transpose2d: padding: expected non-negative",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), padding=-1),
    ),
    (
        "output-not-positive",
        ValueError,
        "conv_transpose2d: padding: output size",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), padding=3),
    ),
    ("bias-length", ValueError, "conv_transpose2d: bias: expected shape", lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), _w((4,)))),
    (
        "bias-length-grouped",  # C_out is weight.shape[1] * groups = 6
        ValueError,
        "conv_transpose2d: bias: expected shape",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), _w((3,)), groups=2),
    ),
    (
        "weight-dtype-mismatch",
        TypeError,
        "conv_transpose2d: weight: expected dtype float32",
        lambda: F.conv_transpose2d(_x(CT_X, np.float32), _w(CT_W)),
    ),
    ("input-int", TypeError, "conv_transpose2d: input: expected dtype", lambda: F.conv_transpose2d(np.zeros(CT_X, int), _w(CT_W))),
    ("input-none", TypeError, "conv_transpose2d: input: expected a numpy.ndarray", lambda: F.conv_transpose2d(None, _w(CT_W))),
    ("weight-list", TypeError, "conv_transpose2d: weight: expected a numpy.ndarray", lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W).tolist())),
    ("padding-string", TypeError, "conv_transpose2d: padding:", lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), padding="same")),
    (
        "padding-3-tuple",
        ValueError,
        "conv_transpose2d: padding: expected an int or a pair",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), padding=(1, 1, 1)),
    ),
    ("stride-float", TypeError, "conv_transpose2d: stride:", lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), stride=2.0)),
    (
        "output_padding-float",
        TypeError,
        "conv_transpose2d: output_padding:",
        lambda: F.conv_transpose2d(_x(CT_X), _w(CT_W), stride=2, output_padding=0.5),
    ),
]

CONV_TRANSPOSE2D_BACKWARD_ERRORS = [
    (
        "grad_output-shape",
        ValueError,
        "conv_transpose2d_backward: grad_output: expected shape",
        lambda: F.conv_transpose2d_backward(_x((2, 3, 5, 4)), _x(CT_X), _w(CT_W)),
    ),
    (
        "grad_output-ignores-output_padding",
        ValueError,
        "conv_transpose2d_backward: grad_output: expected shape",
        lambda: F.conv_transpose2d_backward(_x((2, 3, 8, 8)), _x(CT_X), _w(CT_W), stride=2),
    ),
    (
        "grad_output-channels",
        ValueError,
        "conv_transpose2d_backward: grad_output: expected shape",
        lambda: F.conv_transpose2d_backward(_x((2, 4, 5, 5)), _x(CT_X), _w(CT_W)),
    ),
    (
        "channels-mismatch",
        ValueError,
        "conv_transpose2d_backward: weight:",
        lambda: F.conv_transpose2d_backward(_x((2, 3, 5, 5)), _x(CT_X), _w((3, 3, 3, 3))),
    ),
    (
        "output_padding-too-large",
        ValueError,
        "conv_transpose2d_backward: output_padding:",
        lambda: F.conv_transpose2d_backward(_x((2, 3, 5, 5)), _x(CT_X), _w(CT_W), output_padding=1),
    ),
    (
        "grad_output-dtype",
        TypeError,
        "conv_transpose2d_backward: input: expected dtype float32",
        lambda: F.conv_transpose2d_backward(_x((2, 3, 5, 5), np.float32), _x(CT_X), _w(CT_W)),
    ),
    (
        "grad_output-list",
        TypeError,
        "conv_transpose2d_backward: grad_output:",
        lambda: F.conv_transpose2d_backward(_x((2, 3, 5, 5)).tolist(), _x(CT_X), _w(CT_W)),
    ),
]


CONV2D_ALGORITHM_ERRORS = [
    ("input-3d", ValueError, "conv2d_algorithm: input: expected a 4-D", lambda: F.conv2d_algorithm(_x((4, 6, 6)), _w())),
    (
        "channels-mismatch",
        ValueError,
        "conv2d_algorithm: weight: expected C_in/groups",
        lambda: F.conv2d_algorithm(_x(), _w((6, 3, 3, 3))),
    ),
    ("integer-input", TypeError, "conv2d_algorithm: input: expected dtype", lambda: F.conv2d_algorithm(_x().astype(int), _w())),
    (
        "mixed-dtypes",
        TypeError,
        "conv2d_algorithm: weight: expected dtype float64",
        lambda: F.conv2d_algorithm(_x(), _w(dtype=np.float32)),
    ),
    ("not-an-array", TypeError, "conv2d_algorithm: input: expected a numpy.ndarray", lambda: F.conv2d_algorithm([1.0], _w())),
    ("stride-zero", ValueError, "conv2d_algorithm: stride:", lambda: F.conv2d_algorithm(_x(), _w(), stride=0)),
]


CONV_TRANSPOSE2D_ALGORITHM_ERRORS = [
    (
        "input-3d",
        ValueError,
        "conv_transpose2d_algorithm: input: expected a 4-D",
        lambda: F.conv_transpose2d_algorithm(_x((4, 6, 6)), _w(CT_W)),
    ),
    (
        "output-padding-too-large",
        ValueError,
        "conv_transpose2d_algorithm: output_padding:",
        lambda: F.conv_transpose2d_algorithm(_x(CT_X), _w(CT_W), stride=2, output_padding=2),
    ),
    (
        "mixed-dtypes",
        TypeError,
        "conv_transpose2d_algorithm: weight: expected dtype float64",
        lambda: F.conv_transpose2d_algorithm(_x(CT_X), _w(CT_W, dtype=np.float32)),
    ),
]


def _error_params(table):
    return [pytest.param(exc, match, call, id=name) for name, exc, match, call in table]


@pytest.mark.parametrize(
    "exc, match, call",
    _error_params(CONV2D_ERRORS)
    + _error_params([(f"algorithm-{n}", *rest) for n, *rest in CONV2D_ALGORITHM_ERRORS])
    + _error_params([(f"transpose-algorithm-{n}", *rest) for n, *rest in CONV_TRANSPOSE2D_ALGORITHM_ERRORS])
    + _error_params([(f"backward-{n}", *rest) for n, *rest in CONV2D_BACKWARD_ERRORS])
    + _error_params([(f"transpose-{n}", *rest) for n, *rest in CONV_TRANSPOSE2D_ERRORS])
    + _error_params([(f"transpose-backward-{n}", *rest) for n, *rest in CONV_TRANSPOSE2D_BACKWARD_ERRORS]),
)
def test_error(exc, match, call):
    with pytest.raises(exc, match=match):
        call()


def test_error_calls_are_otherwise_valid():
    """The error tables' base operands work, so each error test fails for its one reason."""
    assert F.conv2d(_x(), _w(), _w((6,))).shape == (2, 6, 4, 4)
    assert F.conv2d_algorithm(_x(), _w()) == "gemm"
    assert F.conv2d_backward(_x((2, 6, 4, 4)), _x(), _w())[0].shape == (2, 4, 6, 6)
    assert F.conv_transpose2d(_x(CT_X), _w(CT_W), _w((3,))).shape == (2, 3, 5, 5)
    assert F.conv_transpose2d_algorithm(_x(CT_X), _w(CT_W), stride=2, output_padding=1) == "direct"
    assert F.conv_transpose2d(_x(CT_X), _w(CT_W), stride=2, output_padding=1).shape == (2, 3, 8, 8)
    assert F.conv_transpose2d_backward(_x((2, 3, 5, 5)), _x(CT_X), _w(CT_W))[1].shape == CT_W


# ---------------------------------------------------------------------------
# output_mask: a backward computes only the gradients asked for
# ---------------------------------------------------------------------------

MASK_CASES = [
    ConvCase("direct-depthwise", 2, 8, 8, 9, 8, 3, 3, padding=1, groups=8),
    ConvCase("winograd-3x3", 2, 16, 16, 10, 9, 3, 3, padding=1),
    ConvCase("winograd-dilated", 1, 16, 16, 12, 12, 3, 3, padding=2, dilation=2),
    ConvCase("gemm-1x1", 2, 24, 40, 5, 6, 1, 1),
    ConvCase("gemm-strided", 2, 20, 24, 9, 9, 3, 3, stride=2, padding=1),
    ConvCase("T-winograd-4x4-s2", 2, 16, 16, 5, 6, 4, 4, stride=2, padding=1, transposed=True),
    ConvCase("T-gemm-3x3-s2", 2, 20, 24, 5, 5, 3, 3, stride=2, padding=1, transposed=True),
    ConvCase("empty-batch", 0, 4, 6, 6, 5, 3, 3, padding=1),
]
MASKS = [(True, False, False), (False, True, False), (False, False, True), (True, True, False),
         (False, False, False)]


@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("xwb"[i] if v else "-" for i, v in enumerate(m)))
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in MASK_CASES])
def test_backward_output_mask(case, mask, dtype, rng):
    """Each requested gradient equals the full call's (the same kernels run); the others
    are None."""
    x, w, _ = case.operands(rng, dtype)
    gy = random_array(rng, case.out_shape, dtype)
    backward = F.conv_transpose2d_backward if case.transposed else F.conv2d_backward
    kw = case.kwargs()
    full = backward(gy, x, w, **kw)
    got = backward(gy, x, w, **kw, output_mask=mask)
    assert len(got) == 3
    for want, g, f in zip(mask, got, full):
        if want:
            np.testing.assert_array_equal(g, f)
        else:
            assert g is None
    if mask[0]:  # the input gradient against the reference, without x's copy
        assert_close(got[0], case.reference_grads(gy, x, w)[0], dtype)


@pytest.mark.parametrize("backward", [F.conv2d_backward, F.conv_transpose2d_backward], ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "mask, exc, match",
    [
        ((True, True), ValueError, "got 2 values"),
        ((True, True, True, True), ValueError, "got 4 values"),
        ("xwb", TypeError, "got str"),
        (None, TypeError, "got NoneType"),
        ((1, 0, 0), TypeError, r"got int 1 in \(1, 0, 0\)"),
        ((True, "False", True), TypeError, "got str 'False'"),
    ],
)
def test_backward_output_mask_errors(backward, mask, exc, match):
    x, w, gy = np.ones((1, 2, 4, 4)), np.ones((2, 2, 3, 3)), np.ones((1, 2, 2, 2))
    if backward is F.conv_transpose2d_backward:
        gy = np.ones((1, 2, 6, 6))
    with pytest.raises(exc, match=f"{backward.__name__}: output_mask: expected a tuple of 3 bools .*{match}"):
        backward(gy, x, w, output_mask=mask)


def test_backward_output_mask_takes_numpy_bools():
    x, w, gy = np.ones((1, 2, 4, 4)), np.ones((2, 2, 3, 3)), np.ones((1, 2, 2, 2))
    gx, gw, gb = F.conv2d_backward(gy, x, w, output_mask=np.array([True, False, False]).tolist())
    assert gw is None and gb is None and gx.shape == x.shape
    gx, gw, gb = F.conv2d_backward(gy, x, w, output_mask=(np.True_, np.False_, np.True_))
    assert gx is not None and gw is None and gb.shape == (2,)
