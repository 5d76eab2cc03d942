"""cnnkit's functional API: stateless CNN ops on NumPy arrays, each with an explicit backward.

Signatures and semantics follow ``torch.nn.functional``. Python normalises the
arguments (ints, pairs, padding strings); shapes and values are validated once,
in C++, and every kernel releases the GIL and runs on cnnkit's thread pool.

Conventions shared by every op:

- Float operands are ``numpy.ndarray`` of float32 or float64, and every float
  operand of one call has the same dtype. Other operands: pooling switches are
  int64, cross-entropy targets any integer dtype, dropout masks bool.
- Images are NCHW and must be 4-D. Convolution weights are OIHW,
  ``(C_out, C_in / groups, kH, kW)``; transposed-convolution weights are
  ``(C_in, C_out / groups, kH, kW)``, as in PyTorch.
- ``kernel_size``, ``stride``, ``padding``, ``dilation`` and ``output_padding``
  each take an int or an ``(h, w)`` pair (tuple or list) of ints; a sequence
  of another length raises ``ValueError``.
- Non-contiguous and Fortran-ordered inputs are accepted. Results are new
  C-contiguous arrays of the operands' dtype; no operand is modified, except the
  running statistics that ``batch_norm`` updates in place.
- An empty batch (N = 0) gives an empty result of the right shape.
- ``TypeError``: an operand is not an ndarray or has an unsupported dtype, float
  operands' dtypes differ, or an argument has the wrong Python type (e.g. a float
  or a bool where an int is expected). ``ValueError``: a shape or value that does
  not fit, including an int outside the int64 range; the message names the op and
  the argument and says what was expected. ``softmax``-family ``dim`` out of range
  raises ``IndexError``.
"""

import math
from typing import NamedTuple, Optional

import numpy as np

from . import _C, _dispatch, _random
from ._args import conv_padding, groups as _groups, integer as _int, ints as _ints, pair, real as _real
from ._args import boolean as _bool, choice as _choice, output_mask as _output_mask, reduction as _reduction
from ._args import weight_kernel_hw

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
    """2-D convolution (cross-correlation, as in PyTorch) of an NCHW batch.
    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): CUDA operands run on the GPU and give CuPy results on their device.

    Parameters
    ----------
    input : ndarray, shape (N, C_in, H, W)
        float32 or float64.
    weight : ndarray, shape (C_out, C_in / groups, kH, kW)
        OIHW filters of input's dtype, kH and kW >= 1.
    bias : ndarray, shape (C_out,), optional
        Added to every output position of its channel; None for no bias.
    stride : int or (int, int), default 1
        Step between windows; positive.
    padding : int or (int, int) or {'valid', 'same'}, default 0
        Zero padding on both sides of each axis; non-negative. 'valid' is 0.
        'same' (stride 1 only) pads ``dilation * (k - 1)`` in total per axis so that
        the output has the input's size; an odd total puts the extra row or column
        at the bottom or right, as PyTorch does.
    dilation : int or (int, int), default 1
        Spacing between kernel taps; positive.
    groups : int, default 1
        Positive divisor of C_in and C_out: each of the groups convolves C_in / groups
        input channels into C_out / groups output channels (groups = C_in with
        C_in / groups = 1 is depthwise).

    Returns
    -------
    ndarray, shape (N, C_out, H_out, W_out)
        Of input's dtype, where, with pad_top = pad_bottom = padding[0] and
        pad_left = pad_right = padding[1] unless padding is 'same'::

            H_out = floor((H + pad_top + pad_bottom - dilation[0] * (kH - 1) - 1) / stride[0]) + 1
            W_out = floor((W + pad_left + pad_right - dilation[1] * (kW - 1) - 1) / stride[1]) + 1

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
    ValueError
        input or weight is not 4-D; weight.shape[1] * groups != C_in; groups is not a
        positive divisor of C_in and of C_out; bias is not (C_out,); the kernel is
        empty; stride or dilation is not positive or padding is negative; padding is
        a string other than 'valid' and 'same', or 'same' with a stride other than 1;
        the dilated kernel is larger than the padded input (H_out or W_out < 1).

    See Also
    --------
    conv2d_backward, conv2d_algorithm, conv_transpose2d

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> x = np.ones((2, 3, 32, 32), np.float32)
    >>> w = np.ones((8, 3, 5, 5), np.float32)
    >>> F.conv2d(x, w, stride=2, padding=2).shape
    (2, 8, 16, 16)
    >>> F.conv2d(x, w, padding='same').shape
    (2, 8, 32, 32)
    >>> F.conv2d(x, np.ones((6, 1, 3, 3), np.float32), groups=3).shape  # depthwise, multiplier 2
    (2, 6, 30, 30)
    """
    stride, padding, dilation, groups = _conv_args(weight, stride, padding, dilation, groups, "conv2d")
    return _dispatch.call(
        "conv2d", _C.conv2d, input=input, weight=weight, bias=bias, stride=stride, padding=padding,
        dilation=dilation, groups=groups,
    )


def conv2d_algorithm(input, weight, stride=1, padding=0, dilation=1, groups=1, grad=None):
    """The kernel conv2d runs for these operands and arguments, or one of its gradients.

    'direct': vectorised loops over each plane (depthwise and tiny layers).
    'winograd': 3x3, 4x4 and 5x5 layers with 16 or more channels per group, and
    strided ones whose kernel has 2 to 5 taps per stride phase (see the README for
    when it pays). 'gemm': im2col (or the image itself for 1x1) times the sgemm
    (cnnkit.get_sgemm_kernel).

    The choice depends on the shapes, the dtype, the arguments, the workspace size
    (cnnkit.set_workspace_bytes) and the sgemm kernel, never on the values: a call
    that would run 'winograd' but whose operands hold a NaN or an infinity runs gemm
    instead, so that they reach only the outputs whose windows hold them.
    conv2d_backward's input gradient takes conv_transpose2d's path for grad_output,
    and its weight gradient conv2d's (on 'winograd', in the transform domain).

    Parameters
    ----------
    input : ndarray, shape (N, C_in, H, W)
        float32 or float64; only its shape and dtype are used.
    weight : ndarray, shape (C_out, C_in / groups, kH, kW)
        Of input's dtype; only its shape is used.
    stride, padding, dilation, groups
        As for conv2d (padding may be 'valid' or 'same').
    grad : {None, 'input', 'weight'}, default None
        None: the forward's kernel; 'input' or 'weight': that gradient's in
        conv2d_backward.

    Returns
    -------
    str
        'direct', 'winograd' or 'gemm'.

    Raises
    ------
    TypeError, ValueError
        As conv2d, for the same operands and arguments, and for a grad that is not
        one of those above.
    """
    args = _conv_args(weight, stride, padding, dilation, groups, "conv2d_algorithm")
    return _C.conv2d_algorithm(input, weight, *args, _conv_pass(grad, "conv2d_algorithm"))


