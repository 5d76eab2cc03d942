"""Layers: PyTorch's constructor arguments and default initialisation, Torch7's
explicit forward/backward. All arithmetic goes through cnnkit.functional.

Argument types are normalised by cnnkit._args. Values are checked here at
construction, so that a bad layer fails where it is built rather than at its first
forward; the kernels check them again at each call. A forward checks what only the
layer knows (its input's channels and dtype against its parameters) and names the
layer, not the kernel's internal operands.
"""

import math

import numpy as np

from .. import _device, _random
from .. import functional as F
from .._args import boolean, conv_padding, integer, pair, real
from .module import _FLOAT_DTYPES, Module, Parameter, _is_array

__all__ = [
    "Linear",
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "MaxUnpool2d",
    "AvgPool2d",
    "LPPool2d",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "Flatten",
    "Dropout",
    "BatchNorm2d",
    "LocalResponseNorm",
]

_SIGN = {0: "non-negative", 1: "positive"}


# ---- constructor arguments ------------------------------------------------------------
def _float_dtype(dtype, layer):
    """float32 or float64 as a numpy dtype; None is the default, float32."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d is None or d not in _FLOAT_DTYPES:  # (None == np.dtype("float64") is True)
        got = repr(dtype) if d is None else d
        raise TypeError(f"{layer}: dtype: expected float32 or float64, got {got}")
    return d


def _int_arg(value, layer, name, minimum=1):
    v = integer(value, layer, name)
    if v < minimum:
        raise ValueError(f"{layer}: {name}: expected a {_SIGN[minimum]} int, got {v}")
    return v


def _pair_arg(value, layer, name, minimum=1):
    v = pair(value, layer, name)
    if min(v) < minimum:
        raise ValueError(f"{layer}: {name}: expected {_SIGN[minimum]} ints, got {v}")
    return v


def _pool_padding(padding, kernel, layer):
    """Non-negative, and at most half the kernel (PyTorch's bound, as the kernels check)."""
    padding = _pair_arg(padding, layer, "padding", 0)
    half = (kernel[0] // 2, kernel[1] // 2)
    if padding[0] > half[0] or padding[1] > half[1]:
        raise ValueError(f"{layer}: padding: expected at most half of kernel_size {kernel}, {half}, got {padding}")
    return padding


def _stride_arg(stride, kernel, layer):
    """Pooling stride; None (or an empty tuple, as PyTorch takes) means kernel_size."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    return _pair_arg(stride, layer, "stride")


# ---- forward inputs ---------------------------------------------------------------------
def _check_array(x, layer, name="input", floating=True):
    """x must be an array (float32/float64 when floating)."""
    if not _is_array(x):
        kind = "a numpy.ndarray of float32 or float64" if floating else "a numpy.ndarray"
        raise TypeError(f"{layer}: {name}: expected {kind}, got {type(x).__name__}")
    if floating and _native(x) and x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{layer}: {name}: expected a float32 or float64 array, got {x.dtype}")
    return x


def _native(x):
    """A NumPy or CuPy array; other CUDA arrays (a torch tensor) are left to cnnkit.functional."""
    return isinstance(x.dtype, np.dtype)


def _check_ndim(x, layer, ndim, layout, at_least=False):
    bad = x.ndim < ndim if at_least else x.ndim != ndim
    if bad:
        want = f"{ndim} or more dims" if at_least else f"a {ndim}-D array"
        raise ValueError(f"{layer}: input: expected {want} {layout}, got {x.ndim}-D shape {tuple(x.shape)}")


def _check_like(x, layer, like):
    """An input on another device, or of another dtype, than the layer's parameters
    (array like; None for a layer without any): the kernels take one of each."""
    if like is None or not _native(x):
        return
    if _device.place(x) != _device.place(like):
        raise TypeError(
            f"{layer}: input: expected an array on {_device.describe(like)} (the device of the layer's parameters; "
            f"move the input, or the layer with .to), got one on {_device.describe(x)}"
        )
    if x.dtype != like.dtype:
        raise TypeError(
            f"{layer}: input: expected {like.dtype} (the dtype of the layer's parameters; convert the input with "
            f".astype or the layer with .to), got {x.dtype}"
        )


def _check_image(x, layer):
    """A float NCHW input."""
    _check_array(x, layer)
    _check_ndim(x, layer, 4, "(N, C, H, W)")
    return x


# ---- parameters ------------------------------------------------------------------------
_MAX_BYTES = 2**63 - 1  # NumPy's bound on an array's size in bytes (an npy_intp)


def _check_size(owner, what, shape, names, dtype):
    """ValueError unless an array of `shape` and `dtype` is within NumPy's bound, its
    element count times itemsize at most 2**63 - 1 bytes (Python ints: nothing wraps).

    what: the array as the message calls it, e.g. "weight (out_features, in_features)".
    names[i]: the argument of `owner` that sets dim i (None for a constant); the
    message names the one with the largest dim. A size within the bound that is too
    large for memory is left to the allocation, which raises MemoryError.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes <= _MAX_BYTES:
        return
    blamed = max((i for i, n in enumerate(names) if n is not None), key=lambda i: shape[i])
    raise ValueError(
        f"{owner}: {names[blamed]}: expected a value for which {what} of {dtype} is at most 2**63 - 1 bytes, "
        f"got {shape[blamed]}, which makes it shape {tuple(shape)}, {nbytes} bytes"
    )


def _allocate(layer, what, shape, names, dtype, init):
    """init(shape, dtype) -> the array, once _check_size has let `shape` through.
    The one place a layer's parameters and buffers are allocated."""
    shape = tuple(shape)
    _check_size(layer, what, shape, names, dtype)
    return init(shape, dtype)


def _kaiming_uniform_pair(layer, weight_shape, weight_names, weight_what, fan_in, bias_size, bias_name, dtype):
    """PyTorch's default: kaiming_uniform(a=sqrt(5)) for the weight, which is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias
    (bias_size None: no bias). weight_names, bias_name: the layer's arguments that set
    the dims (see _check_size). The bias is one of the weight's dims, so a weight that
    passes the check has a bias that does."""
    bound = 1.0 / math.sqrt(fan_in)
    draw = lambda shape, dtype: _random.uniform(shape, bound, dtype)  # noqa: E731
    weight = Parameter(_allocate(layer, f"weight {weight_what}", weight_shape, weight_names, dtype, draw))
    bias = None
    if bias_size is not None:
        bias = Parameter(_allocate(layer, f"bias ({bias_name},)", (bias_size,), (bias_name,), dtype, draw))
    return weight, bias


def _accumulate(param, grad):
    if param is not None:
        param.grad += grad


class Linear(Module):
    """Fully connected layer: y = x W^T + b.

    Parameters
    ----------
    in_features : int
        Size of each input sample (positive).
    out_features : int
        Size of each output sample (positive).
    bias : bool, default True
        Whether to learn an additive bias.
    dtype : numpy.float32 or numpy.float64, default float32

    Attributes
    ----------
    weight : Parameter
        (out_features, in_features), U(-1/sqrt(in_features), 1/sqrt(in_features)).
    bias : Parameter or None
        (out_features,), same initialisation.

    Notes
    -----
    Shapes: input (..., in_features) -> output (..., out_features); any leading dims.

    Raises
    ------
    TypeError
        Non-integer features, an unsupported dtype; in forward, a non-array input or
        one of another dtype than the parameters.
    ValueError
        Non-positive features; in forward, an input whose last dim is not
        in_features.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features = _int_arg(in_features, "Linear", "in_features")
        self.out_features = _int_arg(out_features, "Linear", "out_features")
        dtype = _float_dtype(dtype, "Linear")
        self.weight, self.bias = _kaiming_uniform_pair(
            "Linear",
            (self.out_features, self.in_features),
            ("out_features", "in_features"),
            "(out_features, in_features)",
            self.in_features,
            self.out_features if bias else None,
            "out_features",
            dtype,
        )

    def forward(self, x):
        """Apply the layer.

        Parameters
        ----------
        x : numpy.ndarray
            (..., in_features), of the layer's dtype.

        Returns
        -------
        numpy.ndarray
            (..., out_features).
        """
        _check_array(x, "Linear")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: input: expected shape (..., {self.in_features}) (in_features = {self.in_features} "
                f"in the last dim), got shape {tuple(x.shape)}"
            )
        _check_like(x, "Linear", self.weight.data)
        self._save(x)
        return F.linear(x, self.weight.data, None if self.bias is None else self.bias.data)

    def backward(self, grad_output):
        """Backpropagate; adds to weight.grad and bias.grad.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (x,) = self._saved()
        gx, gw, gb = F.linear_backward(grad_output, x, self.weight.data)
        _accumulate(self.weight, gw)
        _accumulate(self.bias, gb)
        return gx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _ConvBase(Module):
    """What Conv2d and ConvTranspose2d share: channel and group checks, the weight and
    bias pair, forward/backward through a functional op pair, and the repr."""

    _op = None  # (forward, backward) in cnnkit.functional
    # repr entries shown only when not at their default
    _optional_repr = ()

    def _init_channels(self, in_channels, out_channels, groups, kernel_size, stride, dilation, dtype):
        name = type(self).__name__
        self.in_channels = _int_arg(in_channels, name, "in_channels")
        self.out_channels = _int_arg(out_channels, name, "out_channels")
        self.groups = _int_arg(groups, name, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{name}: groups: expected a divisor of in_channels ({self.in_channels}) and "
                f"out_channels ({self.out_channels}), got {self.groups}"
            )
        self.kernel_size = _pair_arg(kernel_size, name, "kernel_size")
        self.stride = _pair_arg(stride, name, "stride")
        self.dilation = _pair_arg(dilation, name, "dilation")
        return _float_dtype(dtype, name)

    def forward(self, x):
        """Apply the layer.

        Parameters
        ----------
        x : numpy.ndarray
            (N, in_channels, H, W), of the layer's dtype.

        Returns
        -------
        numpy.ndarray
            (N, out_channels, H_out, W_out).
        """
        name = type(self).__name__
        _check_image(x, name)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name}: input: expected shape[1] == in_channels = {self.in_channels}, got shape {tuple(x.shape)}"
            )
        _check_like(x, name, self.weight.data)
        self._save(x)
        return self._op[0](x, self.weight.data, None if self.bias is None else self.bias.data, **self._args())

    def backward(self, grad_output):
        """Backpropagate; adds to weight.grad and bias.grad.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (x,) = self._saved()
        gx, gw, gb = self._op[1](grad_output, x, self.weight.data, **self._args())
        _accumulate(self.weight, gw)
        _accumulate(self.bias, gb)
        return gx

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        for name, default in self._optional_repr:
            value = getattr(self, name)
            if value != default:
                s += f", {name}={value}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvBase):
    """2-D convolution (cross-correlation), as torch.nn.Conv2d.

    Parameters
    ----------
    in_channels, out_channels : int
        Positive; both divisible by groups.
    kernel_size : int or (int, int)
        Positive.
    stride : int or (int, int), default 1
        Positive.
    padding : int, (int, int), 'valid' or 'same', default 0
        Zero padding on each side (non-negative); 'same' needs stride 1.
    dilation : int or (int, int), default 1
        Positive.
    groups : int, default 1
        Positive divisor of in_channels and out_channels.
    bias : bool, default True
    dtype : numpy.float32 or numpy.float64, default float32

    Attributes
    ----------
    weight : Parameter
        (out_channels, in_channels / groups, kH, kW), PyTorch's default
        initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels /
        groups * kH * kW.
    bias : Parameter or None
        (out_channels,).

    Notes
    -----
    Shapes: input (N, in_channels, H, W) -> output (N, out_channels, H_out, W_out), with
    H_out = floor((H + 2 padding - dilation (kH - 1) - 1) / stride) + 1.

    Raises
    ------
    TypeError
        A non-integer size, an unsupported dtype; in forward, a non-array input or
        one of another dtype than the parameters.
    ValueError
        A non-positive size, negative padding, groups that do not divide the
        channels, 'same' with a stride; in forward, an input that is not 4-D or
        has other than in_channels channels, or is too small for the kernel.
    """

    _op = (F.conv2d, F.conv2d_backward)
    _optional_repr = (("padding", (0, 0)), ("dilation", (1, 1)), ("groups", 1))

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        dtype=np.float32,
    ):
        super().__init__()
        dtype = self._init_channels(in_channels, out_channels, groups, kernel_size, stride, dilation, dtype)
        if isinstance(padding, str):
            conv_padding(padding, self.kernel_size, self.stride, self.dilation, "Conv2d")  # 'valid'/'same' only
            self.padding = padding
        else:
            self.padding = _pair_arg(padding, "Conv2d", "padding", 0)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        self.weight, self.bias = _kaiming_uniform_pair(
            "Conv2d",
            (self.out_channels, self.in_channels // self.groups, kh, kw),
            ("out_channels", "in_channels", "kernel_size", "kernel_size"),
            "(out_channels, in_channels / groups, kH, kW)",
            fan_in,
            self.out_channels if bias else None,
            "out_channels",
            dtype,
        )

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


class ConvTranspose2d(_ConvBase):
    """Transposed 2-D convolution, as torch.nn.ConvTranspose2d.

    Parameters
    ----------
    in_channels, out_channels : int
        Positive; both divisible by groups.
    kernel_size : int or (int, int)
        Positive.
    stride : int or (int, int), default 1
        Positive.
    padding : int or (int, int), default 0
        Non-negative; removed from each side of the full output.
    output_padding : int or (int, int), default 0
        Non-negative, and smaller than stride or dilation on each axis.
    groups : int, default 1
    bias : bool, default True
    dilation : int or (int, int), default 1
        Positive.
    dtype : numpy.float32 or numpy.float64, default float32

    Attributes
    ----------
    weight : Parameter
        (in_channels, out_channels / groups, kH, kW); fan_in for the initialisation
        is out_channels / groups * kH * kW, as in PyTorch.
    bias : Parameter or None
        (out_channels,).

    Notes
    -----
    Shapes: input (N, in_channels, H, W) -> output (N, out_channels, H_out, W_out), with
    H_out = (H - 1) stride - 2 padding + dilation (kH - 1) + output_padding + 1.

    Raises
    ------
    TypeError, ValueError
        As Conv2d; also for an output_padding not smaller than stride or dilation.
    """

    _op = (F.conv_transpose2d, F.conv_transpose2d_backward)
    _optional_repr = (("padding", (0, 0)), ("output_padding", (0, 0)), ("dilation", (1, 1)), ("groups", 1))

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups=1,
        bias=True,
        dilation=1,
        dtype=np.float32,
    ):
        super().__init__()
        dtype = self._init_channels(in_channels, out_channels, groups, kernel_size, stride, dilation, dtype)
        self.padding = _pair_arg(padding, "ConvTranspose2d", "padding", 0)
        self.output_padding = _pair_arg(output_padding, "ConvTranspose2d", "output_padding", 0)
        if any(op >= s and op >= d for op, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(
                f"ConvTranspose2d: output_padding: expected values smaller than stride {self.stride} or dilation "
                f"{self.dilation}, got {self.output_padding}"
            )
        kh, kw = self.kernel_size
        # PyTorch computes fan_in from weight.shape[1], i.e. out_channels/groups * kH * kW.
        fan_in = self.out_channels // self.groups * kh * kw
        self.weight, self.bias = _kaiming_uniform_pair(
            "ConvTranspose2d",
            (self.in_channels, self.out_channels // self.groups, kh, kw),
            ("in_channels", "out_channels", "kernel_size", "kernel_size"),
            "(in_channels, out_channels / groups, kH, kW)",
            fan_in,
            self.out_channels if bias else None,
            "out_channels",
            dtype,
        )

    def _args(self):
        return dict(
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            groups=self.groups,
            dilation=self.dilation,
        )


class MaxPool2d(Module):
    """Max pooling that always records its switches, as torch.nn.MaxPool2d.

    Parameters
    ----------
    kernel_size : int or (int, int)
        Positive.
    stride : int, (int, int) or None, default None
        Positive; None means kernel_size.
    padding : int or (int, int), default 0
        Implicit -inf padding: non-negative and at most half of kernel_size.
    dilation : int or (int, int), default 1
        Positive.
    return_indices : bool, default False
        forward returns (output, switches) instead of output.
    ceil_mode : bool, default False
        Round the output size up rather than down.

    Attributes
    ----------
    switches : numpy.ndarray or None
        int64, the output's shape: the flat index h * W + w of each window's maximum
        within its (n, c) plane (torch's indices), from the last forward.
    input_shape : tuple or None
        Shape of the last forward's input.

    Notes
    -----
    Shapes: input (N, C, H, W) -> output (N, C, H_out, W_out), with H_out =
    floor((H + 2 padding - dilation (kH - 1) - 1) / stride) + 1 (ceil with ceil_mode).

    Raises
    ------
    TypeError
        Non-integer sizes; in forward, a non-array or non-float input.
    ValueError
        Non-positive kernel_size, stride or dilation, bad padding; in forward, an
        input that is not 4-D or is smaller than the window.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = _pair_arg(kernel_size, "MaxPool2d", "kernel_size")
        self.stride = _stride_arg(stride, self.kernel_size, "MaxPool2d")
        self.padding = _pool_padding(padding, self.kernel_size, "MaxPool2d")
        self.dilation = _pair_arg(dilation, "MaxPool2d", "dilation")
        self.return_indices = boolean(return_indices, "MaxPool2d", "return_indices")
        self.ceil_mode = boolean(ceil_mode, "MaxPool2d", "ceil_mode")
        self.switches = None
        self.input_shape = None

    def clear_state(self):
        """Forget the last forward's state, switches and input_shape included."""
        super().clear_state()
        self.switches = None
        self.input_shape = None

    def forward(self, x):
        """Pool x, recording the switches.

        Parameters
        ----------
        x : numpy.ndarray
            (N, C, H, W), float32 or float64.

        Returns
        -------
        numpy.ndarray
            (N, C, H_out, W_out); with return_indices, the tuple (output, switches).
        """
        _check_image(x, "MaxPool2d")
        y, self.switches = F.max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=True,
        )
        self.input_shape = tuple(x.shape)
        self._save(self.switches, self.input_shape)
        return (y, self.switches) if self.return_indices else y

    def backward(self, grad_output):
        """Route grad_output to the inputs the switches name (summed where windows overlap).

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        switches, input_shape = self._saved()
        return F.max_pool2d_backward(grad_output, switches, input_shape)

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


class MaxUnpool2d(Module):
    """Unpooling through the switches of the MaxPool2d it is paired with.

    Parameters
    ----------
    pool : MaxPool2d
        The pool whose last forward's switches, kernel_size, stride and padding are
        used. It is referenced, not owned (not a submodule).

    Notes
    -----
    Shapes: input: the pool's output shape (N, C, H_out, W_out) -> output (N, C, H, W), the
    pool's input size unless output_size is given.

    Raises
    ------
    TypeError
        If pool is not a MaxPool2d; in forward, a non-array input.
    RuntimeError
        In forward, if the pool has not run forward.
    ValueError
        In forward, an input whose shape is not that of the pool's output, or an
        output_size the switches do not fit.
    """

    def __init__(self, pool):
        super().__init__()
        if not isinstance(pool, MaxPool2d):
            raise TypeError(f"MaxUnpool2d: pool: expected a MaxPool2d, got {type(pool).__name__}")
        object.__setattr__(self, "pool", pool)  # a reference, not a child: it is not part of this module

    def forward(self, x, output_size=None):
        """Scatter x to the positions the pool's switches name; zeros elsewhere.

        Parameters
        ----------
        x : numpy.ndarray
            Of the pool's output shape.
        output_size : (H, W) or (N, C, H, W), optional
            Default: the pool's input size.

        Returns
        -------
        numpy.ndarray
            (N, C, H, W).
        """
        pool = self.pool
        if pool.switches is None:
            raise RuntimeError("MaxUnpool2d.forward: its MaxPool2d has not run forward yet (no switches)")
        _check_image(x, "MaxUnpool2d")
        switches = pool.switches
        if tuple(x.shape) != switches.shape:
            raise ValueError(
                f"MaxUnpool2d: input: expected shape {switches.shape} (the output of its MaxPool2d's last forward), "
                f"got {tuple(x.shape)}"
            )
        if output_size is None:
            output_size = pool.input_shape[-2:]
        elif not isinstance(output_size, (tuple, list)):
            raise TypeError(
                f"MaxUnpool2d: output_size: expected (H, W) or (N, C, H, W), got {type(output_size).__name__}"
            )
        self._save(switches)
        return F.max_unpool2d(x, switches, pool.kernel_size, pool.stride, pool.padding, output_size=output_size)

    def backward(self, grad_output):
        """Gather grad_output at the switches.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (switches,) = self._saved()
        return F.max_unpool2d_backward(grad_output, switches)

    def extra_repr(self):
        return f"kernel_size={self.pool.kernel_size}, stride={self.pool.stride}"


