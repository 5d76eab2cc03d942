"""cnnkit.testing: check_op passes cnnkit's (and torch's) ops and catches broken kernels by
a named case; assert_close's rules and messages; sample_inputs' determinism and cases."""

import re
import warnings

import numpy as np
import pytest

import cnnkit.functional as F
from cnnkit import reference as ref
from cnnkit.testing import OPS, assert_close, check_op, sample_inputs, tolerance
from cnnkit.testing.pytest import parametrize_samples

# ---- check_op on correct implementations


@pytest.mark.parametrize("op", sorted(OPS))
def test_check_op_passes_cnnkit(op):
    report = check_op(op, getattr(F, op), backward=getattr(F, op + "_backward"))
    n = len(sample_inputs(op, np.float32)) + len(sample_inputs(op))
    assert report == f"check_op({op!r}): {n} cases (float32/float64) passed, forward and backward"


def _torch_op(torch, op):
    fn = getattr(torch, op) if op in ("sigmoid", "tanh") else getattr(torch.nn.functional, op)

    def call(*args, **kwargs):
        args = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
        kwargs = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        if op == "batch_norm":  # torch's order: (input, running_mean, running_var, weight, bias)
            x, gamma, beta = args
            rm, rv = kwargs.pop("running_mean", None), kwargs.pop("running_var", None)
            kwargs.setdefault("training", True)  # torch's default is False
            return fn(x, rm, rv, gamma, beta, **kwargs)
        with warnings.catch_warnings():  # torch warns that 'same' with an even kernel copies
            warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
            return fn(*args, **kwargs)

    return call


@pytest.mark.parametrize("op", sorted(set(OPS) - {"dropout"}))  # torch's dropout keeps its mask to itself
def test_check_op_passes_torch(op):
    """Torch tensors come out; check_op takes them as they are."""
    torch = pytest.importorskip("torch")
    assert check_op(op, _torch_op(torch, op)).startswith(f"check_op({op!r})")


class _ArrayLike:
    """Neither an ndarray nor a tensor: only np.asarray can read it."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


# ops whose backward takes (grad_output, *the forward's arrays) -> the bias's axis in the output, if any
_TORCH_BACKWARD = {"conv2d": 1, "conv_transpose2d": 1, "linear": -1, "relu": None, "local_response_norm": None}


@pytest.mark.parametrize("op", sorted(_TORCH_BACKWARD))
def test_check_op_passes_torch_autograd(op):
    """The references' gradients agree with torch's autograd."""
    torch = pytest.importorskip("torch")
    forward = _torch_op(torch, op)

    def backward(grad, *inputs, **kwargs):
        leaves = [torch.from_numpy(np.array(a)).requires_grad_() if isinstance(a, np.ndarray) else a for a in inputs]
        forward(*leaves, **kwargs).backward(torch.from_numpy(grad))
        grads = [t.grad.numpy() for t in leaves if isinstance(t, torch.Tensor)]
        bias_axis = _TORCH_BACKWARD[op]
        if bias_axis is not None:  # the bias's gradient, which reference.*_backward always returns
            grads.append(grad.sum(axis=tuple(i for i in range(grad.ndim) if i != bias_axis % grad.ndim)))
        return tuple(grads) if len(grads) > 1 else grads[0]

    assert "forward and backward" in check_op(op, forward, backward=backward)


class _CupyLike:
    """A device array as CuPy's: np.asarray refuses it, .get() copies it to the host."""

    __cuda_array_interface__ = {}

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        raise TypeError("implicit conversion to a NumPy array is not allowed")

    def get(self):
        return self.a.copy()


def test_check_op_reads_device_arrays_through_get():
    def to_device(result):
        return tuple(None if r is None else _CupyLike(r) for r in _outputs(result))

    assert "passed" in check_op("max_pool2d", lambda *a, **k: to_device(F.max_pool2d(*a, **k)))
    assert "passed" in check_op("dropout", lambda *a, **k: to_device(F.dropout(*a, **k)), backward=F.dropout_backward)


