"""linear and linear_backward against the float64 references in cnnkit.reference:
random sweep, finite differences, torch, leading dims, layouts, empty batch, errors."""

import numpy as np
import pytest

from cnnkit import functional as F

from cnnkit import reference as ref
from conftest import assert_close, random_array


def _linear_cases():
    rng = np.random.default_rng(20240603)
    cases = []
    for i in range(40):
        # 2-D input, 3-D input (leading dims) or 1-D input, as torch allows
        lead = [(int(rng.integers(1, 9)),), (int(rng.integers(1, 4)), int(rng.integers(1, 4))), ()][i % 3]
        in_f, out_f = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        cases.append((lead, in_f, out_f, bool(rng.random() < 0.8)))
    # sizes around the GEMM's blocking and a wide layer
    cases += [((64,), 300, 10, True), ((3,), 1, 1, True), ((1,), 257, 129, False), ((2, 5, 3), 17, 33, True)]
    return cases


def _id(case):
    lead, in_f, out_f, bias = case
    lead_s = "x".join(map(str, lead)) if lead else "1d"
    return f"{lead_s}-in{in_f}-out{out_f}" + ("" if bias else "-nobias")


LINEAR_CASES = [pytest.param(c, id=_id(c)) for c in _linear_cases()]


def _operands(case, rng, dtype):
    lead, in_f, out_f, bias = case
    x = random_array(rng, lead + (in_f,), dtype)
    w = random_array(rng, (out_f, in_f), dtype)
    b = random_array(rng, (out_f,), dtype) if bias else None
    gy = random_array(rng, lead + (out_f,), dtype)
    return x, w, b, gy


@pytest.mark.parametrize("case", LINEAR_CASES)
def test_linear_forward_matches_reference(case, dtype, rng):
    x, w, b, _ = _operands(case, rng, dtype)
    assert_close(F.linear(x, w, b), ref.linear(x, w, b), dtype)


@pytest.mark.parametrize("case", LINEAR_CASES)
def test_linear_backward_matches_reference(case, dtype, rng):
    x, w, _, gy = _operands(case, rng, dtype)
    got = F.linear_backward(gy, x, w)
    assert isinstance(got, tuple) and len(got) == 3
    for name, g, e in zip(("grad_input", "grad_weight", "grad_bias"), got, ref.linear_backward(gy, x, w)):
        assert_close(g, e, dtype, err_msg=name)


def test_linear_known_values():
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    w = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]])
    b = np.array([0.25, -1.0])
    np.testing.assert_array_equal(F.linear(x, w, b), [[-1.75, 4.5], [-0.75, -2.5]])


@pytest.mark.parametrize("lead", [(3,), (2, 3), ()], ids=["2d", "3d", "1d"])
def test_linear_finite_differences(lead, rng):
    x = random_array(rng, lead + (5,), np.float64)
    w = random_array(rng, (4, 5), np.float64)
    b = random_array(rng, (4,), np.float64)
    gy = random_array(rng, lead + (4,), np.float64)
    got = F.linear_backward(gy, x, w)
    by_reference = ref.linear_backward(gy, x, w)  # the oracle is checked too
    fns = [
        (lambda x_: np.sum(F.linear(x_, w, b) * gy), x),
        (lambda w_: np.sum(F.linear(x, w_, b) * gy), w),
        (lambda b_: np.sum(F.linear(x, w, b_) * gy), b),
    ]
    for name, g, r, (f, at) in zip(("grad_input", "grad_weight", "grad_bias"), got, by_reference, fns):
        want = ref.numeric_grad(f, at)
        atol = 1e-7 * np.max(np.abs(want))
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=atol, err_msg=name)
        np.testing.assert_allclose(r, want, rtol=1e-6, atol=atol, err_msg=f"reference {name}")


