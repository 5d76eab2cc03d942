"""cnnkit's functional API: NumPy arrays in, new C-contiguous arrays out.

Signatures and semantics follow torch.nn.functional. Every op has an explicit
backward. Arguments are normalised here and validated once, in C++.
"""

import numpy as np

from . import _C
from ._args import conv_padding, groups as _groups, pair, weight_kernel_hw

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "linear",
    "linear_backward",
]


def _conv_args(weight, stride, padding, dilation, groups, op):
    stride = pair(stride, op, "stride")
    dilation = pair(dilation, op, "dilation")
    pad = conv_padding(padding, weight_kernel_hw(weight, op), stride, dilation, op)
    return stride, pad, dilation, _groups(groups, op)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of NCHW input with OIHW weight."""
    return _C.conv2d(input, weight, bias, *_conv_args(weight, stride, padding, dilation, groups, "conv2d"))


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
