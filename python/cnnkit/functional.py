"""cnnkit's functional API: NumPy arrays in, new C-contiguous arrays out.

Signatures and semantics follow torch.nn.functional. Every op has an explicit
backward. Arguments are normalised here and validated once, in C++.
"""

from typing import NamedTuple, Optional

import numpy as np

from . import _C, _random
from ._args import conv_padding, groups as _groups, integer as _int, ints as _ints, pair, real as _real
from ._args import reduction as _reduction, weight_kernel_hw

__all__ = [
    "conv2d",
    "conv2d_algorithm",
    "conv_transpose2d_algorithm",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "linear",
    "linear_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "lp_pool2d",
    "lp_pool2d_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "mse_loss",
    "mse_loss_backward",
    "dropout",
    "dropout_backward",
    "batch_norm",
    "batch_norm_backward",
    "local_response_norm",
    "local_response_norm_backward",
]


def _conv_args(weight, stride, padding, dilation, groups, op):
    stride = pair(stride, op, "stride")
    dilation = pair(dilation, op, "dilation")
    pad = conv_padding(padding, weight_kernel_hw(weight, op), stride, dilation, op)
    return stride, pad, dilation, _groups(groups, op)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of NCHW input with OIHW weight."""
    return _C.conv2d(input, weight, bias, *_conv_args(weight, stride, padding, dilation, groups, "conv2d"))


def conv2d_algorithm(input, weight, stride=1, padding=0, dilation=1, groups=1):
    """The kernel conv2d runs for these operands and arguments: 'direct' (vectorised
    loops over each plane: depthwise and tiny layers), 'winograd' (3x3, 4x4 and 5x5
    layers with 16 or more channels per group; strided ones whose kernel has 3, 4 or 5
    taps per stride phase; see the README for when it pays) or 'gemm' (im2col, or the
    image itself for 1x1, times OpenBLAS). A 'winograd' call whose input or weight holds a NaN or an infinity runs
    gemm instead, so that they reach only the outputs whose windows hold them.
    conv2d_backward's input gradient takes conv_transpose2d's path for grad_output."""
    args = _conv_args(weight, stride, padding, dilation, groups, "conv2d_algorithm")
    return _C.conv2d_algorithm(input, weight, *args)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of conv2d: (grad_input, grad_weight, grad_bias)."""
    args = _conv_args(weight, stride, padding, dilation, groups, "conv2d_backward")
    return _C.conv2d_backward(grad_output, input, weight, *args)


def _conv_transpose_args(stride, padding, output_padding, groups, dilation, op):
    return (
        pair(stride, op, "stride"),
        pair(padding, op, "padding"),
        pair(output_padding, op, "output_padding"),
        _groups(groups, op),
        pair(dilation, op, "dilation"),
    )


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution; weight is (C_in, C_out/groups, kH, kW)."""
    args = _conv_transpose_args(stride, padding, output_padding, groups, dilation, "conv_transpose2d")
    return _C.conv_transpose2d(input, weight, bias, *args)


def conv_transpose2d_algorithm(input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The kernel conv_transpose2d runs for these operands and arguments, named as by
    conv2d_algorithm: 'winograd' runs the stride-1 convolution of its stacked output
    phases (groups 1, dilation 1, a kernel of 2 to 5 taps per stride phase).
    conv_transpose2d_backward's input gradient takes conv2d's path for grad_output."""
    args = _conv_transpose_args(stride, padding, output_padding, groups, dilation, "conv_transpose2d_algorithm")
    return _C.conv_transpose2d_algorithm(input, weight, *args)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Gradients of conv_transpose2d: (grad_input, grad_weight, grad_bias)."""
    args = _conv_transpose_args(stride, padding, output_padding, groups, dilation, "conv_transpose2d_backward")
    return _C.conv_transpose2d_backward(grad_output, input, weight, *args)


def _flatten_batch(x):
    """(..., in) -> (N, in), as torch's linear accepts any leading dims.

    Returns the 2-D view and the leading shape, or (x, None) when x needs no reshaping
    (2-D, or not an array: C++ reports those).
    """
    if isinstance(x, np.ndarray) and x.ndim != 2 and x.ndim >= 1:
        return x.reshape(-1, x.shape[-1]), x.shape[:-1]
    return x, None


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias; weight is (out_features, in_features)."""
    x, lead = _flatten_batch(input)
    y = _C.linear(x, weight, bias)
    return y if lead is None else y.reshape(*lead, y.shape[-1])


def linear_backward(grad_output, input, weight):
    """Gradients of linear: (grad_input, grad_weight, grad_bias)."""
    x, lead = _flatten_batch(input)
    g = grad_output
    if lead is not None and isinstance(g, np.ndarray):
        if g.ndim < 1 or g.shape[:-1] != lead:
            raise ValueError(
                f"linear_backward: grad_output: expected shape {(*lead, 'out_features')} to match the input's "
                f"leading dims, got shape {g.shape}"
            )
        g = g.reshape(-1, g.shape[-1])
    gx, gw, gb = _C.linear_backward(g, x, weight)
    return (gx if lead is None else gx.reshape(input.shape)), gw, gb