@pytest.mark.parametrize("lead", [(7,), (2, 3), ()], ids=["2d", "3d", "1d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_matches_torch(lead, bias, dtype, rng):
    torch = pytest.importorskip("torch")
    x = random_array(rng, lead + (6,), dtype)
    w = random_array(rng, (5, 6), dtype)
    b = random_array(rng, (5,), dtype) if bias else None
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = torch.nn.functional.linear(tx, tw, tb)
    assert_close(F.linear(x, w, b), ty.detach().numpy().astype(np.float64), dtype)
    gy = random_array(rng, ty.shape, dtype)
    ty.backward(torch.tensor(gy))
    gx, gw, gb = F.linear_backward(gy, x, w)
    assert_close(gx, tx.grad.numpy().astype(np.float64), dtype, err_msg="grad_input")
    assert_close(gw, tw.grad.numpy().astype(np.float64), dtype, err_msg="grad_weight")
    if bias:
        assert_close(gb, tb.grad.numpy().astype(np.float64), dtype, err_msg="grad_bias")


@pytest.mark.parametrize("lead", [(0,), (2, 0), (0, 3)], ids=["0", "2x0", "0x3"])
def test_linear_empty_batch(lead, dtype, rng):
    x = random_array(rng, lead + (6,), dtype)
    w = random_array(rng, (5, 6), dtype)
    b = random_array(rng, (5,), dtype)
    y = F.linear(x, w, b)
    assert y.shape == lead + (5,) and y.dtype == dtype
    gx, gw, gb = F.linear_backward(np.zeros(lead + (5,), dtype), x, w)
    assert gx.shape == x.shape and gx.dtype == dtype
    np.testing.assert_array_equal(gw, np.zeros((5, 6), dtype))
    np.testing.assert_array_equal(gb, np.zeros(5, dtype))
    assert gw.dtype == dtype and gb.dtype == dtype


def test_linear_leading_dims_are_kept(dtype, rng):
    x = random_array(rng, (2, 3, 4, 6), dtype)
    w = random_array(rng, (5, 6), dtype)
    b = random_array(rng, (5,), dtype)
    y = F.linear(x, w, b)
    assert y.shape == (2, 3, 4, 5)
    assert_close(y, ref.linear(x, w, b), dtype)
    gy = random_array(rng, y.shape, dtype)
    for g, e in zip(F.linear_backward(gy, x, w), ref.linear_backward(gy, x, w)):
        assert_close(g, e, dtype)


def _relayout(a, layout):
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "stepped":
        base = np.full(tuple(2 * s + 1 for s in a.shape), np.nan, a.dtype)
        out = base[tuple(slice(1, None, 2) for _ in a.shape)]
        out[...] = a
        return out
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    flip = (slice(None, None, -1),) * a.ndim
    return np.ascontiguousarray(a[flip])[flip]


LAYOUTS = ["fortran", "stepped", "transposed", "flipped"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("operand", ["input", "weight", "bias"])
@pytest.mark.parametrize("lead", [(4,), (2, 3)], ids=["2d", "3d"])
def test_linear_forward_accepts_any_layout(lead, operand, layout, dtype, rng):
    x = random_array(rng, lead + (7,), dtype)
    w = random_array(rng, (5, 7), dtype)
    b = random_array(rng, (5,), dtype)
    want = ref.linear(x, w, b)
    args = {"input": x, "weight": w, "bias": b}
    args[operand] = _relayout(args[operand], layout)
    assert_close(F.linear(args["input"], args["weight"], args["bias"]), want, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("operand", ["grad_output", "input", "weight"])
@pytest.mark.parametrize("lead", [(4,), (2, 3)], ids=["2d", "3d"])
def test_linear_backward_accepts_any_layout(lead, operand, layout, dtype, rng):
    x = random_array(rng, lead + (7,), dtype)
    w = random_array(rng, (5, 7), dtype)
    gy = random_array(rng, lead + (5,), dtype)
    want = ref.linear_backward(gy, x, w)
    args = {"grad_output": gy, "input": x, "weight": w}
    args[operand] = _relayout(args[operand], layout)
    for g, e in zip(F.linear_backward(args["grad_output"], args["input"], args["weight"]), want):
        assert_close(g, e, dtype)


@pytest.mark.parametrize("lead", [(4,), (2, 3), ()], ids=["2d", "3d", "1d"])
def test_linear_results_are_new_arrays_and_inputs_are_untouched(lead, dtype, rng):
    x = random_array(rng, lead + (7,), dtype)
    w = random_array(rng, (5, 7), dtype)
    b = random_array(rng, (5,), dtype)
    gy = random_array(rng, lead + (5,), dtype)
    saved = [a.copy() for a in (x, w, b, gy)]
    results = [F.linear(x, w, b), *F.linear_backward(gy, x, w)]
    for r in results:
        assert r.flags.c_contiguous and r.dtype == dtype
        assert not any(np.shares_memory(r, a) for a in (x, w, b, gy))
    for a, s in zip((x, w, b, gy), saved):
        np.testing.assert_array_equal(a, s)


def _x(shape=(3, 4), dtype=np.float64):
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape) / 3.0


def _w(shape=(5, 4), dtype=np.float64):
    return np.linspace(-1, 1, int(np.prod(shape)), dtype=dtype).reshape(shape)


LINEAR_ERRORS = [
    ("input-0d", ValueError, "linear: input:", lambda: F.linear(np.ones(()), _w())),
    ("weight-1d", ValueError, "linear: weight: expected a 2-D", lambda: F.linear(_x(), _w((4,)))),
    ("weight-3d", ValueError, "linear: weight: expected a 2-D", lambda: F.linear(_x(), _w((5, 4, 1)))),
    ("in_features-mismatch", ValueError, "linear: weight: expected in_features", lambda: F.linear(_x(), _w((5, 3)))),
    (
        "in_features-mismatch-3d",
        ValueError,
        "linear: weight: expected in_features",
        lambda: F.linear(_x((2, 3, 4)), _w((5, 3))),
    ),
    ("bias-length", ValueError, "linear: bias: expected shape", lambda: F.linear(_x(), _w(), _w((4,)))),
    ("bias-2d", ValueError, "linear: bias: expected shape", lambda: F.linear(_x(), _w(), _w((1, 5)))),
    ("weight-dtype", TypeError, "linear: weight: expected dtype float32", lambda: F.linear(_x(dtype=np.float32), _w())),
    ("bias-dtype", TypeError, "linear: bias: expected dtype float64", lambda: F.linear(_x(), _w(), np.zeros(5, np.float32))),
    ("input-int", TypeError, "linear: input: expected dtype", lambda: F.linear(np.ones((3, 4), int), _w())),
    ("weight-int", TypeError, "linear: weight: expected dtype", lambda: F.linear(_x(), np.ones((5, 4), np.int32))),
    ("input-list", TypeError, "linear: input: expected a numpy.ndarray", lambda: F.linear(_x().tolist(), _w())),
    ("input-none", TypeError, "linear: input: expected a numpy.ndarray", lambda: F.linear(None, _w())),
    ("weight-list", TypeError, "linear: weight: expected a numpy.ndarray", lambda: F.linear(_x(), _w().tolist())),
    ("bias-list", TypeError, "linear: bias: expected a numpy.ndarray", lambda: F.linear(_x(), _w(), [0.0] * 5)),
    (
        "backward-grad_output-shape",
        ValueError,
        "linear_backward: grad_output: expected shape",
        lambda: F.linear_backward(_x((3, 6)), _x(), _w()),
    ),
    (
        "backward-grad_output-rows",
        ValueError,
        "linear_backward: grad_output: expected shape",
        lambda: F.linear_backward(_x((2, 5)), _x(), _w()),
    ),
    (
        "backward-grad_output-1d-for-2d-input",
        ValueError,
        "linear_backward: grad_output:",
        lambda: F.linear_backward(_x((5,)), _x((1, 4)), _w()),
    ),
    (
        "backward-grad_output-2d-for-1d-input",
        ValueError,
        "linear_backward: grad_output:",
        lambda: F.linear_backward(_x((1, 5)), _x((4,)), _w()),
    ),
    (
        "backward-grad_output-swapped-leading-dims",
        ValueError,
        "linear_backward: grad_output:",
        lambda: F.linear_backward(_x((3, 2, 5)), _x((2, 3, 4)), _w()),
    ),
    (
        "backward-grad_output-flattened-leading-dims",
        ValueError,
        "linear_backward: grad_output:",
        lambda: F.linear_backward(_x((6, 5)), _x((2, 3, 4)), _w()),
    ),
    (
        "backward-grad_output-wrong-out-3d",
        ValueError,
        "linear_backward: grad_output:",
        lambda: F.linear_backward(_x((2, 3, 6)), _x((2, 3, 4)), _w()),
    ),
    ("backward-weight-1d", ValueError, "linear_backward: weight:", lambda: F.linear_backward(_x((3, 5)), _x(), _w((4,)))),
    (
        "backward-in_features-mismatch",
        ValueError,
        "linear_backward: weight:",
        lambda: F.linear_backward(_x((3, 5)), _x(), _w((5, 3))),
    ),
    (
        "backward-grad_output-dtype",
        TypeError,
        "linear_backward: input: expected dtype float32",
        lambda: F.linear_backward(_x((3, 5), np.float32), _x(), _w()),
    ),
    ("backward-grad_output-none", TypeError, "linear_backward: grad_output:", lambda: F.linear_backward(None, _x(), _w())),
    (
        "backward-grad_output-list",
        TypeError,
        "linear_backward: grad_output:",
        lambda: F.linear_backward(_x((3, 5)).tolist(), _x(), _w()),
    ),
    ("backward-input-int", TypeError, "linear_backward: input:", lambda: F.linear_backward(_x((3, 5)), np.ones((3, 4), int), _w())),
]


@pytest.mark.parametrize("exc, match, call", [pytest.param(e, m, c, id=n) for n, e, m, c in LINEAR_ERRORS])
def test_linear_error(exc, match, call):
    with pytest.raises(exc, match=match):
        call()


def test_linear_error_calls_are_otherwise_valid():
    assert F.linear(_x(), _w(), _w((5,))).shape == (3, 5)
    assert F.linear_backward(_x((3, 5)), _x(), _w())[0].shape == (3, 4)
    assert F.linear_backward(_x((2, 3, 5)), _x((2, 3, 4)), _w())[0].shape == (2, 3, 4)
    assert F.linear_backward(_x((5,)), _x((4,)), _w())[0].shape == (4,)
