"""softmax, log_softmax, cross_entropy and mse_loss with their backwards against the
float64 references in cnnkit.reference: any dim of any rank, large logits, NaN and
infinities, layouts, empty arrays, finite differences, torch, errors."""

import numpy as np
import pytest

from cnnkit import functional as F

from cnnkit import reference as ref
from conftest import assert_close, random_array

SOFTMAX = {
    "softmax": (F.softmax, F.softmax_backward, ref.softmax, ref.softmax_backward),
    "log_softmax": (F.log_softmax, F.log_softmax_backward, ref.log_softmax, ref.log_softmax_backward),
}
SOFTMAX_NAMES = list(SOFTMAX)
REDUCTIONS = ["mean", "sum", "none"]


def _softmax_cases():
    """(shape, dim): every dim of ranks 1-4 (negative dims too), plus strided dims
    whose inner extent spans several blocks of 256 and enough rows to use threads."""
    rng = np.random.default_rng(7)
    cases = [((5,), 0), ((5,), -1), ((1,), 0), ((3, 1), 1), ((300, 1), 0), ((2, 5, 300), 1), ((7, 600), 0)]
    cases += [((400, 100), -1), ((3, 40, 700), 1)]
    for ndim in (2, 3, 4):
        for _ in range(4):
            shape = tuple(int(v) for v in rng.integers(1, 7, ndim))
            dim = int(rng.integers(-ndim, ndim))
            cases.append((shape, dim))
    return cases


SOFTMAX_CASES = [pytest.param(s, d, id=f"{'x'.join(map(str, s))}-dim{d}") for s, d in _softmax_cases()]


def _logits(rng, shape, dtype, scale=3.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype)