def test_check_op_passes_torch_autograd_batch_norm():
    """reference.batch_norm_grads agrees with torch's autograd; the saved state is torch's graph."""
    torch = pytest.importorskip("torch")
    forward = _torch_op(torch, "batch_norm")

    def batch_norm(x, gamma=None, beta=None, **kwargs):
        leaves = [None if a is None else torch.from_numpy(np.array(a)).requires_grad_() for a in (x, gamma, beta)]
        y = forward(*leaves, **kwargs)
        return y.detach(), (y, leaves)

    def backward(grad, saved):
        y, leaves = saved
        y.backward(torch.from_numpy(grad))
        return tuple(None if t is None else t.grad.numpy() for t in leaves)

    assert "forward and backward" in check_op("batch_norm", batch_norm, backward=backward)


def test_check_op_takes_anything_asarray_takes():
    assert "passed" in check_op("relu", lambda x: _ArrayLike(F.relu(x)))
    assert "passed" in check_op("max_pool2d", lambda *a, **k: tuple(map(_ArrayLike, _outputs(F.max_pool2d(*a, **k)))))


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


# ---- check_op on broken implementations: each caught by a named case


def _failure(op, fn, **kwargs):
    """The AssertionError message of check_op and the Sample it names."""
    with pytest.raises(AssertionError) as info:
        check_op(op, fn, **kwargs)
    message = str(info.value)
    dtype, note = re.match(r"check_op\('\w+'\) (\w+) case '(.*?)': \w+\(", message).groups()
    case = next(c for c in sample_inputs(op, dtype) if c.note == note)
    return message, case


def test_catches_conv_ignoring_dilation():
    def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        return F.conv2d(x, w, b, stride, padding, 1, groups)

    message, case = _failure("conv2d", conv)
    assert case.kwargs.get("dilation", 1) not in (1, (1, 1))
    assert "dilation=" in message


def test_catches_conv_with_padding_pair_swapped():
    def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        if isinstance(padding, tuple):
            padding = padding[::-1]
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    _, case = _failure("conv2d", conv)
    p = case.kwargs["padding"]
    assert p[0] != p[1]