def _conv_pass(grad, op):
    """The pass a convolution's *_algorithm names: '' (the forward, grad None), 'input' or
    'weight'."""
    return "" if grad is None else _choice(grad, op, "grad", ("input", "weight"))


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1,
                    output_mask=(True, True, True)):
    """Gradients of conv2d with respect to its input, weight and bias.
    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): CUDA operands run on the GPU and give CuPy results on their device.

    Parameters
    ----------
    grad_output : ndarray, shape (N, C_out, H_out, W_out)
        Gradient with respect to conv2d's output, of input's dtype.
    input : ndarray, shape (N, C_in, H, W)
        conv2d's input.
    weight : ndarray, shape (C_out, C_in / groups, kH, kW)
        conv2d's weight.
    stride, padding, dilation, groups
        As passed to conv2d (padding may be 'valid' or 'same').
    output_mask : (bool, bool, bool), default (True, True, True)
        Which of (grad_input, grad_weight, grad_bias) to compute, as torch's
        convolution_backward; the others are returned as None and cost nothing.

    Returns
    -------
    grad_input : ndarray, shape (N, C_in, H, W)
        Of input's dtype, as are the other two.
    grad_weight : ndarray, shape (C_out, C_in / groups, kH, kW)
    grad_bias : ndarray, shape (C_out,)
        grad_output summed over N, H_out and W_out; returned whether or not the
        forward had a bias.

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
    ValueError
        As conv2d, or grad_output's shape is not (N, C_out, H_out, W_out).
    """
    stride, padding, dilation, groups = _conv_args(weight, stride, padding, dilation, groups, "conv2d_backward")
    return _dispatch.call(
        "conv2d_backward", _C.conv2d_backward, grad_output=grad_output, input=input, weight=weight, stride=stride,
        padding=padding, dilation=dilation, groups=groups, output_mask=_output_mask(output_mask, "conv2d_backward"),
    )


