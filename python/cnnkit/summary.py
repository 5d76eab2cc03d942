"""summary(model, input_shape): one row per layer with output shape, parameter count,
multiply-adds and receptive field, then the totals.

Shapes come from running the model on an empty batch (N = 0): every kernel gives an
empty result of the right shape, so no output-size formula is repeated here and no
arithmetic is done. The model is left exactly as it was.
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _device, nn
from ._args import ints

__all__ = ["summary", "Summary", "LayerSummary"]


@dataclass
class LayerSummary:
    """One layer of a Summary.

    Attributes
    ----------
    name : str
        Dotted name in the model ("3", "features.0").
    kind : str
        Class name ("Conv2d").
    output_shape : tuple of int
        Output shape per sample (no batch dim).
    params : int
        Parameter elements the layer owns.
    macs : int
        Multiply-adds per sample (convolutions and linear layers; 0 for others).
    receptive_field : (float, float) or None
        Rows and columns of the input that one output unit sees; None once the
        spatial structure is gone (after Flatten a unit sees the whole input).
    """

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int
    receptive_field: object


@dataclass
class Summary:
    """What summary() returns; ``print`` it for the table.

    Attributes
    ----------
    layers : list of LayerSummary
        One per leaf module, in call order.
    input_shape : tuple of int
        Input shape per sample (no batch dim), e.g. (1, 32, 32).
    total_params : int
    trainable_params : int
    total_macs : int
        Multiply-adds per sample.
    batch_size : int or None
        N of a full (N, C, H, W) or (N, features) input_shape; None for a per-sample one.
    """

    layers: list
    input_shape: tuple
    total_params: int
    trainable_params: int
    total_macs: int
    batch_size: Optional[int] = None

    @property
    def output_shape(self):
        """tuple of int: the model's output shape per sample."""
        return self.layers[-1].output_shape if self.layers else self.input_shape

    def __str__(self):
        header = ("layer", "type", "output shape", "params", "mult-adds", "receptive field")
        rows = [header]
        for layer in self.layers:
            rf = layer.receptive_field
            rows.append(
                (
                    layer.name,
                    layer.kind,
                    "x".join(map(str, layer.output_shape)),
                    f"{layer.params:,}",
                    f"{layer.macs:,}",
                    "all" if rf is None else f"{_fmt(rf[0])}x{_fmt(rf[1])}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))

        def line(r):
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

        out = [line(rows[0]), rule, *(line(r) for r in rows[1:]), rule]
        batch = "" if self.batch_size is None else f" (batch of {self.batch_size})"
        out.append(f"input shape: {'x'.join(map(str, self.input_shape))} per sample{batch}")
        out.append(f"total params: {self.total_params:,} (trainable {self.trainable_params:,})")
        out.append(f"total mult-adds per sample: {self.total_macs:,}")
        return "\n".join(out)

    __repr__ = __str__


def _fmt(v):
    return str(int(v)) if float(v).is_integer() else f"{v:.3g}"


def _leaves(model):
    return [(name or type(model).__name__, m) for name, m in model.named_modules() if not m._modules]


def _macs(m, in_shape, out_shape):
    """Multiply-adds per sample of the GEMM-like layers; other layers count 0."""
    if isinstance(m, nn.Conv2d):
        return int(np.prod(out_shape)) * m.weight.data[0].size
    if isinstance(m, nn.ConvTranspose2d):
        return int(np.prod(in_shape)) * m.weight.data[0].size
    if isinstance(m, nn.Linear):
        return int(np.prod(out_shape)) * m.in_features
    return 0


def _receptive_field(m, rf):
    """rf = (size_h, size_w, jump_h, jump_w) after this layer, given it before: each
    KxK window (effective size d(K-1)+1) with stride s adds (K_eff - 1) input jumps and
    multiplies the jump by s."""
    if rf is None or isinstance(m, (nn.Flatten, nn.Linear)):
        return None
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d, nn.ConvTranspose2d)):
        dilation = getattr(m, "dilation", (1, 1))
        new = []
        for axis in range(2):
            k_eff = dilation[axis] * (m.kernel_size[axis] - 1) + 1
            size, jump, s = rf[axis], rf[2 + axis], m.stride[axis]
            if isinstance(m, nn.ConvTranspose2d):
                # An output sees at most ceil(K_eff / s) inputs, which are `jump` apart.
                new.append((size + (math.ceil(k_eff / s) - 1) * jump, jump / s))
            else:
                new.append((size + (k_eff - 1) * jump, jump * s))
        return (new[0][0], new[1][0], new[0][1], new[1][1])
    if isinstance(m, nn.MaxUnpool2d):
        s = m.pool.stride
        return (rf[0], rf[1], rf[2] / s[0], rf[3] / s[1])
    return rf