# ---- softmax and log_softmax


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
@pytest.mark.parametrize("shape, dim", SOFTMAX_CASES)
def test_softmax_forward(name, shape, dim, rng, dtype):
    fwd, _, ref_fwd, _ = SOFTMAX[name]
    x = _logits(rng, shape, dtype)
    y = fwd(x, dim)
    assert y.flags.c_contiguous
    assert_close(y, ref_fwd(x, dim), dtype)


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
@pytest.mark.parametrize("shape, dim", SOFTMAX_CASES)
def test_softmax_backward(name, shape, dim, rng, dtype):
    fwd, bwd, ref_fwd, ref_grad = SOFTMAX[name]
    y = np.asarray(ref_fwd(_logits(rng, shape, dtype), dim), dtype)
    gy = random_array(rng, shape, dtype)
    assert_close(bwd(gy, y, dim), ref_grad(gy, y, dim), dtype)


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
@pytest.mark.parametrize("shape, dim", [((4, 6), 1), ((3, 4, 5), 0), ((2, 3, 4), 1)])
def test_softmax_backward_finite_differences(name, shape, dim, rng):
    fwd, bwd, _, _ = SOFTMAX[name]
    x = rng.standard_normal(shape)
    w = rng.standard_normal(shape)
    analytic = bwd(w, fwd(x, dim), dim)
    numeric = ref.numeric_grad(lambda v: np.sum(fwd(v, dim) * w), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
@pytest.mark.parametrize("shape, dim", [((8, 10), -1), ((2, 3, 4, 5), 1), ((6, 300), 0)])
@pytest.mark.parametrize("scale", [3.0, 1e4])
def test_softmax_matches_torch(name, shape, dim, scale, rng, dtype):
    torch = pytest.importorskip("torch")
    fwd, bwd, _, _ = SOFTMAX[name]
    x = _logits(rng, shape, dtype, scale)
    gy = random_array(rng, shape, dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = getattr(torch.nn.functional, name)(xt, dim=dim)
    yt.backward(torch.from_numpy(gy))
    y = fwd(x, dim)
    assert_close(y, yt.detach().numpy().astype(np.float64), dtype)
    assert_close(bwd(gy, y, dim), xt.grad.numpy().astype(np.float64), dtype)


def test_log_softmax_large_logits_keep_their_digits(dtype):
    # exp(1e4) overflows; (x - max) - log(sum) is exact to rounding.
    x = np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0, -1e4]], dtype)
    expected = ref.log_softmax(x)
    np.testing.assert_allclose(F.log_softmax(x), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(F.softmax(x), ref.softmax(x), rtol=1e-6, atol=1e-30)


def test_softmax_infinities_and_nan_as_torch(dtype):
    x = np.array([[-np.inf, 1.0, 2.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf]], dtype)
    y = F.softmax(x)
    ly = F.log_softmax(x)
    e = np.exp([0.0, 1.0])
    np.testing.assert_allclose(y[0], [0.0, *(e / e.sum())], rtol=1e-6)
    np.testing.assert_allclose(ly[0], [-np.inf, *np.log(e / e.sum())], rtol=1e-6)
    # A NaN, +inf (inf - inf) or an all -inf row poisons the whole row, as in torch.
    assert np.all(np.isnan(y[1:])) and np.all(np.isnan(ly[1:]))


def test_softmax_matches_torch_on_infinities(dtype):
    torch = pytest.importorskip("torch")
    x = np.array([[-np.inf, 1.0, 2.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf, -np.inf, -np.inf]], dtype)
    for name in SOFTMAX_NAMES:
        expected = getattr(torch.nn.functional, name)(torch.from_numpy(x), dim=1).numpy()
        np.testing.assert_allclose(SOFTMAX[name][0](x, 1), expected, rtol=1e-6)


def test_log_softmax_backward_takes_any_output_values(rng, dtype):
    # exp(y) over the whole exponent range, overflow included, as a user may pass any y.
    top = 80.0 if dtype == np.float32 else 700.0
    y = np.linspace(-800, top, 3001).astype(dtype)
    g = np.asarray(rng.standard_normal(y.shape), dtype)
    expected = g.astype(np.float64) - np.exp(y.astype(np.float64)) * g.astype(np.float64).sum()
    np.testing.assert_allclose(F.log_softmax_backward(g, y), expected, rtol=1e-5 if dtype == np.float32 else 1e-13)
    gx = F.log_softmax_backward(np.ones(2, dtype), np.array([0.0, 1000.0], dtype))
    np.testing.assert_array_equal(gx, [-1.0, -np.inf])


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
def test_softmax_zero_dim_input(name, dtype):
    x = np.array(2.5, dtype)
    fwd, bwd, _, _ = SOFTMAX[name]
    for dim in (0, -1):
        y = fwd(x, dim)
        assert y.shape == () and y.dtype == dtype
        assert float(y) == (1.0 if name == "softmax" else 0.0)
        assert bwd(np.array(1.0, dtype), y, dim).shape == ()


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
@pytest.mark.parametrize("layout", ["strided", "fortran", "transposed"])
def test_softmax_non_contiguous(name, layout, rng, dtype):
    fwd, bwd, ref_fwd, ref_grad = SOFTMAX[name]
    base = _logits(rng, (6, 10, 8), dtype)
    x = {
        "strided": base[:, ::3, 1::2],
        "fortran": np.asfortranarray(base),
        "transposed": base.transpose(2, 0, 1),
    }[layout]
    for dim in (0, 1, 2):
        y = fwd(x, dim)
        assert_close(y, ref_fwd(x, dim), dtype)
        gy = random_array(rng, x.shape, dtype)[..., ::-1]
        y_nc = np.asfortranarray(y)
        assert_close(bwd(gy, y_nc, dim), ref_grad(gy, y_nc, dim), dtype)


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
@pytest.mark.parametrize("shape, dim", [((0, 5), 1), ((0, 5), 0), ((3, 0), 1), ((3, 0), 0), ((2, 0, 3), 2)])
def test_softmax_empty(name, shape, dim, dtype):
    fwd, bwd, _, _ = SOFTMAX[name]
    x = np.zeros(shape, dtype)
    y = fwd(x, dim)
    assert y.shape == shape and y.dtype == dtype
    assert bwd(x, y, dim).shape == shape


def test_softmax_rows_sum_to_one_with_threads(rng, num_threads, dtype):
    x = _logits(rng, (513, 129), dtype)
    num_threads(1)
    one = F.softmax(x, 0)
    num_threads(2)
    two = F.softmax(x, 0)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(two.sum(axis=0), 1.0, rtol=1e-5)


# ---- cross_entropy


def _ce_operands(rng, n, c, dtype, target_dtype=np.int64, scale=3.0):
    x = _logits(rng, (n, c), dtype, scale)
    t = rng.integers(0, c, n).astype(target_dtype)
    return x, t


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n, c", [(1, 1), (1, 5), (8, 10), (33, 3), (200, 300)])
def test_cross_entropy_forward_and_backward(reduction, n, c, rng, dtype):
    x, t = _ce_operands(rng, n, c, dtype)
    loss = F.cross_entropy(x, t, reduction)
    expected = ref.cross_entropy(x, t, reduction)
    assert isinstance(loss, np.ndarray)
    assert_close(loss, expected, dtype)
    if reduction != "none":
        assert loss.shape == () and isinstance(float(loss), float)
    assert_close(F.cross_entropy_backward(x, t, reduction), ref.cross_entropy_backward(x, t, reduction), dtype)


@pytest.mark.parametrize("target_dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64])
def test_cross_entropy_any_integer_target(target_dtype, rng, dtype):
    x, t = _ce_operands(rng, 6, 4, dtype, target_dtype)
    assert_close(F.cross_entropy(x, t), ref.cross_entropy(x, t), dtype)
    assert_close(F.cross_entropy_backward(x, t), ref.cross_entropy_backward(x, t), dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_backward_finite_differences(reduction, rng):
    x, t = _ce_operands(rng, 5, 4, np.float64)
    analytic = F.cross_entropy_backward(x, t, reduction)
    numeric = ref.numeric_grad(lambda v: np.sum(F.cross_entropy(v, t, reduction)), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("scale", [3.0, 1e4])
def test_cross_entropy_matches_torch(reduction, scale, rng, dtype):
    torch = pytest.importorskip("torch")
    x, t = _ce_operands(rng, 16, 7, dtype, scale=scale)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    lt = torch.nn.functional.cross_entropy(xt, torch.from_numpy(t), reduction=reduction)
    lt.backward(torch.ones_like(lt))
    loss = F.cross_entropy(x, t, reduction)
    assert_close(loss, lt.detach().numpy().astype(np.float64), dtype)
    assert_close(F.cross_entropy_backward(x, t, reduction), xt.grad.numpy().astype(np.float64), dtype)


def test_cross_entropy_large_logits(dtype):
    x = np.array([[1e4, 1e4 - 3.0, -1e4], [-5e3, 5e3, 0.0]], dtype)
    t = np.array([1, 0])
    np.testing.assert_allclose(F.cross_entropy(x, t, "none"), ref.cross_entropy(x, t, "none"), rtol=1e-6)
    assert np.all(np.isfinite(F.cross_entropy_backward(x, t)))


def test_cross_entropy_non_contiguous(rng, dtype):
    x = _logits(rng, (10, 12), dtype)[::2, 1::2]
    t = rng.integers(0, 6, 10)[::2]
    assert_close(F.cross_entropy(x, t, "none"), ref.cross_entropy(x, t, "none"), dtype)
    assert_close(F.cross_entropy_backward(np.asfortranarray(x), t), ref.cross_entropy_backward(x, t), dtype)


def test_cross_entropy_empty_batch(dtype):
    x = np.zeros((0, 4), dtype)
    t = np.zeros(0, np.int64)
    mean = F.cross_entropy(x, t)
    assert mean.shape == () and mean.dtype == dtype and np.isnan(mean)  # torch: nan
    assert float(F.cross_entropy(x, t, "sum")) == 0.0
    assert F.cross_entropy(x, t, "none").shape == (0,)
    assert F.cross_entropy_backward(x, t).shape == (0, 4)


# ---- mse_loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 4, 5), (300, 300)], ids=str)
def test_mse_loss_forward_and_backward(reduction, shape, rng, dtype):
    x = np.asarray(random_array(rng, shape, dtype))
    t = np.asarray(random_array(rng, shape, dtype))
    loss = F.mse_loss(x, t, reduction)
    assert_close(loss, np.asarray(ref.mse_loss(x, t, reduction)), dtype)
    assert_close(F.mse_loss_backward(x, t, reduction), ref.mse_loss_backward(x, t, reduction), dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_backward_finite_differences(reduction, rng):
    x = rng.standard_normal((3, 5))
    t = rng.standard_normal((3, 5))
    analytic = F.mse_loss_backward(x, t, reduction)
    numeric = ref.numeric_grad(lambda v: np.sum(F.mse_loss(v, t, reduction)), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_matches_torch(reduction, rng, dtype):
    torch = pytest.importorskip("torch")
    x = random_array(rng, (4, 3, 5), dtype)
    t = random_array(rng, (4, 3, 5), dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    lt = torch.nn.functional.mse_loss(xt, torch.from_numpy(t), reduction=reduction)
    lt.backward(torch.ones_like(lt))
    assert_close(F.mse_loss(x, t, reduction), lt.detach().numpy().astype(np.float64), dtype)
    assert_close(F.mse_loss_backward(x, t, reduction), xt.grad.numpy().astype(np.float64), dtype)


def test_mse_loss_sum_does_not_depend_on_threads(rng, num_threads):
    x = random_array(rng, (1000, 97), np.float32)
    t = random_array(rng, (1000, 97), np.float32)
    num_threads(1)
    one = F.mse_loss(x, t, "sum")
    num_threads(2)
    assert F.mse_loss(x, t, "sum") == one


def test_mse_loss_non_contiguous_and_empty(rng, dtype):
    x = random_array(rng, (6, 8), dtype)[:, ::2]
    t = np.asfortranarray(random_array(rng, (6, 4), dtype))
    assert_close(F.mse_loss(x, t, "none"), ref.mse_loss(x, t, "none"), dtype)
    empty = np.zeros((0, 3), dtype)
    assert np.isnan(F.mse_loss(empty, empty))  # torch: nan
    assert float(F.mse_loss(empty, empty, "sum")) == 0.0
    assert F.mse_loss_backward(empty, empty).shape == (0, 3)


# ---- errors


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
@pytest.mark.parametrize("shape, dim", [((2, 3), 2), ((2, 3), -3), ((4,), 1), ((), 1), ((), -2)])
def test_error_dim_out_of_range(name, shape, dim):
    fwd, bwd, _, _ = SOFTMAX[name]
    r = max(len(shape), 1)
    msg = rf"{name}: dim: expected a value in \[{-r}, {r - 1}\], got {dim}"
    x = np.zeros(shape)
    with pytest.raises(IndexError, match=msg):
        fwd(x, dim)
    with pytest.raises(IndexError, match=msg.replace(name, f"{name}_backward")):
        bwd(x, x, dim)


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
@pytest.mark.parametrize("dim", [1.0, None, "1", True])
def test_error_dim_type(name, dim):
    with pytest.raises(TypeError, match=rf"{name}: dim: expected an int"):
        SOFTMAX[name][0](np.zeros((2, 3)), dim)


@pytest.mark.parametrize("name", SOFTMAX_NAMES)
def test_error_softmax_operands(name):
    fwd, bwd, _, _ = SOFTMAX[name]
    with pytest.raises(TypeError, match=rf"{name}: input: expected a numpy.ndarray"):
        fwd([1.0, 2.0])
    with pytest.raises(TypeError, match=rf"{name}: input: expected dtype float32 or float64, got int64"):
        fwd(np.zeros(3, np.int64))
    with pytest.raises(TypeError, match=rf"{name}_backward: output: expected dtype float64 to match grad_output"):
        bwd(np.zeros(3), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=rf"{name}_backward: grad_output: expected shape \(3,\), got \(4,\)"):
        bwd(np.zeros(4), np.zeros(3))


@pytest.mark.parametrize("op", [F.cross_entropy, F.cross_entropy_backward])
def test_error_cross_entropy(op):
    name = op.__name__
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    with pytest.raises(TypeError, match=rf"{name}: target: expected an integer dtype of class indices, got float64"):
        op(x, t.astype(np.float64))
    with pytest.raises(TypeError, match=rf"{name}: target: expected an integer dtype of class indices, got bool"):
        op(x, np.array([True, False, True]))
    with pytest.raises(TypeError, match=rf"{name}: target: expected a numpy.ndarray of integer class indices, got list"):
        op(x, [0, 1, 2])
    with pytest.raises(ValueError, match=rf"{name}: target: expected class indices in \[0, 4\), got 4 at position 2"):
        op(x, np.array([0, 3, 4]))
    with pytest.raises(ValueError, match=rf"{name}: target: expected class indices in \[0, 4\), got -1 at position 0"):
        op(x, np.array([-1, 0, 1], np.int8))
    with pytest.raises(ValueError, match=rf"{name}: target: expected shape \(3,\) to match the batch of input \(3, 4\), got \(2,\)"):
        op(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=rf"{name}: target: expected a 1-D array \(N,\) of class indices, got 2-D"):
        op(x, t[:, None])
    with pytest.raises(ValueError, match=rf"{name}: input: expected a 2-D array \(N, C\) of logits, got 3-D"):
        op(x[None], t)
    with pytest.raises(ValueError, match=rf"{name}: input: expected a 2-D array \(N, C\) of logits, got 1-D"):
        op(x[0], t)
    with pytest.raises(TypeError, match=rf"{name}: input: expected dtype float32 or float64, got int64"):
        op(np.zeros((3, 4), np.int64), t)
    with pytest.raises(ValueError, match=rf"{name}: reduction: expected 'mean', 'sum' or 'none', got 'avg'"):
        op(x, t, "avg")
    with pytest.raises(TypeError, match=rf"{name}: reduction: expected 'mean', 'sum' or 'none', got NoneType"):
        op(x, t, None)


@pytest.mark.parametrize("op", [F.mse_loss, F.mse_loss_backward])
def test_error_mse_loss(op):
    name = op.__name__
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=rf"{name}: target: expected shape \(3, 4\), got \(4,\)"):
        op(x, np.zeros(4))
    with pytest.raises(TypeError, match=rf"{name}: target: expected dtype float64 to match input, got float32"):
        op(x, np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match=rf"{name}: input: expected a numpy.ndarray"):
        op(1.0, x)
    with pytest.raises(TypeError, match=rf"{name}: target: expected dtype float32 or float64, got int32"):
        op(x, np.zeros((3, 4), np.int32))
    with pytest.raises(ValueError, match=rf"{name}: reduction: expected 'mean', 'sum' or 'none', got 'max'"):
        op(x, x, "max")