def _conv_transpose_args(stride, padding, output_padding, groups, dilation, op):
    return (
        pair(stride, op, "stride"),
        pair(padding, op, "padding"),
        pair(output_padding, op, "output_padding"),
        _groups(groups, op),
        pair(dilation, op, "dilation"),
    )


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution ("deconvolution"): the adjoint of conv2d, as torch's.
    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): CUDA operands run on the GPU and give CuPy results on their device.

    Parameters
    ----------
    input : ndarray, shape (N, C_in, H, W)
        float32 or float64.
    weight : ndarray, shape (C_in, C_out / groups, kH, kW)
        Of input's dtype, every dim >= 1. C_out = weight.shape[1] * groups.
    bias : ndarray, shape (C_out,), optional
        None for no bias.
    stride : int or (int, int), default 1
        Positive.
    padding : int or (int, int), default 0
        Non-negative: the padding of the conv2d this is the adjoint of, so it removes
        padding rows (columns) from each side of the full output. Strings such as
        'same' are not accepted.
    output_padding : int or (int, int), default 0
        Non-negative, and on each axis smaller than the stride or the dilation: extra
        rows (columns) at the bottom (right) of the output, to pick among the input
        sizes that a strided conv2d maps to the same size.
    groups : int, default 1
        Positive divisor of C_in.
    dilation : int or (int, int), default 1
        Positive.

    Returns
    -------
    ndarray, shape (N, C_out, H_out, W_out)
        Of input's dtype, where::

            H_out = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kH - 1) + output_padding[0] + 1
            W_out = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kW - 1) + output_padding[1] + 1

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
    ValueError
        input or weight is not 4-D; weight.shape[0] != C_in; a weight dim is 0;
        groups is not a positive divisor of C_in; bias is not (C_out,); stride or
        dilation is not positive; padding or output_padding is negative; output_padding
        is not smaller than stride or dilation; H_out or W_out < 1.

    See Also
    --------
    conv_transpose2d_backward, conv_transpose2d_algorithm, conv2d

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> x = np.ones((1, 16, 8, 8))
    >>> w = np.ones((16, 4, 4, 4))
    >>> F.conv_transpose2d(x, w, stride=2, padding=1).shape
    (1, 4, 16, 16)
    """
    stride, padding, output_padding, groups, dilation = _conv_transpose_args(
        stride, padding, output_padding, groups, dilation, "conv_transpose2d"
    )
    return _dispatch.call(
        "conv_transpose2d", _C.conv_transpose2d, input=input, weight=weight, bias=bias, stride=stride,
        padding=padding, output_padding=output_padding, groups=groups, dilation=dilation,
    )


def conv_transpose2d_algorithm(input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                               grad=None):
    """The kernel conv_transpose2d runs for these operands and arguments, or one of its
    gradients.

    Named as by conv2d_algorithm ('direct', 'winograd' or 'gemm'): 'winograd' runs a
    stride-1 layer as the stride-1 convolution by the reversed, transposed kernel (any
    dilation and groups), and a strided one as the stride-1 convolution of its stacked
    output phases (groups 1, dilation 1, a kernel of 2 to 5 taps per stride phase).
    conv_transpose2d_backward's input gradient and weight gradient take conv2d's path
    for grad_output (the weight gradient is the convolution's, with the roles of input
    and grad_output swapped). As for conv2d_algorithm, the choice depends on the
    shapes, dtype, arguments, workspace size and sgemm kernel, not on the values.

    Parameters
    ----------
    input : ndarray, shape (N, C_in, H, W)
        float32 or float64; only its shape and dtype are used.
    weight : ndarray, shape (C_in, C_out / groups, kH, kW)
        Of input's dtype; only its shape is used.
    stride, padding, output_padding, groups, dilation
        As for conv_transpose2d.
    grad : {None, 'input', 'weight'}, default None
        None: the forward's kernel; 'input' or 'weight': that gradient's in
        conv_transpose2d_backward.

    Returns
    -------
    str
        'direct', 'winograd' or 'gemm'.

    Raises
    ------
    TypeError, ValueError
        As conv_transpose2d, for the same operands and arguments, and for a grad that
        is not one of those above.
    """
    args = _conv_transpose_args(stride, padding, output_padding, groups, dilation, "conv_transpose2d_algorithm")
    return _C.conv_transpose2d_algorithm(input, weight, *args, _conv_pass(grad, "conv_transpose2d_algorithm"))


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                              output_mask=(True, True, True)):
    """Gradients of conv_transpose2d with respect to its input, weight and bias.
    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): CUDA operands run on the GPU and give CuPy results on their device.

    Parameters
    ----------
    grad_output : ndarray, shape (N, C_out, H_out, W_out)
        Gradient with respect to conv_transpose2d's output, of input's dtype.
    input : ndarray, shape (N, C_in, H, W)
        conv_transpose2d's input.
    weight : ndarray, shape (C_in, C_out / groups, kH, kW)
        conv_transpose2d's weight.
    stride, padding, output_padding, groups, dilation
        As passed to conv_transpose2d.
    output_mask : (bool, bool, bool), default (True, True, True)
        Which of (grad_input, grad_weight, grad_bias) to compute; the others are
        returned as None and cost nothing.

    Returns
    -------
    grad_input : ndarray, shape (N, C_in, H, W)
        Of input's dtype, as are the other two.
    grad_weight : ndarray, shape (C_in, C_out / groups, kH, kW)
    grad_bias : ndarray, shape (C_out,)
        grad_output summed over N, H_out and W_out; returned whether or not the
        forward had a bias.

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
    ValueError
        As conv_transpose2d, or grad_output's shape is not (N, C_out, H_out, W_out).
    """
    stride, padding, output_padding, groups, dilation = _conv_transpose_args(
        stride, padding, output_padding, groups, dilation, "conv_transpose2d_backward"
    )
    return _dispatch.call(
        "conv_transpose2d_backward", _C.conv_transpose2d_backward, grad_output=grad_output, input=input,
        weight=weight, stride=stride, padding=padding, output_padding=output_padding, groups=groups,
        dilation=dilation, output_mask=_output_mask(output_mask, "conv_transpose2d_backward"),
    )


def _flatten_batch(x):
    """(..., in) -> (N, in), as torch's linear accepts any leading dims.

    Returns the 2-D view and the leading shape, or (x, None) when x needs no reshaping
    (2-D, or not an array: C++ reports those).
    """
    if _dispatch.classify(x) is not None and hasattr(x, "reshape") and x.ndim != 2 and x.ndim >= 1:
        return x.reshape(math.prod(x.shape[:-1]), x.shape[-1]), x.shape[:-1]
    return x, None


def linear(input, weight, bias=None):
    """Affine map ``input @ weight.T + bias``, as torch's linear.
    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): CUDA operands run on the GPU and give CuPy results on their device.

    Parameters
    ----------
    input : ndarray, shape (*, in_features)
        float32 or float64, with at least 1 dim: leading dims are flattened into the
        batch and restored in the result (a 1-D input gives a 1-D output).
    weight : ndarray, shape (out_features, in_features)
        Of input's dtype.
    bias : ndarray, shape (out_features,), optional
        None for no bias.

    Returns
    -------
    ndarray, shape (*, out_features)
        Of input's dtype.

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
    ValueError
        input is 0-d; weight is not 2-D; weight.shape[1] != in_features; bias is not
        (out_features,).

    See Also
    --------
    linear_backward

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> x = np.ones((4, 10, 3))
    >>> F.linear(x, np.ones((5, 3)), np.zeros(5)).shape
    (4, 10, 5)
    """
    x, lead = _flatten_batch(input)
    y = _dispatch.call("linear", _C.linear, input=x, weight=weight, bias=bias)
    return y if lead is None else y.reshape(*lead, y.shape[-1])


def linear_backward(grad_output, input, weight):
    """Gradients of linear with respect to its input, weight and bias.
    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): CUDA operands run on the GPU and give CuPy results on their device.

    Parameters
    ----------
    grad_output : ndarray, shape (*, out_features)
        Gradient with respect to linear's output: input's leading dims, input's dtype.
    input : ndarray, shape (*, in_features)
        linear's input.
    weight : ndarray, shape (out_features, in_features)
        linear's weight.

    Returns
    -------
    grad_input : ndarray, shape (*, in_features)
        input's shape; of input's dtype, as are the other two.
    grad_weight : ndarray, shape (out_features, in_features)
    grad_bias : ndarray, shape (out_features,)
        grad_output summed over all leading dims.

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
    ValueError
        As linear, or grad_output's shape is not input's leading dims followed by
        out_features.
    """
    x, lead = _flatten_batch(input)
    g = grad_output
    if lead is not None and _dispatch.classify(g) is not None and hasattr(g, "reshape"):
        if g.ndim < 1 or g.shape[:-1] != lead:
            raise ValueError(
                f"linear_backward: grad_output: expected shape {(*lead, 'out_features')} to match the input's "
                f"leading dims, got shape {g.shape}"
            )
        g = g.reshape(-1, g.shape[-1])
    gx, gw, gb = _dispatch.call("linear_backward", _C.linear_backward, grad_output=g, input=x, weight=weight)
    return (gx if lead is None else gx.reshape(input.shape)), gw, gb


# ---- Pooling (NCHW). Switches are int64 flat indices h * W + w within each (n, c) plane.


def _pool_args(kernel_size, stride, op):
    """(kernel, stride) pairs; stride None (or empty, as torch accepts) means kernel_size."""
    kernel = pair(kernel_size, op, "kernel_size")
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel, kernel
    return kernel, pair(stride, op, "stride")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling of an NCHW batch, optionally with its switches.

    Switches (Zeiler & Fergus's, PyTorch's indices) record where each maximum came
    from: the flat index ``h * W + w`` of the winning input within its own (n, c)
    plane. On a tie, the first maximum in row-major window order wins; a NaN beats
    every number, and of several NaNs in a window the last one wins (PyTorch's rule),
    so NaN propagates. Windows are clipped to the input, so every switch names an
    input element.

    Parameters
    ----------
    input : ndarray, shape (N, C, H, W)
        float32 or float64; NumPy, or CUDA to run on the GPU.
    kernel_size : int or (int, int)
        Window size; positive.
    stride : int or (int, int), optional
        Positive; None (or an empty tuple or list) means kernel_size.
    padding : int or (int, int), default 0
        Implicit -inf padding on both sides; non-negative and at most
        kernel_size // 2 on each axis.
    dilation : int or (int, int), default 1
        Spacing between window taps; positive.
    ceil_mode : bool, default False
        Use ceil instead of floor in the output shape; a last window that would
        start in the bottom (right) padding is dropped, as in PyTorch.
    return_indices : bool, default False
        Also return the switches.

    Returns
    -------
    output : ndarray, shape (N, C, H_out, W_out)
        Of input's dtype, where (ceil instead of floor with ceil_mode)::

            H_out = floor((H + 2 * padding[0] - dilation[0] * (kH - 1) - 1) / stride[0]) + 1
            W_out = floor((W + 2 * padding[1] - dilation[1] * (kW - 1) - 1) / stride[1]) + 1

    switches : ndarray of int64, shape (N, C, H_out, W_out)
        Only with return_indices, which makes the result a tuple (output, switches).

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
    ValueError
        input is not 4-D; kernel_size, stride or dilation is not positive; padding is
        negative or more than half of kernel_size; H_out or W_out < 1; a dilated
        window holds no input row or column (possible when it starts in the padding).

    See Also
    --------
    max_pool2d_backward, max_unpool2d

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> x = np.array([[[[5., 3., 2., 3.],
    ...                 [0., 5., 5., 1.]]]])
    >>> y, switches = F.max_pool2d(x, 2, return_indices=True)
    >>> y
    array([[[[5., 5.]]]])
    >>> switches  # the tie in the first window goes to the first 5
    array([[[[0, 6]]]])
    >>> F.max_unpool2d(y, switches, 2)
    array([[[[5., 0., 0., 0.],
             [0., 0., 5., 0.]]]])
    """
    op = "max_pool2d"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _dispatch.call(
        op, _C.max_pool2d, input=input, kernel_size=kernel, stride=stride, padding=pair(padding, op, "padding"),
        dilation=pair(dilation, op, "dilation"), ceil_mode=_bool(ceil_mode, op, "ceil_mode"),
        return_indices=_bool(return_indices, op, "return_indices"),
    )