def _per_sample_shape(input_shape):
    """(per-sample shape, batch size or None). Images are NCHW (4-D), so a 4-D shape is
    the full shape and a 3-D one is per sample; likewise a 2-D shape is (N, features)
    and a 1-D one (features,), as torchinfo (full) and torchsummary (per sample) take."""
    if isinstance(input_shape, np.ndarray) or not isinstance(input_shape, (tuple, list)):
        raise TypeError(f"summary: input_shape: expected a tuple of ints, got {type(input_shape).__name__}")
    shape = tuple(ints(input_shape, "summary", "input_shape"))
    if not 1 <= len(shape) <= 4:
        raise ValueError(
            "summary: input_shape: expected (N, C, H, W) or (C, H, W) for images, (N, features) or (features,), "
            f"got {len(shape)} values {shape}"
        )
    full = len(shape) % 2 == 0
    batch, sample = (shape[0], shape[1:]) if full else (None, shape)
    if (batch is not None and batch < 0) or any(d < 1 for d in sample):
        raise ValueError(
            f"summary: input_shape: expected positive sizes (a non-negative batch size), got {shape}"
        )
    return sample, batch


def summary(model, input_shape):
    """Summarise a model: per layer, the output shape, parameters, multiply-adds and
    receptive field, then the totals.

    Parameters
    ----------
    model : Module
        Any module; its leaf modules are the rows.
    input_shape : tuple of int
        The input shape, with or without the batch dim. As images are NCHW, a 4-D
        shape is the full (N, C, H, W) shape (as torchinfo takes it, e.g.
        (1, 1, 32, 32)) and a 3-D one the per-sample (C, H, W) shape (as
        torchsummary takes it, e.g. (1, 32, 32)). Likewise, for networks on
        feature vectors, a 2-D shape is (N, features) and a 1-D one (features,).
        N plays no part in the counts, which are per sample.

    Returns
    -------
    Summary
        Print it for the table.

    Raises
    ------
    TypeError
        If model is not a Module or input_shape is not a tuple of ints.
    ValueError
        If input_shape has other than 1 to 4 values, a non-positive size, or is not
        a shape the model accepts (the model's own error is chained).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"summary: model: expected a cnnkit.nn.Module, got {type(model).__name__}")
    input_shape, batch_size = _per_sample_shape(input_shape)
    params = list(model.parameters())
    dtype = params[0].dtype if params else np.float32
    leaves = _leaves(model)
    snapshots = [(m, dict(m.__dict__)) for _, m in model.named_modules()]
    calls = []

    def hook(name, m, forward):
        def recorded(x, *args, **kwargs):
            y = forward(x, *args, **kwargs)
            out = y[0] if isinstance(y, tuple) else y
            calls.append((name, m, x.shape[1:], out.shape[1:]))
            return y

        return recorded

    try:
        model.eval()
        for name, m in leaves:
            object.__setattr__(m, "forward", hook(name, m, m.forward))
        try:
            probe = np.zeros((0,) + input_shape, dtype)
            model(_device.move_like(probe, params[0].data) if params else probe)  # on the model's device
        except (ValueError, TypeError, IndexError) as e:
            shape = input_shape if batch_size is None else (batch_size,) + input_shape
            raise ValueError(f"summary: input_shape: the model does not take inputs of shape {shape}: {e}") from e
    finally:
        for m, saved in snapshots:
            m.__dict__.clear()
            m.__dict__.update(saved)

    rows = []
    rf = (1, 1, 1, 1) if len(input_shape) == 3 else None
    for name, m, in_shape, out_shape in calls:
        rf = _receptive_field(m, rf)
        own = sum(p.size for p in m._parameters.values())
        rows.append(
            LayerSummary(name, type(m).__name__, tuple(out_shape), own, _macs(m, in_shape, out_shape), rf and rf[:2])
        )
    total = sum(p.size for p in params)
    return Summary(rows, input_shape, total, total, sum(r.macs for r in rows), batch_size)