class AvgPool2d(Module):
    """Average pooling, as torch.nn.AvgPool2d.

    Parameters
    ----------
    kernel_size : int or (int, int)
        Positive.
    stride : int, (int, int) or None, default None
        Positive; None means kernel_size.
    padding : int or (int, int), default 0
        Zero padding: non-negative and at most half of kernel_size.
    ceil_mode : bool, default False
        Round the output size up rather than down.
    count_include_pad : bool, default True
        Whether the padding counts in each window's divisor.

    Notes
    -----
    Shapes: input (N, C, H, W) -> output (N, C, H_out, W_out), with H_out =
    floor((H + 2 padding - kH) / stride) + 1 (ceil with ceil_mode).

    Raises
    ------
    TypeError
        Non-integer sizes; in forward, a non-array or non-float input.
    ValueError
        Non-positive kernel_size or stride, bad padding; in forward, an input that
        is not 4-D or is smaller than the window.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size = _pair_arg(kernel_size, "AvgPool2d", "kernel_size")
        self.stride = _stride_arg(stride, self.kernel_size, "AvgPool2d")
        self.padding = _pool_padding(padding, self.kernel_size, "AvgPool2d")
        self.ceil_mode = boolean(ceil_mode, "AvgPool2d", "ceil_mode")
        self.count_include_pad = boolean(count_include_pad, "AvgPool2d", "count_include_pad")

    def _args(self):
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )

    def forward(self, x):
        """Average-pool x.

        Parameters
        ----------
        x : numpy.ndarray
            (N, C, H, W), float32 or float64.

        Returns
        -------
        numpy.ndarray
            (N, C, H_out, W_out).
        """
        _check_image(x, "AvgPool2d")
        self._save(tuple(x.shape))
        return F.avg_pool2d(x, **self._args())

    def backward(self, grad_output):
        """Backpropagate.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (input_shape,) = self._saved()
        return F.avg_pool2d_backward(grad_output, input_shape, **self._args())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class LPPool2d(Module):
    """Power-average pooling, PyTorch's definition: (sum over the window of x^p)^(1/p);
    L2 pooling for norm_type 2.

    Parameters
    ----------
    norm_type : float
        The power p: non-zero; inf gives the max of |x|.
    kernel_size : int or (int, int)
        Positive.
    stride : int, (int, int) or None, default None
        Positive; None means kernel_size.
    ceil_mode : bool, default False

    Notes
    -----
    Shapes: input (N, C, H, W) -> output (N, C, H_out, W_out), with H_out =
    floor((H - kH) / stride) + 1 (ceil with ceil_mode).

    Raises
    ------
    TypeError
        A non-real norm_type, non-integer sizes; in forward, a non-array or
        non-float input.
    ValueError
        norm_type zero or NaN, non-positive sizes; in forward, an input that is not
        4-D or is smaller than the window.
    """

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        self.norm_type = real(norm_type, "LPPool2d", "norm_type")
        if not (self.norm_type < 0 or self.norm_type > 0):
            raise ValueError(f"LPPool2d: norm_type: expected a non-zero number, got {self.norm_type}")
        self.kernel_size = _pair_arg(kernel_size, "LPPool2d", "kernel_size")
        self.stride = _stride_arg(stride, self.kernel_size, "LPPool2d")
        self.ceil_mode = boolean(ceil_mode, "LPPool2d", "ceil_mode")

    def _args(self):
        return dict(norm_type=self.norm_type, kernel_size=self.kernel_size, stride=self.stride, ceil_mode=self.ceil_mode)

    def forward(self, x):
        """Power-average-pool x.

        Parameters
        ----------
        x : numpy.ndarray
            (N, C, H, W), float32 or float64.

        Returns
        -------
        numpy.ndarray
            (N, C, H_out, W_out).
        """
        _check_image(x, "LPPool2d")
        self._save(x)
        return F.lp_pool2d(x, **self._args())

    def backward(self, grad_output):
        """Backpropagate (no gradient through windows whose power sum is zero).

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (x,) = self._saved()
        return F.lp_pool2d_backward(grad_output, x, **self._args())

    def extra_repr(self):
        return f"norm_type={self.norm_type:g}, kernel_size={self.kernel_size}, stride={self.stride}"


class ReLU(Module):
    """max(x, 0) elementwise; NaN stays NaN.

    Notes
    -----
    Shapes: Any shape; the output has the input's.

    Raises
    ------
    TypeError
        In forward, a non-array or non-float input.
    """

    def forward(self, x):
        """Apply ReLU.

        Parameters
        ----------
        x : numpy.ndarray
            Any shape, float32 or float64.

        Returns
        -------
        numpy.ndarray
            Of x's shape.
        """
        _check_array(x, "ReLU")
        self._save(x)
        return F.relu(x)

    def backward(self, grad_output):
        """grad_output where the input was positive (or NaN), else 0.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (x,) = self._saved()
        return F.relu_backward(grad_output, x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)) elementwise.

    Notes
    -----
    Shapes: Any shape; the output has the input's.

    Raises
    ------
    TypeError
        In forward, a non-array or non-float input.
    """

    def forward(self, x):
        """Apply the sigmoid.

        Parameters
        ----------
        x : numpy.ndarray
            Any shape, float32 or float64.

        Returns
        -------
        numpy.ndarray
            Of x's shape.
        """
        _check_array(x, "Sigmoid")
        y = F.sigmoid(x)
        self._save(y)
        return y

    def backward(self, grad_output):
        """grad_output * y * (1 - y), y the forward's output.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (y,) = self._saved()
        return F.sigmoid_backward(grad_output, y)


