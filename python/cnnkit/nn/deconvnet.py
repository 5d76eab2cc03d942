"""Zeiler & Fergus's deconvnet: project one feature map back to input space."""

from .. import _device
from .. import functional as F
from .._args import conv_padding, integer
from .layers import (
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
)
from .module import Sequential, _is_array

__all__ = ["deconvnet"]

# Layers the projection passes through unchanged, as in Zeiler & Fergus (normalisation
# is not inverted; dropout is off at test time).
_PASS_THROUGH = (Dropout, LocalResponseNorm, BatchNorm2d)


def _layers(model):
    if isinstance(model, Sequential):
        return list(model)
    raise TypeError(f"deconvnet: model: expected a Sequential, got {type(model).__name__}")


def _conv_transpose(signal, conv, input_shape):
    """The transposed convolution with conv's weights (no bias), cropped to the conv's
    input size: a zero-padded full transposed convolution, then the padding removed."""
    kh, kw = conv.kernel_size
    top, bottom, left, right = conv_padding(conv.padding, (kh, kw), conv.stride, conv.dilation, "deconvnet")
    full = F.conv_transpose2d(signal, conv.weight.data, None, conv.stride, 0, 0, conv.groups, conv.dilation)
    xp = _device.array_module(signal)
    padded = xp.zeros(input_shape[:2] + (input_shape[2] + top + bottom, input_shape[3] + left + right), signal.dtype)
    h = min(full.shape[2], padded.shape[2])
    w = min(full.shape[3], padded.shape[3])
    padded[:, :, :h, :w] = full[:, :, :h, :w]
    return xp.ascontiguousarray(padded[:, :, top : top + input_shape[2], left : left + input_shape[3]])


def deconvnet(model, x, layer, channel):
    """Project one feature map of a layer's output back to input space (Zeiler & Fergus).

    The layers up to `layer` run forward in eval mode; every feature map of that
    layer's output except `channel` is zeroed; then the layers run in reverse: a ReLU
    stays a ReLU, a Conv2d becomes a transposed convolution with the same weights (no
    bias), a MaxPool2d becomes an unpooling through the switches this forward pass
    recorded, a Linear multiplies by its transposed weight, and Flatten is undone.
    Dropout, LocalResponseNorm and BatchNorm2d pass the signal through.

    Parameters
    ----------
    model : Sequential
        A flat network, e.g. a cnnkit.models network.
    x : numpy.ndarray or cupy.ndarray
        An input batch (N, C, H, W) the model takes, on the model's device.
    layer : int
        Index of the layer whose output is projected (negative counts from the end).
    channel : int
        The feature map kept, an index into that output's dim 1.

    Returns
    -------
    numpy.ndarray
        The projection, of x's shape. The model is left in the mode it was in.

    Raises
    ------
    TypeError
        A model that is not a Sequential, or holds a layer with no projection; a
        non-integer layer or channel; a non-array x.
    ValueError
        A layer or channel index out of range.
    """
    layers = _layers(model)
    layer = integer(layer, "deconvnet", "layer")
    channel = integer(channel, "deconvnet", "channel")
    if not _is_array(x):
        raise TypeError(f"deconvnet: x: expected a numpy.ndarray, got {type(x).__name__}")
    if not -len(layers) <= layer < len(layers):
        raise ValueError(f"deconvnet: layer: expected an index into the model's {len(layers)} layers, got {layer}")
    layer %= len(layers)
    was_training = model.training
    model.eval()
    try:
        inputs = []
        out = x
        for m in layers[: layer + 1]:
            inputs.append(out.shape)
            out = m(out)
    finally:
        model.train(was_training)
    if out.ndim < 2:
        raise ValueError(
            f"deconvnet: layer: expected a layer whose output has channels (N, C, ...), got output shape {out.shape}"
        )
    if not 0 <= channel < out.shape[1]:
        raise ValueError(f"deconvnet: channel: expected an index in [0, {out.shape[1]}), got {channel}")
    signal = _device.array_module(out).zeros_like(out)
    signal[:, channel] = out[:, channel]
    for m, input_shape in zip(reversed(layers[: layer + 1]), reversed(inputs)):
        if isinstance(m, ReLU):
            signal = F.relu(signal)
        elif isinstance(m, Conv2d):
            signal = _conv_transpose(signal, m, input_shape)
        elif isinstance(m, MaxPool2d):
            signal = F.max_unpool2d(signal, m.switches, m.kernel_size, m.stride, m.padding, output_size=input_shape[-2:])
        elif isinstance(m, Linear):
            signal = F.linear(signal, m.weight.data.T)
        elif isinstance(m, Flatten):
            signal = signal.reshape(input_shape)
        elif isinstance(m, _PASS_THROUGH):
            continue
        else:
            raise TypeError(f"deconvnet: model: layer {type(m).__name__} has no deconvnet projection")
    return signal
