"""The sample cases of cnnkit.testing: per op, a seeded random sweep plus named adversarial cases."""

from dataclasses import dataclass, field

import numpy as np

from .. import reference


# Relative tolerance per dtype (also the dtypes samples come in): float32 results of sums
# of a few hundred terms agree with a float64 reference to about 1e-5 relative to the largest value.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def _float_dtype(dtype, name="dtype"):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from None
    if dt not in RTOL:
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


@dataclass
class Sample:
    """One call of an op: op(*args, **kwargs).

    Attributes
    ----------
    args : tuple
        Positional arguments (the arrays, in the op's order).
    kwargs : dict
        Keyword arguments (the options).
    note : str
        The case's name, e.g. "ties in windows" or "random 3".
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    note: str = ""

    def __str__(self):
        return self.note


def _normal(rng, shape, dtype, scale=1.0, offset=0.0):
    """Normal values times scale plus offset, computed in float64 and then rounded."""
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


def _noncontig(a):
    """The same values in a non-contiguous view (the last two axes stored transposed)."""
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)


def _pair(rng, low, high):
    return (int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))


# ---- convolution family


def _conv2d(rng, dt):
    cases = []
    for i in range(6):
        groups = int(rng.integers(1, 3))
        cin, cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        k, s, p, d = _pair(rng, 1, 3), _pair(rng, 1, 2), _pair(rng, 0, 2), _pair(rng, 1, 2)
        hw = [d[a] * (k[a] - 1) + 1 + int(rng.integers(0, 5)) for a in range(2)]
        x = _normal(rng, (int(rng.integers(1, 4)), cin, *hw), dt)
        w = _normal(rng, (cout, cin // groups, *k), dt)
        b = _normal(rng, (cout,), dt) if i % 2 else None
        cases.append(Sample((x, w, b), dict(stride=s, padding=p, dilation=d, groups=groups), f"random {i}"))

    def case(note, x_shape, w_shape, bias=True, layout=None, **kw):
        x, w = _normal(rng, x_shape, dt), _normal(rng, w_shape, dt)
        if layout:
            x, w = layout(x), layout(w)
        b = _normal(rng, (w_shape[0],), dt) if bias else None
        cases.append(Sample((x, w, b), kw, note))

    case("asymmetric padding (2, 0)", (2, 3, 6, 7), (4, 3, 3, 3), padding=(2, 0))
    case("'same' padding, even kernel (uneven split)", (2, 3, 7, 6), (2, 3, 4, 2), padding="same")
    case("'same' padding with dilation", (1, 2, 9, 8), (3, 2, 3, 3), padding="same", dilation=(2, 3))
    case("dilation with stride", (2, 2, 11, 12), (3, 2, 3, 2), stride=2, dilation=(2, 3), padding=1)
    case("stride larger than the kernel", (1, 3, 10, 9), (2, 3, 2, 2), stride=3)
    case("groups", (2, 4, 6, 6), (6, 2, 3, 3), groups=2, padding=1)
    case("depthwise (groups = channels)", (2, 4, 7, 5), (8, 1, 3, 3), groups=4, padding=1, stride=(1, 2))
    case("1x1 kernel, no bias", (3, 5, 4, 4), (6, 5, 1, 1), bias=False)
    case("empty batch", (0, 3, 5, 5), (2, 3, 3, 3), padding=1)
    case("non-contiguous input and weight", (2, 3, 6, 5), (4, 3, 3, 2), layout=_noncontig, padding=(1, 0))
    return cases


def _conv_transpose2d(rng, dt):
    cases = []
    for i in range(5):
        groups = int(rng.integers(1, 3))
        cin, cout_g = groups * int(rng.integers(1, 4)), int(rng.integers(1, 4))
        k, s, d = _pair(rng, 1, 3), _pair(rng, 1, 3), _pair(rng, 1, 2)
        p = tuple(int(rng.integers(0, min(2, d[a] * (k[a] - 1)) + 1)) for a in range(2))
        op = tuple(int(rng.integers(0, max(s[a], d[a]))) for a in range(2))
        x = _normal(rng, (int(rng.integers(1, 4)), cin, *_pair(rng, 1, 5)), dt)
        w = _normal(rng, (cin, cout_g, *k), dt)
        b = _normal(rng, (cout_g * groups,), dt) if i % 2 else None
        kw = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
        cases.append(Sample((x, w, b), kw, f"random {i}"))

    def case(note, x_shape, w_shape, layout=None, **kw):
        x, w = _normal(rng, x_shape, dt), _normal(rng, w_shape, dt)
        if layout:
            x, w = layout(x), layout(w)
        cases.append(Sample((x, w, _normal(rng, (w_shape[1] * kw.get("groups", 1),), dt)), kw, note))

    case("stride with output_padding", (2, 3, 4, 5), (3, 2, 3, 3), stride=2, padding=1, output_padding=1)
    case("dilation with stride", (1, 2, 5, 4), (2, 3, 3, 2), stride=(2, 3), dilation=(2, 2), padding=(1, 2))
    case("padding crops the output", (2, 2, 5, 5), (2, 2, 4, 4), stride=1, padding=(3, 1))
    case("groups", (2, 4, 3, 4), (4, 3, 3, 3), groups=2, stride=2)
    case("empty batch", (0, 3, 4, 4), (3, 2, 3, 3), stride=2)
    case("non-contiguous input and weight", (2, 3, 4, 5), (3, 2, 2, 3), layout=_noncontig, stride=2)
    return cases


def _linear(rng, dt):
    cases = []
    for i in range(4):
        n, fin, fout = int(rng.integers(1, 6)), int(rng.integers(1, 20)), int(rng.integers(1, 10))
        b = _normal(rng, (fout,), dt) if i % 2 == 0 else None
        cases.append(Sample((_normal(rng, (n, fin), dt), _normal(rng, (fout, fin), dt), b), {}, f"random {i}"))
    cases += [
        Sample((_normal(rng, (2, 3, 7), dt), _normal(rng, (4, 7), dt), _normal(rng, (4,), dt)), {}, "3-D input"),
        Sample((_normal(rng, (0, 5), dt), _normal(rng, (3, 5), dt), _normal(rng, (3,), dt)), {}, "empty batch"),
        Sample((_normal(rng, (4, 6), dt), _noncontig(_normal(rng, (5, 6), dt)), None), {}, "non-contiguous weight"),
        Sample((_normal(rng, (3, 300), dt, 10.0), _normal(rng, (2, 300), dt), None), {}, "long dot products"),
    ]
    return cases


# ---- pooling


def _pool_sweep(rng, dt, n, dilation):
    for i in range(n):
        k = _pair(rng, 1, 3)
        s = None if i % 3 == 0 else _pair(rng, 1, 3)
        p = tuple(int(rng.integers(0, k[a] // 2 + 1)) for a in range(2))
        d = _pair(rng, 1, 2) if dilation else (1, 1)
        hw = [d[a] * (k[a] - 1) + 1 + int(rng.integers(0, 6)) for a in range(2)]
        kw = dict(stride=s, padding=p, ceil_mode=bool(i % 2))
        if dilation:
            kw["dilation"] = d
        yield i, _normal(rng, (int(rng.integers(1, 3)), int(rng.integers(1, 4)), *hw), dt), k, kw


def _max_pool2d(rng, dt):
    cases = [
        Sample((x, k), dict(kw, return_indices=True), f"random {i}") for i, x, k, kw in _pool_sweep(rng, dt, 6, True)
    ]

    def case(note, x, k, return_indices=True, **kw):
        cases.append(Sample((x, k), dict(kw, return_indices=return_indices), note))

    ties = rng.integers(0, 2, (2, 3, 7, 8)).astype(dt)
    nan = _normal(rng, (2, 2, 7, 7), dt)
    nan[rng.random(nan.shape) < 0.15] = np.nan
    nan_ties = rng.integers(0, 2, (1, 2, 8, 8)).astype(dt)
    nan_ties[rng.random(nan_ties.shape) < 0.1] = np.nan
    neg_inf = _normal(rng, (1, 2, 6, 6), dt)
    neg_inf[:, :, :3, :3] = -np.inf
    case("ties in windows (first maximum wins)", ties, 3, stride=1)
    case("constant input (every window tied)", np.full((1, 2, 5, 6), 0.5, dt), (2, 3), stride=(1, 2), padding=1)
    case("NaN in windows (NaN wins)", nan, 2, stride=1)
    case("NaN and ties", nan_ties, 3, stride=2, padding=1)
    case("-inf windows", neg_inf, 2)
    case("negative input with padding", (-np.abs(_normal(rng, (2, 2, 5, 5), np.float64)) - 1).astype(dt), 3, stride=2, padding=1)
    case("ceil_mode with padding", _normal(rng, (1, 3, 8, 7), dt), 3, stride=2, padding=1, ceil_mode=True)
    case("dilation with stride", _normal(rng, (2, 2, 11, 10), dt), 3, stride=2, dilation=(2, 3), padding=1)
    case("empty batch", _normal(rng, (0, 2, 6, 6), dt), 2)
    case("non-contiguous input", _noncontig(_normal(rng, (2, 3, 6, 7), dt)), (3, 2), stride=(2, 1))
    case("without return_indices", _normal(rng, (2, 2, 6, 6), dt), 2, return_indices=False)
    return cases


def _max_unpool2d(rng, dt):
    def case(note, x_shape, k, stride=None, padding=0, output_size=None, layout=None, duplicates=False):
        x = _normal(rng, x_shape, dt)
        pooled, switches = reference.max_pool2d(x, k, stride, padding, return_indices=True)
        if duplicates:
            switches = rng.integers(0, 4, switches.shape)
        y = pooled.astype(dt)
        kw = dict(stride=stride, padding=padding, output_size=output_size)
        return Sample((layout(y) if layout else y, switches, k), kw, note)

    return [
        case("random 0", (2, 3, 6, 6), 2),
        case("random 1", (1, 2, 9, 7), 3, stride=2, padding=1),
        case("output_size larger than the default", (2, 2, 7, 7), 2, output_size=(7, 7)),
        case("output_size with batch and channels", (1, 3, 6, 8), (2, 3), stride=(2, 2), output_size=(1, 3, 7, 8)),
        case("duplicate switches (last wins)", (2, 2, 4, 4), 2, duplicates=True),
        case("empty batch", (0, 2, 6, 6), 2),
        case("non-contiguous input", (2, 3, 8, 6), 2, layout=_noncontig),
    ]


def _lp_pool2d(rng, dt):
    cases = []
    for i, p in enumerate((2.0, 1.0, 3.0)):
        x = _normal(rng, (2, int(rng.integers(1, 4)), *_pair(rng, 4, 8)), dt)
        k = _pair(rng, 1, 3)
        cases.append(Sample((x, p, k), dict(stride=None if i == 0 else _pair(rng, 1, 2), ceil_mode=bool(i % 2)), f"random {i}"))
    cases += [
        Sample((_normal(rng, (2, 2, 6, 6), dt), np.inf, 2), {}, "norm_type inf (max of |x|)"),
        Sample((np.abs(_normal(rng, (1, 2, 7, 7), dt)), 2.0, 3), dict(stride=2, ceil_mode=True), "ceil_mode"),
        Sample((_normal(rng, (0, 2, 6, 6), dt), 2.0, 2), {}, "empty batch"),
        Sample((_noncontig(_normal(rng, (2, 3, 6, 7), dt)), 2.0, (2, 3)), dict(stride=1), "non-contiguous input"),
    ]
    return cases


def _avg_pool2d(rng, dt):
    cases = []
    for i, x, k, kw in _pool_sweep(rng, dt, 5, False):
        cases.append(Sample((x, k), dict(kw, count_include_pad=bool(i % 2 == 0)), f"random {i}"))

    def case(note, shape, k, layout=None, **kw):
        x = _normal(rng, shape, dt)
        cases.append(Sample((layout(x) if layout else x, k), kw, note))

    case("padding counted in the divisor", (2, 2, 6, 5), 3, stride=2, padding=1, count_include_pad=True)
    case("padding left out of the divisor", (2, 2, 6, 5), 3, stride=2, padding=1, count_include_pad=False)
    case("ceil_mode with padding", (1, 3, 7, 8), 3, stride=2, padding=1, ceil_mode=True)
    case("ceil_mode, padding left out", (1, 3, 7, 8), (3, 2), stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    case("stride larger than the kernel", (2, 1, 9, 9), 2, stride=3)
    case("empty batch", (0, 2, 6, 6), 2)
    case("non-contiguous input", (2, 3, 6, 7), (2, 3), layout=_noncontig, stride=1, padding=1)
    return cases


# ---- activations, softmax family, losses


def _elementwise(rng, dt):
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e4, -1e4], dt)
    return [
        Sample((_normal(rng, (3, 4), dt),), {}, "random 0"),
        Sample((_normal(rng, (2, 3, 4, 5), dt, 3.0),), {}, "random 1"),
        Sample((special,), {}, "NaN, infinities, signed zeros and extreme values"),
        Sample((_normal(rng, (0, 4), dt),), {}, "empty batch"),
        Sample((_noncontig(_normal(rng, (2, 3, 5, 4), dt)),), {}, "non-contiguous input"),
    ]


def _softmax(rng, dt):
    cases = [
        Sample((_normal(rng, shape, dt, 3.0),), dict(dim=dim), f"random {i}")
        for i, (shape, dim) in enumerate((((4, 7), -1), ((2, 3, 4, 5), 1), ((5, 3), 0), ((3, 4, 6), -2)))
    ]
    nan = _normal(rng, (3, 5), dt)
    nan[1, 2] = np.nan
    some_inf = _normal(rng, (3, 5), dt)
    some_inf[:, 0] = -np.inf
    cases += [
        Sample((_normal(rng, (4, 6), dt, 50.0, 1e4),), dict(dim=1), "huge logits (overflow without the max shift)"),
        Sample((_normal(rng, (4, 6), dt, 50.0, -1e4),), dict(dim=1), "huge negative logits"),
        Sample((some_inf,), dict(dim=1), "-inf logits"),
        Sample((nan,), dict(dim=1), "NaN in one row"),
        Sample((_normal(rng, (4, 1), dt),), dict(dim=1), "a single class"),
        Sample((_normal(rng, (0, 5), dt),), dict(dim=1), "empty batch"),
        Sample((_noncontig(_normal(rng, (2, 3, 6, 5), dt)),), dict(dim=1), "non-contiguous input"),
    ]
    return cases


def _cross_entropy(rng, dt):
    cases = []
    for i, reduction in enumerate(("mean", "sum", "none", "mean")):
        n, c = int(rng.integers(1, 9)), int(rng.integers(2, 12))
        x, t = _normal(rng, (n, c), dt, 3.0), rng.integers(0, c, n)
        cases.append(Sample((x, t), dict(reduction=reduction), f"random {i}"))
    huge = _normal(rng, (5, 7), dt, 100.0, 1e4)
    cases += [
        Sample((huge, rng.integers(0, 7, 5)), dict(reduction="none"), "huge logits (overflow without the max shift)"),
        Sample((huge, np.argmin(huge, axis=1)), dict(reduction="mean"), "huge logits, target the smallest"),
        Sample((_normal(rng, (4, 1), dt), np.zeros(4, np.int64)), dict(reduction="sum"), "a single class"),
        Sample((_normal(rng, (0, 5), dt), np.zeros(0, np.int64)), dict(reduction="sum"), "empty batch, sum"),
        Sample((_noncontig(_normal(rng, (6, 4), dt)), rng.integers(0, 4, 6)), dict(reduction="mean"), "non-contiguous logits"),
    ]
    return cases


def _mse_loss(rng, dt):
    cases = [
        Sample((_normal(rng, (4, 5), dt), _normal(rng, (4, 5), dt)), dict(reduction=r), f"random {i}")
        for i, r in enumerate(("mean", "sum", "none"))
    ]
    cases += [
        Sample((_normal(rng, (0, 3), dt), _normal(rng, (0, 3), dt)), dict(reduction="sum"), "empty batch, sum"),
        Sample((_noncontig(_normal(rng, (2, 3, 4), dt)), _normal(rng, (2, 3, 4), dt)), dict(reduction="mean"), "non-contiguous input"),
    ]
    return cases


# ---- normalisation


def _batch_norm(rng, dt):
    def case(note, x, affine=True, running=True, **kw):
        c = x.shape[1]
        if affine:
            args = (x, _normal(rng, (c,), dt), _normal(rng, (c,), dt))
        else:
            args = (x, None, None)
        if running:
            kw = dict(kw, running_mean=_normal(rng, (c,), dt), running_var=(rng.random(c) + 0.5).astype(dt))
        return Sample(args, kw, note)

    cases = [case(f"random {i}", _normal(rng, (int(rng.integers(2, 5)), int(rng.integers(1, 5)), 3, 4), dt)) for i in range(3)]
    constant = _normal(rng, (3, 2, 3, 3), dt)
    constant[:, 1] = 2.5
    cases += [
        case("training without affine", _normal(rng, (4, 3, 2, 2), dt), affine=False),
        case("training without running statistics", _normal(rng, (3, 2, 4, 4), dt), running=False),
        case("eval (running statistics)", _normal(rng, (2, 3, 3, 3), dt), training=False),
        case("a constant channel (zero variance)", constant),
        case("offset channels (mean 100)", _normal(rng, (4, 2, 5, 5), dt, 1.0, 100.0)),
        case("momentum 0.5, eps 1e-3", _normal(rng, (2, 3, 3, 2), dt), momentum=0.5, eps=1e-3),
        case("a batch of one", _normal(rng, (1, 3, 4, 4), dt)),
        case("non-contiguous input", _noncontig(_normal(rng, (3, 2, 4, 5), dt))),
    ]
    return cases


def _dropout(rng, dt):
    def case(note, x, p, training=True):
        return Sample((x,), dict(p=p, training=training, seed=int(rng.integers(0, 2**63))), note)

    special = np.tile(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 30.0, -1e4], dt), 8)
    return [
        case("random 0", _normal(rng, (3, 4), dt), 0.5),
        case("random 1", _normal(rng, (2, 3, 4, 5), dt), 0.2),
        case("random 2", _normal(rng, (7,), dt), 0.8),
        case("p = 0 (nothing dropped)", _normal(rng, (4, 6), dt), 0.0),
        case("large p (0.95)", _normal(rng, (5, 40), dt), 0.95),
        case("NaN and infinities (dropped as x * 0: NaN stays NaN)", special, 0.5),
        case("eval mode (the identity, no mask)", _normal(rng, (3, 5), dt), 0.5, training=False),
        case("many elements (the share kept is 1 - p)", _normal(rng, (64, 100), dt), 0.3),
        case("empty batch", _normal(rng, (0, 5), dt), 0.5),
        case("non-contiguous input", _noncontig(_normal(rng, (2, 3, 5, 4), dt)), 0.4),
    ]


def _local_response_norm(rng, dt):
    cases = [
        Sample((_normal(rng, (2, int(rng.integers(1, 8)), 3, 3), dt, 2.0), size), {}, f"random {i}")
        for i, size in enumerate((1, 3, 5))
    ]

    def case(note, shape, size, layout=None, **kw):
        x = _normal(rng, shape, dt, 2.0)
        cases.append(Sample((layout(x) if layout else x, size), kw, note))

    case("even size (window uneven about the channel)", (2, 6, 3, 3), 4)
    case("size larger than the channels", (2, 3, 2, 2), 7)
    case("strong normalisation (alpha 1)", (2, 5, 3, 3), 3, alpha=1.0, beta=0.75, k=1.0)
    case("k 2, beta 0.5", (1, 4, 3, 3), 2, alpha=0.5, beta=0.5, k=2.0)
    case("empty batch", (0, 4, 3, 3), 3)
    case("non-contiguous input", (2, 5, 3, 4), 3, layout=_noncontig, alpha=0.3)
    return cases


# ---- per-op specification


@dataclass
class _Spec:
    make: object  # (rng, dtype) -> [Sample]
    backward_args: object  # (case, grad, reference forward, fn's result) -> (args, kwargs)
    actual: object = None  # (result, case) -> the outputs to compare; default: the result's
    expected: object = None  # (case, fn's result) -> the reference outputs, where they depend on fn's result
    reference_grads: object = None  # (case, grad) -> the reference gradients, where its backward's arguments differ


def _to_numpy(a):
    """a as a NumPy array: CuPy arrays through .get(), torch tensors through .cpu()."""
    if hasattr(a, "get") and hasattr(a, "__cuda_array_interface__"):
        a = a.get()
    elif hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _second(result, what):
    """The second result of fn (batch_norm's saved, dropout's mask)."""
    if not isinstance(result, (tuple, list)) or len(result) < 2:
        raise AssertionError(f"gave 1 result, expected 2 (y, {what})")
    return result[1]


def _first(result, case):
    return (result[0] if isinstance(result, (tuple, list)) else result,)


def _bn_actual(result, case):
    return _first(result, case) + tuple(case.kwargs[k] for k in ("running_mean", "running_var") if k in case.kwargs)


def _bn_grads(case, grad):
    x, gamma, beta = case.args
    kw = {k: case.kwargs[k] for k in ("training", "eps", "running_mean", "running_var") if k in case.kwargs}
    gx, g_gamma, g_beta = reference.batch_norm_grads(grad, x, gamma, **kw)
    return gx, None if gamma is None else g_gamma, None if beta is None else g_beta


def _dropout_mask(case, result):
    """fn's mask as a NumPy array: bool, of the input's shape (None in eval mode), and
    on a large input keeping 1 - p of the elements to within 6 standard deviations."""
    x, p = case.args[0], case.kwargs["p"]
    if not case.kwargs["training"]:
        mask = result[1] if isinstance(result, (tuple, list)) and len(result) > 1 else None
        if mask is not None:
            raise AssertionError(f"eval mode gave a mask of type {type(mask).__name__}, expected None")
        return None
    mask = _to_numpy(_second(result, "mask"))
    if mask.dtype != np.bool_ or mask.shape != x.shape:
        raise AssertionError(f"mask: {mask.dtype} of shape {mask.shape}, expected bool of shape {x.shape}")
    if mask.size >= 1000:
        kept, sd = mask.mean(), np.sqrt(p * (1 - p) / mask.size)
        if abs(kept - (1 - p)) > 6 * sd:
            raise AssertionError(f"mask keeps {kept:.4f} of {mask.size} elements, expected 1 - p = {1 - p:g}")
    return mask


def _grad_x(case, grad, *_):
    return (grad, *case.args), case.kwargs


def _grad_y(case, grad, ref, _):
    return (grad, np.asarray(ref(*case.args, **case.kwargs), grad.dtype)), case.kwargs


def _max_pool_back(case, grad, ref, _):
    kwargs = dict(case.kwargs, return_indices=True)
    return (grad, ref(*case.args, **kwargs)[1], case.args[0].shape), {}


OPS = {
    "conv2d": _Spec(_conv2d, lambda c, g, *_: ((g, *c.args[:2]), c.kwargs)),
    "conv_transpose2d": _Spec(_conv_transpose2d, lambda c, g, *_: ((g, *c.args[:2]), c.kwargs)),
    "linear": _Spec(_linear, lambda c, g, *_: ((g, *c.args[:2]), {})),
    "max_pool2d": _Spec(_max_pool2d, _max_pool_back),
    "max_unpool2d": _Spec(_max_unpool2d, lambda c, g, *_: ((g, c.args[1]), {})),
    "lp_pool2d": _Spec(_lp_pool2d, _grad_x),
    "avg_pool2d": _Spec(_avg_pool2d, lambda c, g, *_: ((g, c.args[0].shape, *c.args[1:]), c.kwargs)),
    "relu": _Spec(_elementwise, _grad_x),
    "sigmoid": _Spec(_elementwise, _grad_y),
    "tanh": _Spec(_elementwise, _grad_y),
    "softmax": _Spec(_softmax, _grad_y),
    "log_softmax": _Spec(_softmax, _grad_y),
    "cross_entropy": _Spec(_cross_entropy, lambda c, *_: (c.args, c.kwargs)),
    "mse_loss": _Spec(_mse_loss, lambda c, *_: (c.args, c.kwargs)),
    "dropout": _Spec(
        _dropout,
        lambda c, g, _, got: ((g, _dropout_mask(c, got), c.kwargs["p"]), {}),
        _first,
        lambda c, got: (reference.dropout(c.args[0], _dropout_mask(c, got), c.kwargs["p"]),),
    ),
    "batch_norm": _Spec(
        _batch_norm, lambda c, g, _, got: ((g, _second(got, "saved")), {}), _bn_actual, reference_grads=_bn_grads
    ),
    "local_response_norm": _Spec(_local_response_norm, _grad_x),
}


def sample_inputs(op, dtype=np.float64, seed=0):
    """The sample cases of an op of cnnkit.functional.

    Parameters
    ----------
    op : str
        The op's name: conv2d, conv_transpose2d, linear, max_pool2d, max_unpool2d,
        avg_pool2d, lp_pool2d, relu, sigmoid, tanh, softmax, log_softmax, cross_entropy, mse_loss,
        dropout, batch_norm or local_response_norm.
    dtype : float32 or float64, optional
        The dtype of the float arrays (targets stay int64).
    seed : int, optional
        Seeds the random values; one seed gives the same cases, and float32 cases
        hold float64's values rounded.

    Returns
    -------
    list of Sample
        A random sweep ("random 0", ...) then named adversarial cases: ties and NaN
        in pooling windows, asymmetric and 'same' padding, dilation with stride,
        groups, empty batches, non-contiguous views, huge logits.
    """
    spec = OPS.get(op) if isinstance(op, str) else None
    if spec is None:
        raise ValueError(f"sample_inputs: op: expected one of {', '.join(sorted(OPS))}, got {op!r}")
    dt = _float_dtype(dtype).type
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"sample_inputs: seed: expected a non-negative int, got {seed!r}")
    with np.errstate(invalid="ignore", over="ignore"):
        return spec.make(np.random.default_rng(seed), dt)