class Tanh(Module):
    """Hyperbolic tangent elementwise.

    Notes
    -----
    Shapes: Any shape; the output has the input's.

    Raises
    ------
    TypeError
        In forward, a non-array or non-float input.
    """

    def forward(self, x):
        """Apply tanh.

        Parameters
        ----------
        x : numpy.ndarray
            Any shape, float32 or float64.

        Returns
        -------
        numpy.ndarray
            Of x's shape.
        """
        _check_array(x, "Tanh")
        y = F.tanh(x)
        self._save(y)
        return y

    def backward(self, grad_output):
        """grad_output * (1 - y^2), y the forward's output.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (y,) = self._saved()
        return F.tanh_backward(grad_output, y)


def _check_dim(x, layer, dim):
    r = max(1, x.ndim)
    if not -r <= dim < r:
        # IndexError, as the functional op and PyTorch raise for a dim out of range.
        raise IndexError(f"{layer}: dim: expected a value in [{-r}, {r - 1}] for a {x.ndim}-D input, got {dim}")


class Softmax(Module):
    """Softmax along one dim.

    Parameters
    ----------
    dim : int, default -1
        The axis to normalise (the last; pass 1 for the channels of NCHW).

    Notes
    -----
    Shapes: Any shape; the output has the input's.

    Raises
    ------
    TypeError
        A non-integer dim; in forward, a non-array or non-float input.
    IndexError
        In forward, a dim out of range for the input.
    """

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = integer(dim, "Softmax", "dim")

    def forward(self, x):
        """Softmax along dim.

        Parameters
        ----------
        x : numpy.ndarray
            Any shape, float32 or float64.

        Returns
        -------
        numpy.ndarray
            Of x's shape.
        """
        _check_array(x, "Softmax")
        _check_dim(x, "Softmax", self.dim)
        y = F.softmax(x, dim=self.dim)
        self._save(y)
        return y

    def backward(self, grad_output):
        """y * (grad_output - sum(grad_output * y)) along dim, y the forward's output.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (y,) = self._saved()
        return F.softmax_backward(grad_output, y, dim=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along one dim, computed stably.

    Parameters
    ----------
    dim : int, default -1
        The axis to normalise.

    Notes
    -----
    Shapes: Any shape; the output has the input's.

    Raises
    ------
    TypeError
        A non-integer dim; in forward, a non-array or non-float input.
    IndexError
        In forward, a dim out of range for the input.
    """

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = integer(dim, "LogSoftmax", "dim")

    def forward(self, x):
        """Log-softmax along dim.

        Parameters
        ----------
        x : numpy.ndarray
            Any shape, float32 or float64.

        Returns
        -------
        numpy.ndarray
            Of x's shape.
        """
        _check_array(x, "LogSoftmax")
        _check_dim(x, "LogSoftmax", self.dim)
        y = F.log_softmax(x, dim=self.dim)
        self._save(y)
        return y

    def backward(self, grad_output):
        """grad_output - exp(y) * sum(grad_output) along dim, y the forward's output.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (y,) = self._saved()
        return F.log_softmax_backward(grad_output, y, dim=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Flatten(Module):
    """Merges dims start_dim..end_dim into one, as torch.nn.Flatten.

    Parameters
    ----------
    start_dim : int, default 1
        First dim to merge (the default keeps the batch dim).
    end_dim : int, default -1
        Last dim to merge (inclusive).

    Notes
    -----
    Shapes: input (N, *dims) -> output (N, prod(dims)) with the defaults. Any dtype.

    Raises
    ------
    TypeError
        Non-integer dims; in forward, a non-array input.
    ValueError
        start_dim after end_dim; in forward, an input with too few dims for them.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = integer(start_dim, "Flatten", "start_dim")
        self.end_dim = integer(end_dim, "Flatten", "end_dim")
        if (self.start_dim < 0) == (self.end_dim < 0) and self.start_dim > self.end_dim:
            raise ValueError(
                f"Flatten: start_dim: expected a dim at or before end_dim ({self.end_dim}), got {self.start_dim}"
            )

    def forward(self, x):
        """Merge dims start_dim..end_dim.

        Parameters
        ----------
        x : numpy.ndarray
            Any array with enough dims (any dtype).

        Returns
        -------
        numpy.ndarray
            A reshaped view of x where possible.
        """
        _check_array(x, "Flatten", floating=False)
        shape = tuple(x.shape)
        # A 0-d input counts as 1-d, as in torch.flatten.
        ndim = max(1, len(shape))
        need = max(d + 1 if d >= 0 else -d for d in (self.start_dim, self.end_dim))
        if ndim < need:
            raise ValueError(
                f"Flatten: input: expected {need} or more dims for start_dim={self.start_dim}, "
                f"end_dim={self.end_dim}, got {len(shape)}-D shape {shape}"
            )
        start, end = self.start_dim % ndim, self.end_dim % ndim
        if start > end:
            raise ValueError(
                f"Flatten: start_dim: expected a dim at or before end_dim ({self.end_dim}) for a "
                f"{len(shape)}-D input, got {self.start_dim}"
            )
        self._save(shape)
        if not shape:
            return x.reshape(1)
        merged = int(np.prod(shape[start : end + 1], dtype=np.int64))
        # Explicit sizes rather than -1, so that an empty batch keeps its shape.
        return x.reshape(shape[:start] + (merged,) + shape[end + 1 :])

    def backward(self, grad_output):
        """grad_output reshaped to the input's shape.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (shape,) = self._saved()
        return grad_output.reshape(shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Inverted dropout.

    In training, each element is zeroed with probability p and the rest are scaled by
    1 / (1 - p); in eval mode it is the identity. Masks come from cnnkit's random
    stream (cnnkit.manual_seed).

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing, in [0, 1).

    Attributes
    ----------
    sample_offset : int
        Index in the global batch of this process's first sample (0 in one process;
        DataParallel sets it): the mask is this slice of the global batch's mask, so
        that ranks that split a batch draw the mask one process would.

    Notes
    -----
    Shapes: Any shape; the output has the input's.

    Raises
    ------
    TypeError
        A non-real p; in forward, a non-array or non-float input.
    ValueError
        p outside [0, 1).
    """

    def __init__(self, p=0.5):
        super().__init__()
        p = real(p, "Dropout", "p")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p: expected a probability in [0, 1), got {p}")
        self.p = p
        self.sample_offset = 0

    def forward(self, x):
        """Drop elements (training) or pass x through (eval mode, or p = 0).

        Parameters
        ----------
        x : numpy.ndarray
            Any shape, float32 or float64.

        Returns
        -------
        numpy.ndarray
            Of x's shape; x itself in eval mode.
        """
        _check_array(x, "Dropout")
        if not self.training or self.p == 0.0:
            self._save(None)
            return x
        seed = _random.next_seed()
        if self.sample_offset and x.ndim and x.size:
            seed = _random.skip(seed, self.sample_offset * (x.size // x.shape[0]))
        y, mask = F.dropout(x, self.p, training=True, seed=seed)
        self._save(mask)
        return y

    def backward(self, grad_output):
        """grad_output * mask / (1 - p); grad_output itself in eval mode.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (mask,) = self._saved()
        if mask is None:
            return grad_output
        return F.dropout_backward(grad_output, mask, self.p)

    def extra_repr(self):
        return f"p={self.p}"


class BatchNorm2d(Module):
    """Batch norm over (N, H, W) for each channel, as torch.nn.BatchNorm2d.

    Parameters
    ----------
    num_features : int
        Number of channels C (positive).
    eps : float, default 1e-5
        Added to the variance (non-negative).
    momentum : float, default 0.1
        Weight of the batch statistic in the running statistics, in [0, 1].
    affine : bool, default True
        Learn a scale (weight, ones) and a shift (bias, zeros).
    track_running_stats : bool, default True
        Keep running_mean and running_var (buffers) and use them in eval mode;
        without them batch statistics are used in both modes.
    dtype : numpy.float32 or numpy.float64, default float32

    Notes
    -----
    Shapes: input (N, num_features, H, W) -> output of the same shape.

    Raises
    ------
    TypeError
        Non-numeric arguments, an unsupported dtype; in forward, a non-array input
        or one of another dtype than the layer.
    ValueError
        Bad values; in forward, an input that is not 4-D or has other than
        num_features channels, or one value per channel in training.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=np.float32):
        super().__init__()
        name = type(self).__name__  # SyncBatchNorm2d's too
        self.num_features = _int_arg(num_features, name, "num_features")
        self.eps = real(eps, name, "eps")
        if not self.eps >= 0:
            raise ValueError(f"{name}: eps: expected a non-negative value, got {self.eps}")
        self.momentum = real(momentum, name, "momentum")
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"{name}: momentum: expected a value in [0, 1], got {self.momentum}")
        self.affine = boolean(affine, name, "affine")
        self.track_running_stats = boolean(track_running_stats, name, "track_running_stats")
        dtype = _float_dtype(dtype, name)
        n = self.num_features

        def vector(what, init):
            return _allocate(name, f"{what} (num_features,)", (n,), ("num_features",), dtype, init)

        self.weight = Parameter(vector("weight", np.ones)) if self.affine else None
        self.bias = Parameter(vector("bias", np.zeros)) if self.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", vector("running_mean", np.zeros))
            self.register_buffer("running_var", vector("running_var", np.ones))
        else:
            self.running_mean = None
            self.running_var = None

    def _layer_array(self):
        """An array of the parameters or buffers (their dtype and device); None without either."""
        if self.weight is not None:
            return self.weight.data
        return self.running_mean

    def forward(self, x):
        """Normalise with the batch's statistics (training; the running ones are
        updated in place) or the running statistics (eval).

        Parameters
        ----------
        x : numpy.ndarray
            (N, num_features, H, W), of the layer's dtype.

        Returns
        -------
        numpy.ndarray
            Of x's shape.
        """
        name = type(self).__name__
        _check_image(x, name)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: input: expected shape[1] == num_features = {self.num_features}, "
                f"got shape {tuple(x.shape)}"
            )
        _check_like(x, name, self._layer_array())
        gamma = self.weight.data if self.affine else None
        beta = self.bias.data if self.affine else None
        use_batch_stats = self.training or not self.track_running_stats
        y, saved = F.batch_norm(
            x,
            gamma,
            beta,
            self.running_mean,
            self.running_var,
            training=use_batch_stats,
            momentum=self.momentum,
            eps=self.eps,
        )
        self._save(saved)
        return y

    def backward(self, grad_output):
        """Backpropagate; adds to weight.grad and bias.grad (when affine).

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (saved,) = self._saved()
        gx, gg, gb = F.batch_norm_backward(grad_output, saved)
        if self.affine:
            _accumulate(self.weight, gg)
            _accumulate(self.bias, gb)
        return gx

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class LocalResponseNorm(Module):
    """Across-channel local response normalisation, PyTorch's definition:
    y = x / (k + alpha / size * sum of x^2 over size neighbouring channels)^beta.

    Parameters
    ----------
    size : int
        Number of channels in each window (positive).
    alpha : float, default 1e-4
    beta : float, default 0.75
    k : float, default 1.0

    Notes
    -----
    Shapes: input (N, C, ...) with 3 or more dims -> output of the same shape.

    Raises
    ------
    TypeError
        A non-integer size or non-real alpha, beta or k; in forward, a non-array or
        non-float input.
    ValueError
        A non-positive size; in forward, an input of fewer than 3 dims.
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = _int_arg(size, "LocalResponseNorm", "size")
        self.alpha = real(alpha, "LocalResponseNorm", "alpha")
        self.beta = real(beta, "LocalResponseNorm", "beta")
        self.k = real(k, "LocalResponseNorm", "k")

    def _args(self):
        return dict(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def forward(self, x):
        """Normalise across channels.

        Parameters
        ----------
        x : numpy.ndarray
            (N, C, ...) with 3 or more dims, float32 or float64.

        Returns
        -------
        numpy.ndarray
            Of x's shape.
        """
        _check_array(x, "LocalResponseNorm")
        _check_ndim(x, "LocalResponseNorm", 3, "(N, C, ...)", at_least=True)
        self._save(x)
        return F.local_response_norm(x, **self._args())

    def backward(self, grad_output):
        """Backpropagate.

        Parameters
        ----------
        grad_output : numpy.ndarray
            Gradient with respect to forward's output, of its shape.

        Returns
        -------
        numpy.ndarray
            Gradient with respect to forward's input, of its shape.
        """
        (x,) = self._saved()
        return F.local_response_norm_backward(grad_output, x, **self._args())

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