def test_catches_same_padding_split_the_wrong_way():
    """'same' with an even kernel pads one more at the bottom/right; this one pads at the top/left."""

    def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        if padding == "same":
            d = (dilation, dilation) if isinstance(dilation, int) else dilation
            total = [d[a] * (w.shape[2 + a] - 1) for a in range(2)]
            pads = [(t - t // 2, t // 2) for t in total]
            x, padding = np.pad(x, ((0, 0), (0, 0), *pads)), 0
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    message, case = _failure("conv2d", conv)
    assert case.note == "'same' padding, even kernel (uneven split)"
    assert "padding='same'" in message


def _naive_max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, rule="torch"):
    """Tap by tap over each window; rule 'torch' takes a tap greater than the maximum or NaN,
    'last' also takes ties (the last maximum wins), 'drop_nan' never takes a NaN."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    (kh, kw), (ph, pw), (dh, dw) = pair(kernel_size), pair(padding), pair(dilation)
    sh, sw = pair(kernel_size if stride is None else stride)
    ho, wo = ref.pool_out_size(h, kh, sh, ph, dh, ceil_mode), ref.pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    y = np.full((n, c, ho, wo), -np.inf, x.dtype)
    s = np.full((n, c, ho, wo), -1, np.int64)
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    r, q = i * sh - ph + a * dh, j * sw - pw + b * dw
                    if not (0 <= r < h and 0 <= q < w):
                        continue
                    v, best = x[:, :, r, q], y[:, :, i, j]
                    take = {"torch": (v > best) | np.isnan(v), "last": (v >= best) | np.isnan(v), "drop_nan": v > best}[rule]
                    take |= s[:, :, i, j] < 0  # the window's first input
                    if rule == "drop_nan":
                        take &= ~np.isnan(v)
                    y[:, :, i, j] = np.where(take, v, best)
                    s[:, :, i, j] = np.where(take, r * w + q, s[:, :, i, j])
    return (y, s) if return_indices else y


def test_naive_max_pool_passes():
    """The broken pools below differ from this one in their rule only."""
    assert "passed" in check_op("max_pool2d", _naive_max_pool)


def test_catches_max_pool_taking_the_last_maximum():
    message, case = _failure("max_pool2d", lambda *a, **k: _naive_max_pool(*a, **k, rule="last"))
    assert "tie" in case.note or "constant" in case.note
    assert "integers differ" in message


def test_catches_max_pool_dropping_nan():
    message, case = _failure("max_pool2d", lambda *a, **k: _naive_max_pool(*a, **k, rule="drop_nan"))
    assert "NaN" in case.note
    assert "NaN at" in message


def test_catches_unpool_where_the_first_duplicate_wins():
    def unpool(x, switches, kernel_size, stride=None, padding=0, output_size=None):
        y = F.max_unpool2d(x, switches, kernel_size, stride, padding, output_size)
        planes, per_plane = x.shape[0] * x.shape[1], x.shape[2] * x.shape[3]
        flat, xs, ss = y.reshape(planes, -1), x.reshape(planes, per_plane), switches.reshape(planes, per_plane)
        for k in reversed(range(per_plane)):
            flat[np.arange(planes), ss[:, k]] = xs[:, k]
        return y

    _, case = _failure("max_unpool2d", unpool)
    assert case.note == "duplicate switches (last wins)"


def test_catches_relu_dropping_nan():
    message, case = _failure("relu", lambda x: np.fmax(x, 0).astype(x.dtype))
    assert case.note == "NaN, infinities, signed zeros and extreme values"
    assert "NaN at 1 other positions" in message


def test_catches_softmax_without_the_max_shift():
    def softmax(x, dim=-1):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(x)
            return e / e.sum(axis=dim, keepdims=True)

    message, case = _failure("softmax", softmax)
    assert case.note == "huge logits (overflow without the max shift)"


def test_catches_cross_entropy_without_the_max_shift():
    def cross_entropy(logits, target, reduction="mean"):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            losses = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(target)), target]
        return {"mean": losses.mean, "sum": losses.sum}.get(reduction, lambda: losses)()

    _, case = _failure("cross_entropy", cross_entropy)
    assert "huge logits" in case.note


def test_catches_float32_accumulation_in_float64():
    def linear(x, w, b=None):
        y = np.asarray(x, np.float32) @ np.asarray(w, np.float32).T
        return (y if b is None else y + b).astype(x.dtype)

    check_op("linear", linear, dtypes=(np.float32,))  # fine in float32
    message, _ = _failure("linear", linear, dtypes=(np.float64,))
    assert "float64 case" in message and "worst at index" in message


def test_catches_batch_norm_with_the_unbiased_variance():
    def batch_norm(x, gamma=None, beta=None, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
        if not training:
            return F.batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps)
        m = x.shape[0] * x.shape[2] * x.shape[3]
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3), ddof=1) if m > 1 else x.var(axis=(0, 2, 3))
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * x.var(axis=(0, 2, 3), ddof=1)
        y = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + eps)
        if gamma is not None:
            y = y * gamma[:, None, None] + beta[:, None, None]
        return y.astype(x.dtype)

    message, case = _failure("batch_norm", batch_norm)
    assert case.kwargs.get("training", True)
    assert "batch_norm[0]" in message


def _numpy_batch_norm(x, gamma=None, beta=None, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
    """cnnkit's forward, with a saved state of its own for the NumPy backward below."""
    y, _ = F.batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    stats = (running_mean.copy(), running_var.copy()) if not training else (None, None)
    return y, (x, gamma, beta, training, eps, *stats)


def _numpy_batch_norm_backward(grad, saved, ddof=0):
    """The course's formula; ddof=1 normalises with the unbiased variance in training."""
    x, gamma, beta, training, eps, running_mean, running_var = saved
    x64, g, axes = x.astype(np.float64), grad.astype(np.float64), (0, 2, 3)
    if training:
        mean, var = x64.mean(axis=axes), x64.var(axis=axes, ddof=ddof)
    else:
        mean, var = running_mean, running_var
    inv = (1 / np.sqrt(var + eps))[:, None, None]
    x_hat = (x64 - mean[:, None, None]) * inv
    scale = inv if gamma is None else gamma[:, None, None] * inv
    if training:
        mean_of = lambda a: a.mean(axis=axes)[:, None, None]  # noqa: E731
        gx = scale * (g - mean_of(g) - x_hat * mean_of(g * x_hat))
    else:
        gx = scale * g
    g_gamma = None if gamma is None else (g * x_hat).sum(axis=axes).astype(x.dtype)
    g_beta = None if beta is None else g.sum(axis=axes).astype(x.dtype)
    return gx.astype(x.dtype), g_gamma, g_beta


def test_numpy_batch_norm_backward_passes():
    """The saved state is fn's own; the broken backward below differs in its variance only."""
    assert "forward and backward" in check_op("batch_norm", _numpy_batch_norm, backward=_numpy_batch_norm_backward)


def test_catches_batch_norm_backward_with_the_unbiased_variance():
    backward = lambda g, saved: _numpy_batch_norm_backward(g, saved, ddof=1)  # noqa: E731
    message, case = _failure("batch_norm", _numpy_batch_norm, backward=backward)
    assert case.kwargs.get("training", True)
    assert "batch_norm backward[0]" in message


def test_batch_norm_backward_needs_the_saved_state():
    message, _ = _failure("batch_norm", lambda *a, **k: F.batch_norm(*a, **k)[0], backward=F.batch_norm_backward)
    assert "batch_norm: gave 1 result, expected 2 (y, saved)" in message


def test_catches_dropout_without_the_rescaling():
    def dropout(x, p=0.5, training=True, seed=None):
        y, mask = F.dropout(x, p, training, seed)
        return (y if mask is None else y * (1 - p)).astype(x.dtype), mask

    message, case = _failure("dropout", dropout)
    assert case.kwargs["training"] and case.kwargs["p"] > 0
    assert "dropout: " in message and "worst at index" in message


def test_catches_dropout_backward_without_the_rescaling():
    message, _ = _failure("dropout", F.dropout, backward=lambda g, mask, p: g * mask)
    assert "dropout backward: " in message


def test_catches_dropout_that_zeroes_nan():
    def dropout(x, p=0.5, training=True, seed=None):
        y, mask = F.dropout(x, p, training, seed)
        return (y if mask is None else np.where(mask, y, 0).astype(x.dtype)), mask

    message, case = _failure("dropout", dropout)
    assert "NaN" in case.note and "NaN at" in message


def test_catches_dropout_that_keeps_too_much():
    """p is taken for the share kept: y agrees with its own mask, the mask is wrong."""

    def dropout(x, p=0.5, training=True, seed=None):
        if not training:
            return x.copy(), None
        _, mask = F.dropout(x, 1 - p if 0 < p < 1 else p, training, seed)
        with np.errstate(invalid="ignore"):  # inf * 0
            return (x * mask / (1 - p)).astype(x.dtype), mask

    message, case = _failure("dropout", dropout)
    assert case.note == "many elements (the share kept is 1 - p)"
    assert "expected 1 - p = 0.7" in message


def test_catches_dropout_with_a_bad_mask():
    message, _ = _failure("dropout", lambda *a, **k: F.dropout(*a, **k)[0])
    assert "dropout: gave 1 result, expected 2 (y, mask)" in message
    message, _ = _failure("dropout", lambda x, **k: (F.dropout(x, **k)[0], np.ones(x.shape, np.float32)))
    assert "mask: float32 of shape" in message

    def mask_in_eval(x, **kw):
        y, mask = F.dropout(x, **kw)
        return y, np.ones(x.shape, bool) if mask is None else mask

    message, case = _failure("dropout", mask_in_eval)
    assert not case.kwargs["training"]
    assert "eval mode gave a mask of type ndarray, expected None" in message


def test_catches_lrn_window_off_by_one():
    """A symmetric window [c - size//2, c + size//2]: right for odd sizes only."""

    def lrn(x, size, alpha=1e-4, beta=0.75, k=1.0):
        sq = np.asarray(x, np.float64) ** 2
        c = x.shape[1]
        d = np.stack([sq[:, max(0, i - size // 2) : min(c, i + size // 2 + 1)].sum(axis=1) for i in range(c)], axis=1)
        return (x / (k + alpha / size * d) ** beta).astype(x.dtype)

    _, case = _failure("local_response_norm", lrn)
    assert case.args[1] % 2 == 0


def test_catches_wrong_backward():
    message, _ = _failure("conv2d", F.conv2d, backward=lambda g, x, w, **kw: F.conv2d_backward(g * 2, x, w, **kw))
    assert "conv2d backward[0]" in message


def test_catches_a_kernel_that_raises():
    def conv(x, w, b=None, **kw):
        if x.shape[0] == 0:
            raise ValueError("no empty batches")
        return F.conv2d(x, w, b, **kw)

    message, case = _failure("conv2d", conv)
    assert case.note == "empty batch" and "raised ValueError: no empty batches" in message


def test_catches_too_few_results():
    message, case = _failure("max_pool2d", lambda *a, **k: F.max_pool2d(*a, **k)[0], dtypes=np.float64)
    assert case.kwargs["return_indices"] and "max_pool2d gave 1 results, expected 2" in message


def test_catches_wrong_dtype():
    message, _ = _failure("relu", lambda x: F.relu(x).astype(np.float64), dtypes=(np.float32,))
    assert "dtype float64, expected float32" in message


def test_check_op_errors():
    with pytest.raises(ValueError, match="check_op: op: expected one of .*got 'conv3d'"):
        check_op("conv3d", F.relu)
    with pytest.raises(TypeError, match="check_op: fn: expected a callable, got int"):
        check_op("relu", 3)
    with pytest.raises(TypeError, match="check_op: backward: expected a callable"):
        check_op("relu", F.relu, backward="relu_backward")
    with pytest.raises(TypeError, match="dtypes: expected float32 or float64, got float16"):
        check_op("relu", F.relu, dtypes=(np.float16,))
    with pytest.raises(ValueError, match="check_op: dtypes: expected at least one dtype"):
        check_op("relu", F.relu, dtypes=())


# ---- the references' options


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_reference_conv_backward_output_mask(op):
    """Only the requested gradients, as cnnkit.functional's; the others None."""
    case = next(c for c in sample_inputs(op) if c.note == "groups")
    x, w, _ = case.args
    gy = np.random.default_rng(0).standard_normal(getattr(ref, op)(x, w, **case.kwargs).shape)
    backward = getattr(ref, op + "_backward")
    full = backward(gy, x, w, **case.kwargs)
    for k in range(3):
        mask = tuple(i == k for i in range(3))
        got = backward(gy, x, w, **case.kwargs, output_mask=mask)
        assert [g is None for g in got] == [not m for m in mask]
        np.testing.assert_array_equal(got[k], full[k])
    with pytest.raises(ValueError, match="output_mask: expected 3 booleans"):
        backward(gy, x, w, **case.kwargs, output_mask=(True, False))


def test_reference_dropout_eval_and_backward():
    x, keep = np.array([1.0, np.nan, np.inf, -2.0]), np.array([True, False, False, True])
    np.testing.assert_array_equal(ref.dropout(x, keep, 0.5), [2.0, np.nan, np.nan, -4.0])
    np.testing.assert_array_equal(ref.dropout(x, None, 0.5), x)
    np.testing.assert_array_equal(ref.dropout_backward(x, keep, 0.75), [4.0, np.nan, np.nan, -8.0])


# ---- assert_close


def test_assert_close_passes_within_tolerance():
    want = np.array([1.0, -2.0, 3.0])
    assert_close(want.astype(np.float32), want)
    assert_close(want * (1 + 5e-11), want, np.float64)
    assert_close(np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.0]))
    assert_close(np.array([3, 1]), np.array([3, 1], np.int64))


def test_assert_close_names_the_worst_element():
    want = np.zeros((2, 3))
    want[0, 0] = 1.0
    got = want.copy()
    got[1, 2], got[0, 1] = 1e-3, 5e-4
    with pytest.raises(AssertionError) as info:
        assert_close(got, want, np.float64, note="my case")
    assert str(info.value) == (
        "my case: 2 of 6 elements differ beyond rtol=1e-10, atol=1e-10; "
        "worst at index (1, 2): actual 0.001, expected 0.0 (|diff| 0.001)"
    )


def test_assert_close_nan_positions_exact():
    with pytest.raises(AssertionError, match=r"NaN at 1 other positions; first at index \(1,\): actual 2.0, expected nan"):
        assert_close(np.array([1.0, 2.0]), np.array([1.0, np.nan]))
    with pytest.raises(AssertionError, match=r"NaN at 1 other positions; first at index \(0,\): actual nan"):
        assert_close(np.array([np.nan, 2.0]), np.array([1.0, 2.0]))


def test_assert_close_infinities_exact():
    with pytest.raises(AssertionError, match=r"infinities differ at 1 positions; first at index \(0,\): actual inf, expected -inf"):
        assert_close(np.array([np.inf, 1.0]), np.array([-np.inf, 1.0]))


def test_assert_close_integers_exact():
    with pytest.raises(AssertionError, match=r"1 of 3 integers differ; first at index \(2,\): actual 5, expected 4"):
        assert_close(np.array([1, 2, 5]), np.array([1, 2, 4]))
    with pytest.raises(AssertionError, match="dtype float64, expected integers"):
        assert_close(np.array([1.0, 2.0]), np.array([1, 2]))


def test_assert_close_shape_dtype_and_overrides():
    with pytest.raises(AssertionError, match=r"shape \(2,\), expected \(3,\)"):
        assert_close(np.zeros(2), np.zeros(3))
    with pytest.raises(AssertionError, match="dtype float64, expected float32"):
        assert_close(np.zeros(2), np.zeros(2), np.float32)
    assert_close(np.array([1.1]), np.array([1.0]), rtol=0.2)
    assert_close(np.array([1.1]), np.array([1.0]), atol=0.2)
    with pytest.raises(AssertionError, match="worst at index"):
        assert_close(np.array([1.1]), np.array([1.0]), rtol=0.01)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got int32"):
        assert_close(np.zeros(2), np.zeros(2), np.int32)


def test_tolerance_scales_with_the_largest_finite_value():
    assert tolerance(np.float32, [1.0, -8.0, np.nan, np.inf]) == (1e-4, 8e-4)
    assert tolerance(np.float64, []) == (1e-10, 0.0)


# ---- sample_inputs

NAMED = {
    "conv2d": ["asymmetric padding", "'same' padding", "dilation with stride", "groups", "depthwise", "empty batch", "non-contiguous"],
    "conv_transpose2d": ["output_padding", "dilation with stride", "groups", "empty batch", "non-contiguous"],
    "max_pool2d": ["ties", "NaN in windows", "NaN and ties", "ceil_mode", "dilation with stride", "empty batch", "non-contiguous"],
    "max_unpool2d": ["output_size", "duplicate switches", "empty batch", "non-contiguous"],
    "lp_pool2d": ["norm_type inf", "ceil_mode", "empty batch", "non-contiguous"],
    "avg_pool2d": ["counted in the divisor", "left out of the divisor", "ceil_mode", "empty batch", "non-contiguous"],
    "softmax": ["huge logits", "NaN", "empty batch", "non-contiguous"],
    "log_softmax": ["huge logits", "NaN", "empty batch", "non-contiguous"],
    "cross_entropy": ["huge logits", "empty batch", "non-contiguous"],
    "relu": ["NaN", "empty batch", "non-contiguous"],
    "linear": ["empty batch", "non-contiguous"],
    "batch_norm": ["eval", "zero variance", "non-contiguous"],
    "dropout": ["p = 0", "NaN", "eval mode", "many elements", "empty batch", "non-contiguous"],
    "local_response_norm": ["even size", "larger than the channels", "empty batch", "non-contiguous"],
}


@pytest.mark.parametrize("op", sorted(NAMED))
def test_sample_inputs_hold_the_named_cases(op):
    cases = sample_inputs(op)
    notes = [c.note for c in cases]
    assert len(set(notes)) == len(notes)
    assert sum(n.startswith("random ") for n in notes) >= 2
    for name in NAMED[op]:
        matching = [c for c in cases if name in c.note]
        assert matching, f"{op}: no case named {name!r}"
        x = matching[0].args[0]
        if name == "empty batch":
            assert x.shape[0] == 0
        if name.startswith("non-contiguous"):
            assert not all(a.flags.c_contiguous for a in matching[0].args if isinstance(a, np.ndarray))
    if op == "max_pool2d":
        ties = next(c for c in cases if c.note.startswith("ties")).args[0]
        assert len(np.unique(ties)) == 2
        assert np.isnan(next(c for c in cases if c.note.startswith("NaN in")).args[0]).any()


def _arrays(cases):
    values = [v for c in cases for v in (*c.args, *c.kwargs.values())]
    return [v for v in values if isinstance(v, np.ndarray)]


def _options(cases):
    return [repr(v) for c in cases for v in (*c.args, *c.kwargs.values()) if not isinstance(v, np.ndarray)]


@pytest.mark.parametrize("op", sorted(OPS))
def test_sample_inputs_deterministic_per_seed(op):
    a, b, other = sample_inputs(op, seed=3), sample_inputs(op, seed=3), sample_inputs(op, seed=4)
    assert [c.note for c in a] == [c.note for c in b]
    assert _options(a) == _options(b)
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert any(x.shape != y.shape or not np.array_equal(x, y, equal_nan=True) for x, y in zip(_arrays(a), _arrays(other)))
    f32 = sample_inputs(op, np.float32, seed=3)
    for x, y in zip(_arrays(f32), _arrays(a)):
        assert x.dtype == (np.float32 if y.dtype == np.float64 else y.dtype)
        np.testing.assert_array_equal(x, y.astype(x.dtype))


def test_sample_inputs_errors():
    with pytest.raises(ValueError, match="sample_inputs: op: expected one of .*got 'pool'"):
        sample_inputs("pool")
    with pytest.raises(ValueError, match="sample_inputs: op: .*got 3"):
        sample_inputs(3)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got int64"):
        sample_inputs("relu", np.int64)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got 'real'"):
        sample_inputs("relu", "real")
    with pytest.raises(ValueError, match="sample_inputs: seed: expected a non-negative int, got -1"):
        sample_inputs("relu", seed=-1)


# ---- the pytest helper


@parametrize_samples("avg_pool2d", dtype=np.float32)
def test_parametrize_samples(case):
    want = ref.avg_pool2d(*case.args, **case.kwargs)
    assert_close(F.avg_pool2d(*case.args, **case.kwargs), want, np.float32, note=case.note)


def test_parametrize_samples_ids_are_the_notes():
    mark = parametrize_samples("relu", argname="sample").mark
    assert mark.args[0] == "sample"
    assert [mark.kwargs["ids"](c) for c in mark.args[1]] == [c.note for c in sample_inputs("relu")]
    with pytest.raises(ValueError, match="parametrize_samples: argname: expected an identifier, got 'a b'"):
        parametrize_samples("relu", argname="a b")
