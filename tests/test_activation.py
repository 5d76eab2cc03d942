"""relu, sigmoid and tanh with their backwards against the float64 references in
cnnkit.reference: any shape, extreme values, NaN, layouts, empty arrays, finite
differences, torch, errors."""

import numpy as np
import pytest

from cnnkit import functional as F

from cnnkit import reference as ref
from conftest import assert_close, random_array

# (forward, backward, reference forward, reference gradient, backward takes the output)
OPS = {
    "relu": (F.relu, F.relu_backward, ref.relu, ref.relu_backward, False),
    "sigmoid": (F.sigmoid, F.sigmoid_backward, ref.sigmoid, ref.sigmoid_backward, True),
    "tanh": (F.tanh, F.tanh_backward, ref.tanh, ref.tanh_backward, True),
}
OP_NAMES = list(OPS)

# Shapes of every rank; the last ones are large enough to run on several threads.
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (2, 3, 4, 5), (1, 2, 1, 3, 2), (300, 257)]


def _input(rng, shape, dtype):
    """Normal values spread to +-20, so that sigmoid and tanh saturate in places."""
    return np.asarray(rng.standard_normal(shape) * 6, dtype)


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_reference(name, shape, rng, dtype):
    x = _input(rng, shape, dtype)
    fwd, _, ref_fwd, _, _ = OPS[name]
    y = fwd(x)
    assert y.flags.c_contiguous and y is not x
    assert_close(y, ref_fwd(x), dtype)


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_reference(name, shape, rng, dtype):
    _, bwd, ref_fwd, ref_grad, takes_output = OPS[name]
    x = _input(rng, shape, dtype)
    other = np.asarray(ref_fwd(x) if takes_output else x, dtype)
    gy = np.asarray(random_array(rng, shape, dtype))
    gx = bwd(gy, other)
    assert gx.flags.c_contiguous
    assert_close(gx, ref_grad(gy, other), dtype)


