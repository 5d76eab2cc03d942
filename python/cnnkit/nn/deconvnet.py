"""Zeiler & Fergus's deconvnet: project one feature map back to input space."""

import numpy as np

from .. import functional as F
from .._args import conv_padding
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
from .module import Sequential

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
    padded = np.zeros(input_shape[:2] + (input_shape[2] + top + bottom, input_shape[3] + left + right), signal.dtype)
    h = min(full.shape[2], padded.shape[2])
    w = min(full.shape[3], padded.shape[3])
    padded[:, :, :h, :w] = full[:, :, :h, :w]
    return np.ascontiguousarray(padded[:, :, top : top + input_shape[2], left : left + input_shape[3]])


def deconvnet(model, x, layer, channel):
    """Project feature map `channel` of layer `layer`'s output back to the input.

    model: a Sequential (e.g. a cnnkit.models network); x: an input batch (N, C, H, W);
    layer: index of the layer whose output is projected; channel: the feature map kept
    (all other maps are zeroed). The projection runs the layers up to `layer` in reverse:
    a ReLU stays a ReLU, a Conv2d becomes a transposed convolution with the same weights
    (no bias), a MaxPool2d becomes an unpooling through the switches recorded by this
    forward pass, a Linear multiplies by its transposed weight, and Flatten is undone.
    Dropout, LocalResponseNorm and BatchNorm2d pass the signal through. Returns an array
    of x's shape. The model is run in eval mode and left in the mode it was in.
    """
    layers = _layers(model)
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
    if out.ndim < 2 or not 0 <= channel < out.shape[1]:
        raise ValueError(f"deconvnet: channel: expected an index below {out.shape[1]}, got {channel}")
    signal = np.zeros_like(out)
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