# ---- Pooling (NCHW). Switches are int64 flat indices h * W + w within each (n, c) plane.


def _pool_args(kernel_size, stride, op):
    """(kernel, stride) pairs; stride None (or empty, as torch accepts) means kernel_size."""
    kernel = pair(kernel_size, op, "kernel_size")
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel, kernel
    return kernel, pair(stride, op, "stride")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling; padding is -inf. With return_indices, returns (output, switches): the
    first maximum of each window in row-major order wins ties, and NaN wins (the last one)."""
    op = "max_pool2d"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _C.max_pool2d(
        input, kernel, stride, pair(padding, op, "padding"), pair(dilation, op, "dilation"),
        bool(ceil_mode), bool(return_indices),
    )


def max_pool2d_backward(grad_output, switches, input_shape):
    """Gradient of max_pool2d: grad_output scattered (added) to the inputs the switches name."""
    op = "max_pool2d_backward"
    return _C.max_pool2d_backward(grad_output, switches, _ints(input_shape, op, "input_shape"))


def max_unpool2d(input, switches, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d: zeros with input written where the switches point.
    output_size is (H, W) or (N, C, H, W), by default (H_in - 1) * stride - 2 * padding + kernel_size."""
    op = "max_unpool2d"
    kernel, stride = _pool_args(kernel_size, stride, op)
    size = None if output_size is None else _ints(output_size, op, "output_size")
    return _C.max_unpool2d(input, switches, kernel, stride, pair(padding, op, "padding"), size)


def max_unpool2d_backward(grad_output, switches):
    """Gradient of max_unpool2d: grad_output gathered at the switches."""
    return _C.max_unpool2d_backward(grad_output, switches)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling with torch's divisors (see count_include_pad there)."""
    op = "avg_pool2d"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _C.avg_pool2d(input, kernel, stride, pair(padding, op, "padding"), bool(ceil_mode), bool(count_include_pad))


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of avg_pool2d with respect to its input, of shape input_shape."""
    op = "avg_pool2d_backward"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _C.avg_pool2d_backward(
        grad_output, _ints(input_shape, op, "input_shape"), kernel, stride, pair(padding, op, "padding"),
        bool(ceil_mode), bool(count_include_pad),
    )


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling as torch computes it: (avg_pool2d(x^p) * kH * kW)^(1/p);
    norm_type inf gives the max of |x|, -inf the min of |x|."""
    op = "lp_pool2d"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _C.lp_pool2d(input, _real(norm_type, op, "norm_type"), kernel, stride, bool(ceil_mode))


