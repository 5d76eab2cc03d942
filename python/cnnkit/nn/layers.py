"""Layers: PyTorch's constructor arguments and default initialisation, Torch7's
explicit forward/backward. All arithmetic goes through cnnkit.functional."""

import math

import numpy as np

from .. import _random
from .. import functional as F
from .._args import pair
from .module import Module, Parameter

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


def _float_dtype(dtype, layer):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{layer}: dtype: expected float32 or float64, got {dtype}")
    return dtype


def _positive_int(value, layer, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{layer}: {name}: expected a positive int, got {value!r}")
    return int(value)


def _kaiming_uniform_pair(weight_shape, fan_in, bias_size, dtype):
    """PyTorch's default: kaiming_uniform(a=sqrt(5)) for the weight, which is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias
    (bias_size None: no bias)."""
    bound = 1.0 / math.sqrt(fan_in)
    weight = Parameter(_random.uniform(weight_shape, bound, dtype))
    bias = None if bias_size is None else Parameter(_random.uniform((bias_size,), bound, dtype))
    return weight, bias


def _accumulate(param, grad):
    if param is not None:
        param.grad += grad


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int(in_features, "Linear", "in_features")
        self.out_features = _positive_int(out_features, "Linear", "out_features")
        dtype = _float_dtype(dtype, "Linear")
        self.weight, self.bias = _kaiming_uniform_pair(
            (self.out_features, self.in_features), self.in_features, self.out_features if bias else None, dtype
        )

    def forward(self, x):
        self._save(x)
        return F.linear(x, self.weight.data, None if self.bias is None else self.bias.data)

    def backward(self, grad_output):
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
        self.in_channels = _positive_int(in_channels, name, "in_channels")
        self.out_channels = _positive_int(out_channels, name, "out_channels")
        self.groups = _positive_int(groups, name, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: groups: expected a divisor of in_channels ({in_channels}) and "
                f"out_channels ({out_channels}), got {groups}"
            )
        self.kernel_size = pair(kernel_size, name, "kernel_size")
        self.stride = pair(stride, name, "stride")
        self.dilation = pair(dilation, name, "dilation")
        return _float_dtype(dtype, name)

    def forward(self, x):
        self._save(x)
        return self._op[0](x, self.weight.data, None if self.bias is None else self.bias.data, **self._args())

    def backward(self, grad_output):
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
    """2-D convolution; weight (out_channels, in_channels/groups, kH, kW)."""

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
        self.padding = padding if isinstance(padding, str) else pair(padding, "Conv2d", "padding")
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        self.weight, self.bias = _kaiming_uniform_pair(
            (out_channels, in_channels // groups, kh, kw), fan_in, out_channels if bias else None, dtype
        )

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


class ConvTranspose2d(_ConvBase):
    """Transposed 2-D convolution; weight (in_channels, out_channels/groups, kH, kW)."""

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
        self.padding = pair(padding, "ConvTranspose2d", "padding")
        self.output_padding = pair(output_padding, "ConvTranspose2d", "output_padding")
        kh, kw = self.kernel_size
        # PyTorch computes fan_in from weight.shape[1], i.e. out_channels/groups * kH * kW.
        fan_in = out_channels // groups * kh * kw
        self.weight, self.bias = _kaiming_uniform_pair(
            (in_channels, out_channels // groups, kh, kw), fan_in, out_channels if bias else None, dtype
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
    """Max pooling that always records its switches (`.switches`, int64, torch's indices)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = pair(kernel_size, "MaxPool2d", "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "MaxPool2d", "stride")
        self.padding = pair(padding, "MaxPool2d", "padding")
        self.dilation = pair(dilation, "MaxPool2d", "dilation")
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)
        self.switches = None
        self.input_shape = None

    def clear_state(self):
        super().clear_state()
        self.switches = None
        self.input_shape = None

    def forward(self, x):
        y, self.switches = F.max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=True,
        )
        self.input_shape = x.shape
        self._save(self.switches, x.shape)
        return (y, self.switches) if self.return_indices else y

    def backward(self, grad_output):
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
    """Unpooling through the switches of the MaxPool2d it is paired with; the output
    has the pool's input size unless `output_size` is given."""

    def __init__(self, pool):
        super().__init__()
        if not isinstance(pool, MaxPool2d):
            raise TypeError(f"MaxUnpool2d: pool: expected a MaxPool2d, got {type(pool).__name__}")
        object.__setattr__(self, "pool", pool)  # a reference, not a child: it is not part of this module

    def forward(self, x, output_size=None):
        pool = self.pool
        if pool.switches is None:
            raise RuntimeError("MaxUnpool2d.forward: its MaxPool2d has not run forward yet (no switches)")
        if output_size is None:
            output_size = pool.input_shape[-2:]
        switches = pool.switches
        self._save(switches)
        return F.max_unpool2d(x, switches, pool.kernel_size, pool.stride, pool.padding, output_size=output_size)

    def backward(self, grad_output):
        (switches,) = self._saved()
        return F.max_unpool2d_backward(grad_output, switches)

    def extra_repr(self):
        return f"kernel_size={self.pool.kernel_size}, stride={self.pool.stride}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size = pair(kernel_size, "AvgPool2d", "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "AvgPool2d", "stride")
        self.padding = pair(padding, "AvgPool2d", "padding")
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def _args(self):
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )

    def forward(self, x):
        self._save(x.shape)
        return F.avg_pool2d(x, **self._args())

    def backward(self, grad_output):
        (input_shape,) = self._saved()
        return F.avg_pool2d_backward(grad_output, input_shape, **self._args())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class LPPool2d(Module):
    """Power-average pooling (L2 pooling for norm_type 2), PyTorch's definition:
    (sum over the window of x^p)^(1/p)."""

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        self.norm_type = float(norm_type)
        self.kernel_size = pair(kernel_size, "LPPool2d", "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "LPPool2d", "stride")
        self.ceil_mode = bool(ceil_mode)

    def _args(self):
        return dict(norm_type=self.norm_type, kernel_size=self.kernel_size, stride=self.stride, ceil_mode=self.ceil_mode)

    def forward(self, x):
        self._save(x)
        return F.lp_pool2d(x, **self._args())

    def backward(self, grad_output):
        (x,) = self._saved()
        return F.lp_pool2d_backward(grad_output, x, **self._args())

    def extra_repr(self):
        return f"norm_type={self.norm_type:g}, kernel_size={self.kernel_size}, stride={self.stride}"


class ReLU(Module):
    def forward(self, x):
        self._save(x)
        return F.relu(x)

    def backward(self, grad_output):
        (x,) = self._saved()
        return F.relu_backward(grad_output, x)


class Sigmoid(Module):
    def forward(self, x):
        y = F.sigmoid(x)
        self._save(y)
        return y

    def backward(self, grad_output):
        (y,) = self._saved()
        return F.sigmoid_backward(grad_output, y)


class Tanh(Module):
    def forward(self, x):
        y = F.tanh(x)
        self._save(y)
        return y

    def backward(self, grad_output):
        (y,) = self._saved()
        return F.tanh_backward(grad_output, y)


class Softmax(Module):
    """Softmax along dim (default -1, the last axis; pass dim=1 for the channels of NCHW)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        y = F.softmax(x, dim=self.dim)
        self._save(y)
        return y

    def backward(self, grad_output):
        (y,) = self._saved()
        return F.softmax_backward(grad_output, y, dim=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        y = F.log_softmax(x, dim=self.dim)
        self._save(y)
        return y

    def backward(self, grad_output):
        (y,) = self._saved()
        return F.log_softmax_backward(grad_output, y, dim=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Flatten(Module):
    """Merges dims start_dim..end_dim (default: all but the batch dim)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        shape = x.shape
        start = self.start_dim % len(shape)
        end = self.end_dim % len(shape)
        merged = int(np.prod(shape[start : end + 1], dtype=np.int64))
        self._save(shape)
        # Explicit sizes rather than -1, so that an empty batch keeps its shape.
        return x.reshape(shape[:start] + (merged,) + shape[end + 1 :])

    def backward(self, grad_output):
        (shape,) = self._saved()
        return grad_output.reshape(shape)


class Dropout(Module):
    """Inverted dropout: in training, zeroes each element with probability p and scales
    the rest by 1/(1-p); the identity in eval mode. Masks come from cnnkit's random
    stream (cnnkit.manual_seed)."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p: expected a probability in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._save(None)
            return x
        y, mask = F.dropout(x, self.p, training=True, seed=_random.next_seed())
        self._save(mask)
        return y

    def backward(self, grad_output):
        (mask,) = self._saved()
        if mask is None:
            return grad_output
        return F.dropout_backward(grad_output, mask, self.p)

    def extra_repr(self):
        return f"p={self.p}"


class BatchNorm2d(Module):
    """Batch norm over (N, H, W) per channel; running stats (buffers) as in PyTorch."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=np.float32):
        super().__init__()
        self.num_features = _positive_int(num_features, "BatchNorm2d", "num_features")
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dtype = _float_dtype(dtype, "BatchNorm2d")
        self.weight = Parameter(np.ones(num_features, dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if self.affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
        else:
            self.running_mean = None
            self.running_var = None

    def forward(self, x):
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
        (saved,) = self._saved()
        gx, gg, gb = F.batch_norm_backward(grad_output, saved)
        if self.affine:
            _accumulate(self.weight, gg)
            _accumulate(self.bias, gb)
        return gx

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class LocalResponseNorm(Module):
    """Across-channel LRN, PyTorch's definition (alpha is divided by size)."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = _positive_int(size, "LocalResponseNorm", "size")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def _args(self):
        return dict(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def forward(self, x):
        self._save(x)
        return F.local_response_norm(x, **self._args())

    def backward(self, grad_output):
        (x,) = self._saved()
        return F.local_response_norm_backward(grad_output, x, **self._args())

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