def max_pool2d_backward(grad_output, switches, input_shape):
    """Gradient of max_pool2d with respect to its input.

    Each grad_output value is added to the input element its switch names; elements
    that win no window get 0 (an element that wins several overlapping windows gets
    the sum).

    Parameters
    ----------
    grad_output : ndarray, shape (N, C, H_out, W_out)
        Gradient with respect to max_pool2d's output; float32 or float64.
    switches : ndarray of int64, shape (N, C, H_out, W_out)
        From ``max_pool2d(..., return_indices=True)``; any memory layout.
    input_shape : tuple or list of 4 ints
        (N, C, H, W), the shape of max_pool2d's input; non-negative.

    Returns
    -------
    ndarray, shape input_shape
        Of grad_output's dtype.

    Raises
    ------
    TypeError
        A float operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, or
        switches is not an int64 array of the float operands' kind.
        Also when input_shape is not a tuple or list of ints.
    ValueError
        input_shape is not 4 non-negative values; grad_output is not 4-D; its N and C
        differ from input_shape's; switches' shape differs from grad_output's; a switch
        is outside [0, H * W) (the message names its position).
    """
    op = "max_pool2d_backward"
    return _dispatch.call(
        op, _C.max_pool2d_backward, grad_output=grad_output, switches=switches,
        input_shape=_ints(input_shape, op, "input_shape"),
    )