@pytest.mark.parametrize("name", OP_NAMES)
def test_backward_finite_differences(name, rng):
    fwd, bwd, _, _, takes_output = OPS[name]
    x = rng.standard_normal((3, 4, 5)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # relu's kink is not differentiable
    w = rng.standard_normal(x.shape)
    y = fwd(x)
    analytic = bwd(w, y if takes_output else x)
    numeric = ref.numeric_grad(lambda v: np.sum(fwd(v) * w), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", OP_NAMES)
def test_matches_torch(name, rng, dtype):
    torch = pytest.importorskip("torch")
    fwd, bwd, _, _, takes_output = OPS[name]
    x = _input(rng, (4, 3, 6, 5), dtype)
    x[0, 0, 0, :3] = [0.0, -0.0, 1e-30]
    gy = random_array(rng, x.shape, dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = getattr(torch, name)(xt)
    yt.backward(torch.from_numpy(gy))
    y = fwd(x)
    assert_close(y, yt.detach().numpy().astype(np.float64), dtype)
    assert_close(bwd(gy, y if takes_output else x), xt.grad.numpy().astype(np.float64), dtype)


def test_relu_propagates_nan_as_torch_does(dtype):
    x = np.array([np.nan, -1.0, 0.0, 2.0, -np.inf, np.inf], dtype)
    y = F.relu(x)
    np.testing.assert_array_equal(y, [np.nan, 0.0, 0.0, 2.0, 0.0, np.inf])
    # threshold_backward: zero where x <= 0, so NaN passes the gradient
    gx = F.relu_backward(np.full(6, 3.0, dtype), x)
    np.testing.assert_array_equal(gx, [3.0, 0.0, 0.0, 3.0, 0.0, 3.0])


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_nan_and_infinities(name, dtype):
    fwd = OPS[name][0]
    y = fwd(np.array([np.nan, np.inf, -np.inf], dtype))
    assert np.isnan(y[0])
    low = 0.0 if name == "sigmoid" else -1.0
    np.testing.assert_array_equal(y[1:], [1.0, low])


def test_sigmoid_is_stable_for_large_inputs(dtype):
    # e^1000 overflows: a naive 1 / (1 + e^-x) would give inf / NaN or warn.
    x = np.array([-1e4, -1000.0, -80.0, -30.0, 0.0, 30.0, 80.0, 1000.0, 1e4], dtype)
    y = F.sigmoid(x)
    assert np.all(np.isfinite(y))
    assert_close(y, ref.sigmoid(x), dtype)
    # tiny results keep their relative accuracy
    small = x < -20
    np.testing.assert_allclose(y[small], ref.sigmoid(x[small]), rtol=1e-5 if dtype == np.float32 else 1e-13)


def test_tanh_keeps_relative_accuracy_near_zero(dtype):
    # (1 - e^-2x) / (1 + e^-2x) would cancel; expm1 keeps the digits.
    x = np.array([1e-30, -1e-12, 1e-7, -3e-4, 0.01, -0.3, 0.5, 2.0, -9.0, 19.0], dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(F.tanh(x), np.tanh(x.astype(np.float64)), rtol=rtol, atol=0)


@pytest.mark.parametrize("name", OP_NAMES)
def test_exp_range_sweep(name, dtype):
    # Every exponent range of the vectorised exp: subnormal results, underflow, overflow.
    fwd, _, ref_fwd, _, _ = OPS[name]
    x = np.linspace(-800, 800, 20001).astype(dtype)
    y = fwd(x)
    tiny = np.finfo(dtype).tiny
    expected = ref_fwd(x)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, expected, rtol=rtol, atol=tiny)


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("layout", ["strided", "fortran", "transposed"])
def test_non_contiguous_input(name, layout, rng, dtype):
    fwd, bwd, ref_fwd, ref_grad, takes_output = OPS[name]
    base = _input(rng, (6, 10, 8), dtype)
    x = {
        "strided": base[:, ::3, 1::2],
        "fortran": np.asfortranarray(base),
        "transposed": base.transpose(2, 0, 1),
    }[layout]
    assert not x.flags.c_contiguous
    y = fwd(x)
    assert y.flags.c_contiguous
    assert_close(y, ref_fwd(x), dtype)
    gy = random_array(rng, x.shape, dtype)[..., ::-1]
    other = y if takes_output else x
    assert_close(bwd(gy, other), ref_grad(gy, other), dtype)


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 4)], ids=str)
def test_empty(name, shape, dtype):
    fwd, bwd, _, _, _ = OPS[name]
    x = np.zeros(shape, dtype)
    y = fwd(x)
    assert y.shape == shape and y.dtype == dtype
    gx = bwd(x, x)
    assert gx.shape == shape and gx.dtype == dtype


@pytest.mark.parametrize("name", OP_NAMES)
def test_input_is_not_modified(name, rng, dtype):
    fwd = OPS[name][0]
    x = _input(rng, (5, 7), dtype)
    saved = x.copy()
    fwd(x)
    np.testing.assert_array_equal(x, saved)


# ---- errors


@pytest.mark.parametrize("name", OP_NAMES)
def test_error_not_an_array(name):
    with pytest.raises(TypeError, match=rf"{name}: input: expected a numpy.ndarray.*got list"):
        OPS[name][0]([1.0, 2.0])


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("bad", [np.int64, np.int32, np.float16, np.complex128, np.bool_])
def test_error_dtype(name, bad):
    with pytest.raises(TypeError, match=rf"{name}: input: expected dtype float32 or float64"):
        OPS[name][0](np.zeros(3, bad))


@pytest.mark.parametrize("name", OP_NAMES)
def test_error_backward_mixed_dtypes(name):
    bwd, takes_output = OPS[name][1], OPS[name][4]
    other = "output" if takes_output else "input"
    with pytest.raises(TypeError, match=rf"{name}_backward: {other}: expected dtype float32 to match grad_output"):
        bwd(np.zeros(3, np.float32), np.zeros(3, np.float64))


@pytest.mark.parametrize("name", OP_NAMES)
def test_error_backward_shape_mismatch(name):
    bwd = OPS[name][1]
    with pytest.raises(ValueError, match=rf"{name}_backward: grad_output: expected shape \(2, 3\), got \(3, 2\)"):
        bwd(np.zeros((3, 2)), np.zeros((2, 3)))


@pytest.mark.parametrize("name", OP_NAMES)
def test_error_backward_not_an_array(name):
    bwd = OPS[name][1]
    with pytest.raises(TypeError, match=rf"{name}_backward: grad_output: expected a numpy.ndarray"):
        bwd(None, np.zeros(3))