def lp_pool2d_backward(grad_output, input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Gradient of lp_pool2d; windows whose power sum is zero pass no gradient, as in torch."""
    op = "lp_pool2d_backward"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _C.lp_pool2d_backward(grad_output, input, _real(norm_type, op, "norm_type"), kernel, stride, bool(ceil_mode))


# ---- Activations (any shape)


def relu(input):
    """max(x, 0) elementwise; NaN stays NaN."""
    return _C.relu(input)


def relu_backward(grad_output, input):
    """grad_output where input > 0 (or NaN), else 0, as torch's threshold_backward."""
    return _C.relu_backward(grad_output, input)


def sigmoid(input):
    """1 / (1 + e^-x), stable for large |x|."""
    return _C.sigmoid(input)


def sigmoid_backward(grad_output, output):
    """grad_output * y * (1 - y), where output y is sigmoid's result."""
    return _C.sigmoid_backward(grad_output, output)


def tanh(input):
    """Hyperbolic tangent elementwise, accurate near 0 (through expm1)."""
    return _C.tanh(input)


def tanh_backward(grad_output, output):
    """grad_output * (1 - y^2), where output y is tanh's result."""
    return _C.tanh_backward(grad_output, output)


# ---- Softmax and losses


def softmax(input, dim=-1):
    """Softmax along dim of an array of any rank; out-of-range dim raises IndexError."""
    return _C.softmax(input, _int(dim, "softmax", "dim"))


def log_softmax(input, dim=-1):
    """log(softmax(x)) along dim, computed as (x - max) - log(sum(exp(x - max)))."""
    return _C.log_softmax(input, _int(dim, "log_softmax", "dim"))


def softmax_backward(grad_output, output, dim=-1):
    """Gradient of softmax given its output y: y * (g - sum(g * y)) along dim."""
    return _C.softmax_backward(grad_output, output, _int(dim, "softmax_backward", "dim"))


def log_softmax_backward(grad_output, output, dim=-1):
    """Gradient of log_softmax given its output y: g - exp(y) * sum(g) along dim."""
    return _C.log_softmax_backward(grad_output, output, _int(dim, "log_softmax_backward", "dim"))


def cross_entropy(input, target, reduction="mean"):
    """Softmax cross-entropy of logits input (N, C) against class indices target (N,),
    of any integer dtype, each in [0, C) (there is no ignore_index).

    reduction 'none' gives the (N,) losses; 'mean' and 'sum' give a 0-d array of the
    input's dtype (as torch gives a 0-d tensor; float() it for a Python number). The
    mean of an empty batch is NaN.
    """
    return _C.cross_entropy(input, target, _reduction(reduction, "cross_entropy"))


def cross_entropy_backward(input, target, reduction="mean"):
    """Gradient of cross_entropy with respect to the logits for an upstream gradient of
    1 (ones for 'none'): softmax(input) - onehot(target), divided by N for 'mean'."""
    return _C.cross_entropy_backward(input, target, _reduction(reduction, "cross_entropy_backward"))


def mse_loss(input, target, reduction="mean"):
    """Squared error; target has input's shape exactly. 'mean' and 'sum' give a 0-d array."""
    return _C.mse_loss(input, target, _reduction(reduction, "mse_loss"))


def mse_loss_backward(input, target, reduction="mean"):
    """Gradient of mse_loss with respect to input: 2 (input - target), divided by the
    element count for 'mean'."""
    return _C.mse_loss_backward(input, target, _reduction(reduction, "mse_loss_backward"))


# ---- Dropout and normalisation


def dropout(input, p=0.5, training=True, seed=None):
    """Inverted dropout: returns (y, mask).

    In training each element is kept with probability 1 - p (0 <= p < 1) and scaled by
    1 / (1 - p); mask is a bool array, True where the element was kept. The mask is a
    function of seed and the element's flat index only: the same seed gives the same
    mask for any thread count and either dtype. seed=None draws one from cnnkit's
    random stream (cnnkit.manual_seed). In eval mode (training=False) y is a copy of
    input and mask is None.
    """
    training = bool(training)
    if training and seed is None:
        seed = _random.next_seed()
    return _C.dropout(input, _real(p, "dropout", "p"), training, seed)


def dropout_backward(grad_output, mask, p):
    """Gradient of dropout: grad_output * mask / (1 - p); a copy of grad_output when
    mask is None (eval mode)."""
    return _C.dropout_backward(grad_output, mask, _real(p, "dropout_backward", "p"))


class BatchNormSaved(NamedTuple):
    """What batch_norm_backward needs from batch_norm's forward; treat it as opaque."""

    input: np.ndarray  # the C-contiguous input
    gamma: Optional[np.ndarray]
    mean: np.ndarray  # float64 (C,): the statistics used (the batch's in training, else the running ones)
    invstd: np.ndarray  # float64 (C,): 1 / sqrt(var + eps)
    training: bool
    has_beta: bool


def batch_norm(input, gamma=None, beta=None, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
    """Batch norm of input (N, C, ...) per channel; returns (y, saved).

    training=True normalises with the batch's mean and biased variance and, where
    running_mean/running_var are given, updates them in place as torch does:
    r = (1 - momentum) * r + momentum * stat, with the unbiased variance for
    running_var. They must then be writeable C-contiguous arrays of input's dtype.
    training=False normalises with the running stats, which are then required.
    gamma and beta (C,) may be None (scale 1, shift 0). saved is a BatchNormSaved for
    batch_norm_backward.
    """
    training = bool(training)
    y, x, mean, invstd = _C.batch_norm(
        input,
        gamma,
        beta,
        running_mean,
        running_var,
        training,
        _real(momentum, "batch_norm", "momentum"),
        _real(eps, "batch_norm", "eps"),
    )
    return y, BatchNormSaved(x, gamma, mean, invstd, training, beta is not None)


def batch_norm_backward(grad_output, saved):
    """Gradients of batch_norm: (grad_input, grad_gamma, grad_beta); grad_gamma and
    grad_beta are None where gamma and beta were None. In eval mode the statistics
    are constants and the gradient is that of the affine map."""
    if not isinstance(saved, BatchNormSaved):
        raise TypeError(f"batch_norm_backward: saved: expected the BatchNormSaved from batch_norm, got {type(saved).__name__}")
    return _C.batch_norm_backward(
        grad_output, saved.input, saved.gamma, saved.mean, saved.invstd, saved.training, saved.has_beta
    )


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Cross-channel LRN of input (N, C, ...), as torch:
    y = x / (k + alpha / size * sum of x^2 over channels [c - size//2, c + (size-1)//2]) ^ beta.
    """
    op = "local_response_norm"
    return _C.local_response_norm(
        input, _int(size, op, "size"), _real(alpha, op, "alpha"), _real(beta, op, "beta"), _real(k, op, "k")
    )


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of local_response_norm with respect to input."""
    op = "local_response_norm_backward"
    return _C.local_response_norm_backward(
        grad_output,
        input,
        _int(size, op, "size"),
        _real(alpha, op, "alpha"),
        _real(beta, op, "beta"),
        _real(k, op, "k"),
    )