def max_unpool2d(input, switches, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d: each value written where its switch points.

    The result is zero except, in each (n, c) plane, at the flat positions
    ``h * W_out + w`` that the switches name, which receive the input values. Where
    several switches of one plane name the same position, the last one in row-major
    order is written.

    Parameters
    ----------
    input : ndarray, shape (N, C, H_in, W_in)
        Pooled values; float32 or float64.
    switches : ndarray of int64, shape (N, C, H_in, W_in)
        From ``max_pool2d(..., return_indices=True)``; any memory layout.
    kernel_size : int or (int, int)
        The pooling's kernel_size; positive.
    stride : int or (int, int), optional
        The pooling's stride; positive; None (or empty) means kernel_size.
    padding : int or (int, int), default 0
        The pooling's padding; non-negative.
    output_size : tuple or list of ints, optional
        (H_out, W_out) or (N, C, H_out, W_out), to pick among the input sizes the
        pooling maps to the same size; each of H_out and W_out must lie strictly
        within stride of the default.

    Returns
    -------
    ndarray, shape (N, C, H_out, W_out)
        Of input's dtype. By default::

            H_out = (H_in - 1) * stride[0] - 2 * padding[0] + kernel_size[0]
            W_out = (W_in - 1) * stride[1] - 2 * padding[1] + kernel_size[1]

    Raises
    ------
    TypeError
        A float operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, or
        switches is not an int64 array of the float operands' kind.
        Also when output_size is not a tuple or list of ints.
    ValueError
        input is not 4-D; kernel_size or stride is not positive; padding is negative;
        output_size does not have 2 or 4 values, its N and C differ from input's, or
        its H_out or W_out is not within stride of the default; H_out or W_out < 1;
        switches' shape differs from input's; a switch is outside [0, H_out * W_out).

    See Also
    --------
    max_pool2d, max_unpool2d_backward
    """
    op = "max_unpool2d"
    kernel, stride = _pool_args(kernel_size, stride, op)
    size = None if output_size is None else _ints(output_size, op, "output_size")
    return _dispatch.call(
        op, _C.max_unpool2d, input=input, switches=switches, kernel_size=kernel, stride=stride,
        padding=pair(padding, op, "padding"), output_size=size,
    )


def max_unpool2d_backward(grad_output, switches):
    """Gradient of max_unpool2d with respect to its input.

    grad_output gathered at the switches:
    ``grad_input[n, c].flat[i] = grad_output[n, c].flat[switches[n, c].flat[i]]``.

    Parameters
    ----------
    grad_output : ndarray, shape (N, C, H_out, W_out)
        Gradient with respect to max_unpool2d's output; float32 or float64.
    switches : ndarray of int64, shape (N, C, H_in, W_in)
        The switches passed to max_unpool2d; any memory layout.

    Returns
    -------
    ndarray, shape (N, C, H_in, W_in)
        switches' shape, grad_output's dtype.

    Raises
    ------
    TypeError
        A float operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, or
        switches is not an int64 array of the float operands' kind.
    ValueError
        grad_output or switches is not 4-D; their N and C differ; a switch is outside
        [0, H_out * W_out).
    """
    return _dispatch.call(
        "max_unpool2d_backward", _C.max_unpool2d_backward, grad_output=grad_output, switches=switches
    )


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2-D average pooling of an NCHW batch, with PyTorch's divisors.

    Each window's sum (taps in row-major order) is divided by the number of its
    positions inside the padded input when count_include_pad (padding zeros count; a
    window that ceil_mode lets run past the padding is clipped), else by the number of
    input elements it holds.

    Parameters
    ----------
    input : ndarray, shape (N, C, H, W)
        float32 or float64; NumPy, or CUDA to run on the GPU.
    kernel_size : int or (int, int)
        Window size; positive.
    stride : int or (int, int), optional
        Positive; None (or an empty tuple or list) means kernel_size.
    padding : int or (int, int), default 0
        Implicit zero padding on both sides; non-negative and at most
        kernel_size // 2 on each axis.
    ceil_mode : bool, default False
        Use ceil instead of floor in the output shape; a last window that would start
        in the bottom (right) padding is dropped.
    count_include_pad : bool, default True
        Whether padding zeros count in the divisor.

    Returns
    -------
    ndarray, shape (N, C, H_out, W_out)
        Of input's dtype, where (ceil instead of floor with ceil_mode)::

            H_out = floor((H + 2 * padding[0] - kernel_size[0]) / stride[0]) + 1
            W_out = floor((W + 2 * padding[1] - kernel_size[1]) / stride[1]) + 1

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
    ValueError
        input is not 4-D; kernel_size or stride is not positive; padding is negative
        or more than half of kernel_size; H_out or W_out < 1.

    See Also
    --------
    avg_pool2d_backward
    """
    op = "avg_pool2d"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _dispatch.call(
        op, _C.avg_pool2d, input=input, kernel_size=kernel, stride=stride, padding=pair(padding, op, "padding"),
        ceil_mode=_bool(ceil_mode, op, "ceil_mode"),
        count_include_pad=_bool(count_include_pad, op, "count_include_pad"),
    )


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of avg_pool2d with respect to its input.

    Each grad_output value, divided by its window's divisor, is added to every input
    element of the window.

    Parameters
    ----------
    grad_output : ndarray, shape (N, C, H_out, W_out)
        Gradient with respect to avg_pool2d's output; float32 or float64.
    input_shape : tuple or list of 4 ints
        (N, C, H, W), the shape of avg_pool2d's input; non-negative.
    kernel_size, stride, padding, ceil_mode, count_include_pad
        As passed to avg_pool2d.

    Returns
    -------
    ndarray, shape input_shape
        Of grad_output's dtype.

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
        Also when input_shape is not a tuple or list of ints.
    ValueError
        input_shape is not 4 non-negative values; the geometry is invalid as for
        avg_pool2d; grad_output's shape is not (N, C, H_out, W_out).
    """
    op = "avg_pool2d_backward"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _dispatch.call(
        op, _C.avg_pool2d_backward, grad_output=grad_output, input_shape=_ints(input_shape, op, "input_shape"),
        kernel_size=kernel, stride=stride, padding=pair(padding, op, "padding"),
        ceil_mode=_bool(ceil_mode, op, "ceil_mode"),
        count_include_pad=_bool(count_include_pad, op, "count_include_pad"),
    )


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling, as torch computes it.

    ``y = (avg_pool2d(x ** p) * kH * kW) ** (1 / p)`` with p = norm_type: the p-norm
    of each window for x >= 0. As in torch, no absolute value is taken (x ** p of a
    negative x is NaN for a non-integer p), and a window that ceil_mode clips to the
    input has its power sum scaled by kH * kW over its element count. norm_type
    inf gives the max of |x| over each window, -inf the min of |x|. There is no
    padding.

    Parameters
    ----------
    input : ndarray, shape (N, C, H, W)
        float32 or float64; NumPy, or CUDA to run on the GPU.
    norm_type : float
        p: a non-zero real, finite or +-inf.
    kernel_size : int or (int, int)
        Window size; positive.
    stride : int or (int, int), optional
        Positive; None (or an empty tuple or list) means kernel_size.
    ceil_mode : bool, default False
        Use ceil instead of floor in the output shape.

    Returns
    -------
    ndarray, shape (N, C, H_out, W_out)
        Of input's dtype, where (ceil instead of floor with ceil_mode)::

            H_out = floor((H - kernel_size[0]) / stride[0]) + 1
            W_out = floor((W - kernel_size[1]) / stride[1]) + 1

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
        Also when norm_type is not a real number (bool included).
    ValueError
        norm_type is 0 or NaN; input is not 4-D; kernel_size or stride is not
        positive; H_out or W_out < 1.

    See Also
    --------
    lp_pool2d_backward
    """
    op = "lp_pool2d"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _dispatch.call(
        op, _C.lp_pool2d, input=input, norm_type=_real(norm_type, op, "norm_type"), kernel_size=kernel, stride=stride,
        ceil_mode=_bool(ceil_mode, op, "ceil_mode"),
    )


def lp_pool2d_backward(grad_output, input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Gradient of lp_pool2d with respect to its input.

    Windows whose power sum is zero pass no gradient, as in torch. For norm_type
    +-inf the gradient goes to each window's winner (the first in row-major order on
    a tie), times sign(x).

    Parameters
    ----------
    grad_output : ndarray, shape (N, C, H_out, W_out)
        Gradient with respect to lp_pool2d's output, of input's dtype.
    input : ndarray, shape (N, C, H, W)
        lp_pool2d's input.
    norm_type, kernel_size, stride, ceil_mode
        As passed to lp_pool2d.

    Returns
    -------
    ndarray, shape (N, C, H, W)
        Of input's dtype.

    Raises
    ------
    TypeError
        An array operand is not a numpy.ndarray (or a CUDA array, such as a
        cupy.ndarray) of float32 or float64, NumPy and CUDA operands are mixed, the
        float operands' dtypes differ, or an int argument is not an int (or pair of ints).
        Also when norm_type is not a real number.
    ValueError
        As lp_pool2d, or grad_output's shape is not (N, C, H_out, W_out).
    """
    op = "lp_pool2d_backward"
    kernel, stride = _pool_args(kernel_size, stride, op)
    return _dispatch.call(
        op, _C.lp_pool2d_backward, grad_output=grad_output, input=input, norm_type=_real(norm_type, op, "norm_type"),
        kernel_size=kernel, stride=stride, ceil_mode=_bool(ceil_mode, op, "ceil_mode"),
    )


# ---- Activations (any shape)


def relu(input):
    """Rectified linear unit, ``max(x, 0)`` elementwise; NaN stays NaN.

    Parameters
    ----------
    input : ndarray
        float32 or float64, any shape (0-d included); NumPy, or CUDA (CuPy, or any
        array with ``__cuda_array_interface__`` or DLPack) to run on the GPU.

    Returns
    -------
    ndarray
        input's shape and dtype (a cupy.ndarray on input's device for a CUDA input).

    Raises
    ------
    TypeError
        input is not a numpy.ndarray (or CUDA array, such as a cupy.ndarray) of
        float32 or float64.
    """
    return _dispatch.call("relu", _C.relu, input=input)


def relu_backward(grad_output, input):
    """Gradient of relu: grad_output where input > 0 or input is NaN, else 0.

    As torch's threshold_backward.

    Parameters
    ----------
    grad_output : ndarray
        Gradient with respect to relu's output; any shape.
    input : ndarray
        relu's input: grad_output's shape and dtype.

    Returns
    -------
    ndarray
        grad_output's shape and dtype (a cupy.ndarray for CUDA operands).

    Raises
    ------
    TypeError
        grad_output or input is not a numpy.ndarray of float32 or float64, or their
        dtypes differ, or one is a NumPy array and the other a CUDA array.
    ValueError
        grad_output's shape differs from input's.
    """
    return _dispatch.call("relu_backward", _C.relu_backward, grad_output=grad_output, input=input)


def sigmoid(input):
    """Logistic sigmoid ``1 / (1 + exp(-x))`` elementwise, stable for large |x|.

    Parameters
    ----------
    input : ndarray
        float32 or float64, any shape (0-d included); NumPy, or CUDA (CuPy, or any
        array with ``__cuda_array_interface__`` or DLPack) to run on the GPU.

    Returns
    -------
    ndarray
        input's shape and dtype (a cupy.ndarray on input's device for a CUDA input).
        Values in [0, 1].

    Raises
    ------
    TypeError
        input is not a numpy.ndarray (or CUDA array, such as a cupy.ndarray) of
        float32 or float64.
    """
    return _dispatch.call("sigmoid", _C.sigmoid, input=input)


def sigmoid_backward(grad_output, output):
    """Gradient of sigmoid from its output: ``grad_output * y * (1 - y)``.

    Parameters
    ----------
    grad_output : ndarray
        Gradient with respect to sigmoid's output; any shape.
    output : ndarray
        y, sigmoid's result: grad_output's shape and dtype.

    Returns
    -------
    ndarray
        grad_output's shape and dtype (a cupy.ndarray for CUDA operands).

    Raises
    ------
    TypeError
        grad_output or output is not a numpy.ndarray of float32 or float64, or their
        dtypes differ, or one is a NumPy array and the other a CUDA array.
    ValueError
        grad_output's shape differs from output's.
    """
    return _dispatch.call("sigmoid_backward", _C.sigmoid_backward, grad_output=grad_output, output=output)


def tanh(input):
    """Hyperbolic tangent elementwise, accurate near 0 (through expm1).

    Parameters
    ----------
    input : ndarray
        float32 or float64, any shape (0-d included); NumPy, or CUDA (CuPy, or any
        array with ``__cuda_array_interface__`` or DLPack) to run on the GPU.

    Returns
    -------
    ndarray
        input's shape and dtype (a cupy.ndarray on input's device for a CUDA input).

    Raises
    ------
    TypeError
        input is not a numpy.ndarray (or CUDA array, such as a cupy.ndarray) of
        float32 or float64.
    """
    return _dispatch.call("tanh", _C.tanh, input=input)


def tanh_backward(grad_output, output):
    """Gradient of tanh from its output: ``grad_output * (1 - y ** 2)``.

    Parameters
    ----------
    grad_output : ndarray
        Gradient with respect to tanh's output; any shape.
    output : ndarray
        y, tanh's result: grad_output's shape and dtype.

    Returns
    -------
    ndarray
        grad_output's shape and dtype (a cupy.ndarray for CUDA operands).

    Raises
    ------
    TypeError
        grad_output or output is not a numpy.ndarray of float32 or float64, or their
        dtypes differ, or one is a NumPy array and the other a CUDA array.
    ValueError
        grad_output's shape differs from output's.
    """
    return _dispatch.call("tanh_backward", _C.tanh_backward, grad_output=grad_output, output=output)


# ---- Softmax and losses


def softmax(input, dim=-1):
    """Softmax along one axis: ``exp(x - max) / sum(exp(x - max))``.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): the result is on the operands' device; mixing the two is a TypeError.

    A NaN in a slice along dim makes that whole slice NaN.

    Parameters
    ----------
    input : ndarray
        float32 or float64, any shape (0-d included).
    dim : int, default -1
        Axis in [-ndim, ndim) (a 0-d array counts as 1-D).

    Returns
    -------
    ndarray
        input's shape and dtype.

    Raises
    ------
    TypeError
        input is not a numpy.ndarray of float32 or float64.
        Also when dim is not an int.
    IndexError
        dim is out of range.

    See Also
    --------
    softmax_backward, log_softmax

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> F.softmax(np.array([[0., 0.], [0., np.log(3.)]]), dim=1)
    array([[0.5 , 0.5 ],
           [0.25, 0.75]])
    """
    return _dispatch.call("softmax", _C.softmax, input=input, dim=_int(dim, "softmax", "dim"))


def log_softmax(input, dim=-1):
    """Log-softmax along one axis: ``(x - max) - log(sum(exp(x - max)))``.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): the result is on the operands' device; mixing the two is a TypeError.

    Parameters
    ----------
    input : ndarray
        float32 or float64, any shape (0-d included).
    dim : int, default -1
        Axis in [-ndim, ndim) (a 0-d array counts as 1-D).

    Returns
    -------
    ndarray
        input's shape and dtype.

    Raises
    ------
    TypeError
        input is not a numpy.ndarray of float32 or float64.
        Also when dim is not an int.
    IndexError
        dim is out of range.

    See Also
    --------
    log_softmax_backward, softmax
    """
    return _dispatch.call("log_softmax", _C.log_softmax, input=input, dim=_int(dim, "log_softmax", "dim"))


def softmax_backward(grad_output, output, dim=-1):
    """Gradient of softmax from its output: ``y * (g - sum(g * y))`` along dim.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): the result is on the operands' device; mixing the two is a TypeError.

    Parameters
    ----------
    grad_output : ndarray
        g, the gradient with respect to softmax's output; any shape.
    output : ndarray
        y, softmax's result: grad_output's shape and dtype.
    dim : int, default -1
        Axis in [-ndim, ndim) (a 0-d array counts as 1-D).
        The dim passed to softmax.

    Returns
    -------
    ndarray
        grad_output's shape and dtype.

    Raises
    ------
    TypeError
        grad_output or output is not a numpy.ndarray of float32 or float64, their
        dtypes differ, or dim is not an int.
    ValueError
        grad_output's shape differs from output's.
    IndexError
        dim is out of range.
    """
    return _dispatch.call(
        "softmax_backward", _C.softmax_backward, grad_output=grad_output, output=output,
        dim=_int(dim, "softmax_backward", "dim"),
    )


def log_softmax_backward(grad_output, output, dim=-1):
    """Gradient of log_softmax from its output: ``g - exp(y) * sum(g)`` along dim.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): the result is on the operands' device; mixing the two is a TypeError.

    Parameters
    ----------
    grad_output : ndarray
        g, the gradient with respect to log_softmax's output; any shape.
    output : ndarray
        y, log_softmax's result: grad_output's shape and dtype.
    dim : int, default -1
        Axis in [-ndim, ndim) (a 0-d array counts as 1-D).
        The dim passed to log_softmax.

    Returns
    -------
    ndarray
        grad_output's shape and dtype.

    Raises
    ------
    TypeError
        grad_output or output is not a numpy.ndarray of float32 or float64, their
        dtypes differ, or dim is not an int.
    ValueError
        grad_output's shape differs from output's.
    IndexError
        dim is out of range.
    """
    return _dispatch.call(
        "log_softmax_backward", _C.log_softmax_backward, grad_output=grad_output, output=output,
        dim=_int(dim, "log_softmax_backward", "dim"),
    )


def cross_entropy(input, target, reduction="mean"):
    """Softmax cross-entropy of logits against class indices, as torch's cross_entropy.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): the result is on the operands' device; mixing the two is a TypeError.

    Per sample, ``loss[i] = logsumexp(input[i]) - input[i, target[i]]``, computed
    without overflow for large logits; sums accumulate in float64.

    Parameters
    ----------
    input : ndarray, shape (N, C)
        Logits; float32 or float64.
    target : ndarray, shape (N,)
        Class indices of any integer dtype (signed or unsigned), each in [0, C).
        There is no ignore_index, class weighting or label smoothing.
    reduction : {'mean', 'sum', 'none'}, default 'mean'

    Returns
    -------
    ndarray
        'none': the (N,) losses. 'mean' and 'sum': a 0-d array (as torch gives a 0-d
        tensor; ``float()`` it for a Python number). Of input's dtype. The mean of an
        empty batch is NaN, the sum 0.

    Raises
    ------
    TypeError
        input is not a numpy.ndarray of float32 or float64; target is not a
        numpy.ndarray of an integer dtype; reduction is not a str.
    ValueError
        input is not 2-D; target is not 1-D of length N; a target is outside [0, C);
        reduction is not 'mean', 'sum' or 'none'.

    See Also
    --------
    cross_entropy_backward, log_softmax

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> logits = np.array([[0., 0., 0.], [2., 0., -1.]])
    >>> F.cross_entropy(logits, np.array([2, 0]), reduction='none')
    array([1.09861229, 0.16984602])
    >>> round(float(F.cross_entropy(logits, np.array([2, 0]))), 6)
    0.634229
    """
    return _dispatch.call(
        "cross_entropy", _C.cross_entropy, input=input, target=target,
        reduction=_reduction(reduction, "cross_entropy"),
    )


def cross_entropy_backward(input, target, reduction="mean"):
    """Gradient of cross_entropy with respect to the logits.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): the result is on the operands' device; mixing the two is a TypeError.

    For an upstream gradient of 1 ('mean', 'sum') or of ones ('none', one per sample):
    ``softmax(input) - onehot(target)``, divided by N for 'mean'.

    Parameters
    ----------
    input : ndarray, shape (N, C)
        Logits; float32 or float64.
    target : ndarray, shape (N,)
        Class indices of any integer dtype (signed or unsigned), each in [0, C).
        There is no ignore_index, class weighting or label smoothing.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        As passed to cross_entropy.

    Returns
    -------
    ndarray, shape (N, C)
        Of input's dtype.

    Raises
    ------
    TypeError
        input is not a numpy.ndarray of float32 or float64; target is not a
        numpy.ndarray of an integer dtype; reduction is not a str.
    ValueError
        input is not 2-D; target is not 1-D of length N; a target is outside [0, C);
        reduction is not 'mean', 'sum' or 'none'.
    """
    return _dispatch.call(
        "cross_entropy_backward", _C.cross_entropy_backward, input=input, target=target,
        reduction=_reduction(reduction, "cross_entropy_backward"),
    )


def mse_loss(input, target, reduction="mean"):
    """Squared error ``(input - target) ** 2``, reduced as torch's mse_loss.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): the result is on the operands' device; mixing the two is a TypeError.

    Parameters
    ----------
    input : ndarray
        float32 or float64, any shape.
    target : ndarray
        input's shape and dtype exactly (no broadcasting).
    reduction : {'mean', 'sum', 'none'}, default 'mean'

    Returns
    -------
    ndarray
        'none': input's shape. 'mean' and 'sum': a 0-d array, summed in float64 in
        fixed blocks (the same result for any thread count); the mean of an empty
        input is NaN. Of input's dtype.

    Raises
    ------
    TypeError
        input or target is not a numpy.ndarray of float32 or float64, their dtypes
        differ, or reduction is not a str.
    ValueError
        target's shape differs from input's; reduction is not 'mean', 'sum' or 'none'.
    """
    return _dispatch.call(
        "mse_loss", _C.mse_loss, input=input, target=target, reduction=_reduction(reduction, "mse_loss")
    )


def mse_loss_backward(input, target, reduction="mean"):
    """Gradient of mse_loss with respect to input.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or
    DLPack): the result is on the operands' device; mixing the two is a TypeError.

    For an upstream gradient of 1 ('mean', 'sum') or of ones ('none'):
    ``2 * (input - target)``, divided by input.size for 'mean'.

    Parameters
    ----------
    input : ndarray
        float32 or float64, any shape.
    target : ndarray
        input's shape and dtype exactly (no broadcasting).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        As passed to mse_loss.

    Returns
    -------
    ndarray
        input's shape and dtype.

    Raises
    ------
    TypeError
        input or target is not a numpy.ndarray of float32 or float64, their dtypes
        differ, or reduction is not a str.
    ValueError
        target's shape differs from input's; reduction is not 'mean', 'sum' or 'none'.
    """
    return _dispatch.call(
        "mse_loss_backward", _C.mse_loss_backward, input=input, target=target,
        reduction=_reduction(reduction, "mse_loss_backward"),
    )


# ---- Dropout and normalisation


def dropout(input, p=0.5, training=True, seed=None):
    """Inverted dropout: returns (y, mask).

    In training each element is kept with probability 1 - p and scaled by 1 / (1 - p),
    and zeroed otherwise (as ``x * 0``, so a NaN stays NaN). The mask is a function of
    seed and the element's C-order flat index only (a counter-based generator): one
    seed gives one mask for any thread count and either dtype. In eval mode y is a
    copy of input. The GPU draws the same mask.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or DLPack):
    CUDA operands run on their GPU and give cupy arrays there.

    Parameters
    ----------
    input : ndarray
        float32 or float64, any shape.
    p : float, default 0.5
        Probability of dropping an element, in [0, 1).
    training : bool, default True
        False: eval mode, dropout is the identity.
    seed : int, optional
        In [0, 2**64). None draws one from cnnkit's random stream
        (cnnkit.manual_seed). Unused in eval mode.

    Returns
    -------
    y : ndarray
        input's shape and dtype.
    mask : ndarray of bool or None
        input's shape, True where the element was kept; None in eval mode.

    Raises
    ------
    TypeError
        input is not a numpy.ndarray of float32 or float64; p is not a real number;
        seed is not an int (bool included).
    ValueError
        p is outside [0, 1); seed is outside [0, 2**64).

    See Also
    --------
    dropout_backward

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> y, mask = F.dropout(np.ones(1000), p=0.25, seed=7)
    >>> bool(np.all(y[mask] == 1 / 0.75)), bool(np.all(y[~mask] == 0))
    (True, True)
    >>> bool(np.array_equal(mask, F.dropout(np.ones(1000, np.float32), 0.25, seed=7)[1]))
    True
    """
    training = _bool(training, "dropout", "training")
    if training and seed is None:
        seed = _random.next_seed()
    return _dispatch.call("dropout", _C.dropout, input=input, p=_real(p, "dropout", "p"), training=training, seed=seed)


def dropout_backward(grad_output, mask, p):
    """Gradient of dropout: ``grad_output * mask / (1 - p)``.

    A copy of grad_output when mask is None (eval mode).

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or DLPack):
    CUDA operands run on their GPU and give cupy arrays there.

    Parameters
    ----------
    grad_output : ndarray
        Gradient with respect to dropout's y; float32 or float64, any shape.
    mask : ndarray of bool or None
        The mask dropout returned: grad_output's shape.
    p : float
        The p passed to dropout, in [0, 1).

    Returns
    -------
    ndarray
        grad_output's shape and dtype.

    Raises
    ------
    TypeError
        grad_output is not a numpy.ndarray of float32 or float64; mask is neither
        None nor a bool ndarray; p is not a real number.
    ValueError
        mask's shape differs from grad_output's; p is outside [0, 1).
    """
    return _dispatch.call(
        "dropout_backward", _C.dropout_backward, grad_output=grad_output, mask=mask, p=_real(p, "dropout_backward", "p")
    )


class BatchNormSaved(NamedTuple):
    """What batch_norm_backward needs from batch_norm's forward; treat it as opaque.

    Attributes
    ----------
    input : ndarray
        batch_norm's input as a C-contiguous array of its dtype: the input itself
        (not a copy) when it already was one.
    gamma : ndarray or None
        batch_norm's gamma.
    mean : ndarray of float64, shape (C,)
        The mean used: the batch's in training, the running one in eval.
    invstd : ndarray of float64, shape (C,)
        1 / sqrt(var + eps) for the variance used.
    training : bool
        The mode of the forward.
    has_beta : bool
        Whether beta was given (so that a grad_beta is returned).
    """

    input: np.ndarray  # the C-contiguous input
    gamma: Optional[np.ndarray]
    mean: np.ndarray  # float64 (C,): the statistics used (the batch's in training, else the running ones)
    invstd: np.ndarray  # float64 (C,): 1 / sqrt(var + eps)
    training: bool
    has_beta: bool


def batch_norm(input, gamma=None, beta=None, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
    """Batch normalisation per channel of an (N, C, ...) batch; returns (y, saved).

    ``y = (x - mean) / sqrt(var + eps) * gamma + beta``, the statistics taken per
    channel over N and every trailing dim. training=True uses the batch's mean and
    biased variance and, where running_mean and running_var are given, updates them
    in place as torch does: ``r = (1 - momentum) * r + momentum * stat``, with the
    unbiased variance for running_var (an empty batch leaves them unchanged).
    training=False uses the running statistics.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or DLPack):
    CUDA operands run on their GPU and give cupy arrays there.

    Parameters
    ----------
    input : ndarray, shape (N, C, ...)
        float32 or float64, at least 2-D.
    gamma : ndarray, shape (C,), optional
        Scale; None for 1.
    beta : ndarray, shape (C,), optional
        Shift; None for 0.
    running_mean : ndarray, shape (C,), optional
        Of input's dtype. Required when training is False; in training it must be a
        writeable C-contiguous array, as it is updated in place.
    running_var : ndarray, shape (C,), optional
        As running_mean.
    training : bool, default True
        Batch statistics (True) or running statistics (False).
    momentum : float, default 0.1
        Weight of the batch statistic in the running update (no None cumulative
        average).
    eps : float, default 1e-5
        Added to the variance; >= 0.

    Returns
    -------
    y : ndarray
        input's shape and dtype.
    saved : BatchNormSaved
        For batch_norm_backward. It holds input itself when input is C-contiguous:
        do not modify input in place before the backward.

    Raises
    ------
    TypeError
        An array operand (running statistics included) is not a numpy.ndarray of
        float32 or float64, or the dtypes differ; momentum or eps is not a real number.
    ValueError
        input has fewer than 2 dims; gamma, beta, running_mean or running_var is not
        (C,); training is False and a running statistic is None; eps is negative or
        NaN; training with a single value per channel (N * prod(spatial) == 1); a
        running statistic is read-only or not C-contiguous in training.

    See Also
    --------
    batch_norm_backward

    Examples
    --------
    >>> import numpy as np
    >>> from cnnkit import functional as F
    >>> x = np.arange(24.).reshape(2, 3, 2, 2)
    >>> mean, var = np.zeros(3), np.ones(3)
    >>> y, saved = F.batch_norm(x, running_mean=mean, running_var=var)
    >>> bool(np.abs(y.mean(axis=(0, 2, 3))).max() < 1e-12)
    True
    >>> mean  # updated in place: 0.1 * the batch means 7.5, 11.5, 15.5
    array([0.75, 1.15, 1.55])
    >>> gx, ggamma, gbeta = F.batch_norm_backward(np.ones_like(y), saved)
    >>> ggamma is None and gbeta is None
    True
    """
    training = _bool(training, "batch_norm", "training")
    y, x, mean, invstd = _dispatch.call(
        "batch_norm",
        _C.batch_norm,
        input=input,
        gamma=gamma,
        beta=beta,
        running_mean=running_mean,
        running_var=running_var,
        training=training,
        momentum=_real(momentum, "batch_norm", "momentum"),
        eps=_real(eps, "batch_norm", "eps"),
    )
    return y, BatchNormSaved(x, gamma, mean, invstd, training, beta is not None)


def batch_norm_backward(grad_output, saved):
    """Gradients of batch_norm: (grad_input, grad_gamma, grad_beta).

    In training the gradient flows through the batch statistics too; in eval mode the
    statistics are constants and the gradient is that of the affine map.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or DLPack):
    CUDA operands run on their GPU and give cupy arrays there.

    Parameters
    ----------
    grad_output : ndarray
        Gradient with respect to batch_norm's y: input's shape and dtype.
    saved : BatchNormSaved
        batch_norm's second result.

    Returns
    -------
    grad_input : ndarray
        input's shape and dtype.
    grad_gamma : ndarray, shape (C,), or None
        None where gamma was None.
    grad_beta : ndarray, shape (C,), or None
        None where beta was None.

    Raises
    ------
    TypeError
        saved is not a BatchNormSaved; grad_output is not a numpy.ndarray of input's
        dtype.
    ValueError
        grad_output's shape differs from input's.
    """
    if not isinstance(saved, BatchNormSaved):
        raise TypeError(f"batch_norm_backward: saved: expected the BatchNormSaved from batch_norm, got {type(saved).__name__}")
    return _dispatch.call(
        "batch_norm_backward",
        _C.batch_norm_backward,
        grad_output=grad_output,
        input=saved.input,
        gamma=saved.gamma,
        **{"saved.mean": saved.mean, "saved.invstd": saved.invstd},
        training=saved.training,
        has_beta=saved.has_beta,
    )


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (AlexNet's), as torch's.

    ``y[:, c] = x[:, c] / (k + alpha / size * sum(x[:, j] ** 2)) ** beta`` over the
    channels j in [c - size // 2, c + (size - 1) // 2] that exist (channels outside
    [0, C) count as zero).

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or DLPack):
    CUDA operands run on their GPU and give cupy arrays there.

    Parameters
    ----------
    input : ndarray, shape (N, C, ...)
        float32 or float64, at least 3-D.
    size : int
        Number of neighbouring channels in each window; >= 1.
    alpha : float, default 1e-4
        Multiplicative factor.
    beta : float, default 0.75
        Exponent.
    k : float, default 1.0
        Additive constant.

    Returns
    -------
    ndarray
        input's shape and dtype.

    Raises
    ------
    TypeError
        input is not a numpy.ndarray of float32 or float64; size is not an int;
        alpha, beta or k is not a real number.
    ValueError
        input has fewer than 3 dims; size < 1.

    See Also
    --------
    local_response_norm_backward
    """
    op = "local_response_norm"
    return _dispatch.call(
        op,
        _C.local_response_norm,
        input=input,
        size=_int(size, op, "size"),
        alpha=_real(alpha, op, "alpha"),
        beta=_real(beta, op, "beta"),
        k=_real(k, op, "k"),
    )


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of local_response_norm with respect to its input.

    NumPy or CUDA arrays (CuPy, or any array with ``__cuda_array_interface__`` or DLPack):
    CUDA operands run on their GPU and give cupy arrays there.

    Parameters
    ----------
    grad_output : ndarray
        Gradient with respect to local_response_norm's output: input's shape and dtype.
    input : ndarray, shape (N, C, ...)
        local_response_norm's input.
    size : int
        Number of neighbouring channels in each window; >= 1.
    alpha : float, default 1e-4
        Multiplicative factor.
    beta : float, default 0.75
        Exponent.
    k : float, default 1.0
        Additive constant.
        size, alpha, beta and k as passed to local_response_norm.

    Returns
    -------
    ndarray
        input's shape and dtype.

    Raises
    ------
    TypeError
        grad_output or input is not a numpy.ndarray of float32 or float64, or their
        dtypes differ; size is not an int; alpha, beta or k is not a real number.
    ValueError
        As local_response_norm, or grad_output's shape differs from input's.
    """
    op = "local_response_norm_backward"
    return _dispatch.call(
        op,
        _C.local_response_norm_backward,
        grad_output=grad_output,
        input=input,
        size=_int(size, op, "size"),
        alpha=_real(alpha, op, "alpha"),
        beta=_real(beta, op, "beta"),
        k=_real(k, op, "k"),
    )
