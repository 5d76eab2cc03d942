"""The course's networks: MLP, LeNet-5, AlexNet, VGG-11 and VGG-16.

Every model is a flat `Sequential`, so its layers can be indexed (deconvnet, summary).
Sizes of flattened feature maps are found by running the convolutional part on an
empty batch, so no output-size formula is repeated here.
"""

import numpy as np

from . import nn
from ._args import integer, real
from .nn.layers import _check_size, _float_dtype

__all__ = ["MLP", "LeNet5", "AlexNet", "VGG", "VGG11", "VGG16"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _positive(value, model, name):
    v = integer(value, model, name)
    if v < 1:
        raise ValueError(f"{model}: {name}: expected a positive int, got {v}")
    return v


def _check_linears(model, sizes, names, dtype):
    """Check that the weights of Linear(sizes[0], sizes[1]), Linear(sizes[1], sizes[2]),
    ... are not too big to allocate, before any is: a too-big one is a ValueError
    naming the model and its argument that sets the size (names[i] for sizes[i]; None
    for a size the model fixes)."""
    for i in range(len(sizes) - 1):
        shape = (sizes[i + 1], sizes[i])
        _check_size(model, "a Linear layer's weight", shape, (names[i + 1], names[i]), dtype)


def _check_input(model, in_channels, input_size, out_channels, kernel_size, dtype):
    """As _check_linears, for what a convolutional model allocates before it knows its
    flattened size: the first convolution's weight (out_channels, in_channels, k, k) and
    the (in_channels, input_size, input_size) sample of the empty batch that
    _flat_features runs (NumPy refuses even an empty array whose samples are too big)."""
    shape = (out_channels, in_channels, kernel_size, kernel_size)
    _check_size(model, "the first Conv2d's weight", shape, (None, "in_channels", None, None), dtype)
    _check_size(model, "an input sample (in_channels, input_size, input_size)", (in_channels, input_size, input_size),
                ("in_channels", "input_size", "input_size"), dtype)


def _flat_features(features, input_shape, dtype, model):
    """Number of features that `features` produces per sample for a (C, H, W) input.
    The probe leaves no trace: no saved state, training mode as before."""
    features.eval()
    try:
        out = features(np.zeros((0,) + tuple(input_shape), dtype))
    except ValueError as e:
        raise ValueError(f"{model}: input_size: {input_shape[-1]} is too small for the network: {e}") from e
    finally:
        features.train()
    for m in features.modules():
        m.clear_state()
    return int(np.prod(out.shape[1:]))


class MLP(nn.Sequential):
    """Fully connected network: Flatten, then Linear-activation-...-Linear.

    Parameters
    ----------
    in_features : int
        Features per sample after flattening (e.g. 64 for 1x8x8 images).
    hidden : sequence of int, default (128,)
        Widths of the hidden layers (may be empty).
    out_features : int, default 10
    activation : {'relu', 'tanh', 'sigmoid'}, default 'relu'
    dropout : float, default 0.0
        If non-zero, a Dropout(dropout) after each hidden activation.
    dtype : numpy.float32 or numpy.float64, default float32

    Notes
    -----
    Shapes: input (N, *dims) with prod(dims) = in_features -> output (N, out_features).

    Raises
    ------
    TypeError
        Non-integer sizes, a non-real dropout.
    ValueError
        Non-positive sizes, an unknown activation, dropout outside [0, 1).
    """

    def __init__(self, in_features, hidden=(128,), out_features=10, activation="relu", dropout=0.0, dtype=np.float32):
        if not isinstance(activation, str) or activation not in _ACTIVATIONS:
            raise ValueError(f"MLP: activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if not isinstance(hidden, (tuple, list)):
            raise TypeError(f"MLP: hidden: expected a tuple of ints, got {type(hidden).__name__}")
        in_features = _positive(in_features, "MLP", "in_features")
        out_features = _positive(out_features, "MLP", "out_features")
        hidden = [_positive(h, "MLP", "hidden") for h in hidden]
        dropout = real(dropout, "MLP", "dropout")
        if not 0 <= dropout < 1:
            raise ValueError(f"MLP: dropout: expected a probability in [0, 1), got {dropout}")
        dtype = _float_dtype(dtype, "MLP")
        sizes = [in_features, *hidden, out_features]
        names = ["in_features", *(["hidden"] * len(hidden)), "out_features"]
        _check_linears("MLP", sizes, names, dtype)
        layers = [nn.Flatten()]
        for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
            layers += [nn.Linear(fan_in, fan_out, dtype=dtype), _ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-2], sizes[-1], dtype=dtype))
        super().__init__(*layers)


class LeNet5(nn.Sequential):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, as taught today:
    conv 6@5x5 - pool 2 - conv 16@5x5 - pool 2 - fc 120 - fc 84 - fc num_classes.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    input_size : int, default 32
        Side of the square input: 32 in the paper; 28 for MNIST with padding=2; 8 for
        scikit-learn's digits with padding=2. It sizes the first Linear layer.
    padding : int, default 0
        Padding of both convolutions.
    dtype : numpy.float32 or numpy.float64, default float32

    Notes
    -----
    Shapes: input (N, in_channels, input_size, input_size) -> output (N, num_classes).
    61,706 parameters with the defaults.

    Raises
    ------
    TypeError
        Non-integer arguments.
    ValueError
        Non-positive sizes, or an input_size too small for the two 5x5 convolutions
        and pools.
    """

    def __init__(self, num_classes=10, in_channels=1, input_size=32, padding=0, dtype=np.float32):
        num_classes = _positive(num_classes, "LeNet5", "num_classes")
        in_channels = _positive(in_channels, "LeNet5", "in_channels")
        input_size = _positive(input_size, "LeNet5", "input_size")
        dtype = _float_dtype(dtype, "LeNet5")
        _check_input("LeNet5", in_channels, input_size, 6, 5, dtype)
        _check_linears("LeNet5", (120, 84, num_classes), (None, None, "num_classes"), dtype)
        features = [
            nn.Conv2d(in_channels, 6, 5, padding=padding, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=padding, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        ]
        flat = _flat_features(nn.Sequential(*features), (in_channels, input_size, input_size), dtype, "LeNet5")
        _check_linears("LeNet5", (flat, 120), ("input_size", None), dtype)
        classifier = [
            nn.Linear(flat, 120, dtype=dtype),
            nn.ReLU(),
            nn.Linear(120, 84, dtype=dtype),
            nn.ReLU(),
            nn.Linear(84, num_classes, dtype=dtype),
        ]
        super().__init__(*features, *classifier)


class AlexNet(nn.Sequential):
    """AlexNet (Krizhevsky et al. 2012), one tower, as the course defines it:
    conv 96@11x11/4 pad 2, 256@5x5 pad 2, 384@3x3, 384@3x3, 256@3x3 (pad 1), ReLU after
    each, 3x3 stride-2 max pools after conv1, conv2 and conv5, local response norm after
    the first two ReLUs, then fc 4096 - 4096 - num_classes with dropout.

    Input size: it expects 224x224 images, as torchvision's AlexNet (whose conv1 is
    this 11x11 stride-4 padding-2 one): conv1 gives 55x55 and the last pool 6x6. The
    paper's 227x227 images (conv1 without padding gives 55x55 there) are taken too:
    conv1 gives 56x56, and the pools bring that to the same 6x6 map, so the same
    classifier (and parameter count) serves both. In fact any side from 223 to 254
    gives 6x6 and runs. With 1000 classes there are 62,378,344 parameters.

    Parameters
    ----------
    num_classes : int, default 1000
    in_channels : int, default 3
    input_size : int, default 224
        Side of the square input the classifier is sized for (its first Linear
        takes 256 x S x S features, S the side of the last pool's output: 6 for
        223 to 254).
    dropout : float, default 0.5
        Dropout probability before the first two fully connected layers.
    lrn : bool, default True
        Whether to include the two LocalResponseNorm layers.
    dtype : numpy.float32 or numpy.float64, default float32

    Notes
    -----
    Shapes: input (N, in_channels, H, W) with H, W in [223, 254] for the default
    input_size -> output (N, num_classes).

    Raises
    ------
    TypeError
        Non-integer arguments.
    ValueError
        Non-positive sizes, or an input_size too small for the network.
    """

    def __init__(self, num_classes=1000, in_channels=3, input_size=224, dropout=0.5, lrn=True, dtype=np.float32):
        num_classes = _positive(num_classes, "AlexNet", "num_classes")
        in_channels = _positive(in_channels, "AlexNet", "in_channels")
        input_size = _positive(input_size, "AlexNet", "input_size")
        dtype = _float_dtype(dtype, "AlexNet")
        _check_input("AlexNet", in_channels, input_size, 96, 11, dtype)
        _check_linears("AlexNet", (4096, 4096, num_classes), (None, None, "num_classes"), dtype)
        def norm():
            return [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if lrn else []

        features = [
            nn.Conv2d(in_channels, 96, 11, stride=4, padding=2, dtype=dtype),
            nn.ReLU(),
            *norm(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(96, 256, 5, padding=2, dtype=dtype),
            nn.ReLU(),
            *norm(),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(256, 384, 3, padding=1, dtype=dtype),
            nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1, dtype=dtype),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2),
            nn.Flatten(),
        ]
        flat = _flat_features(nn.Sequential(*features), (in_channels, input_size, input_size), dtype, "AlexNet")
        _check_linears("AlexNet", (flat, 4096), ("input_size", None), dtype)
        classifier = [
            nn.Dropout(dropout),
            nn.Linear(flat, 4096, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096, dtype=dtype),
            nn.ReLU(),
            nn.Linear(4096, num_classes, dtype=dtype),
        ]
        super().__init__(*features, *classifier)


# Simonyan & Zisserman's configurations: channel counts, "M" for a 2x2 max pool.
_VGG_CONFIGS = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(nn.Sequential):
    """VGG (Simonyan & Zisserman 2014): 3x3 pad-1 convolutions with ReLU and 2x2 max
    pools, then fc hidden - hidden - num_classes with dropout.

    Parameters
    ----------
    config : {'A', 'D'}
        'A' is VGG-11, 'D' is VGG-16.
    num_classes : int, default 1000
    in_channels : int, default 3
    input_size : int, default 224
        Side of the square input; it sizes the first Linear layer.
    hidden : int, default 4096
        Width of the two hidden fully connected layers.
    width : int, default 1
        Divides every channel count (at least 1 channel), for small test networks.
    batch_norm : bool, default False
        A BatchNorm2d after each convolution.
    dropout : float, default 0.5
    dtype : numpy.float32 or numpy.float64, default float32

    Notes
    -----
    Shapes: input (N, in_channels, input_size, input_size) -> output (N, num_classes).

    Raises
    ------
    TypeError
        Non-integer sizes.
    ValueError
        An unknown config, non-positive sizes, or an input_size too small for the
        five pools.
    """

    def __init__(
        self,
        config,
        num_classes=1000,
        in_channels=3,
        input_size=224,
        hidden=4096,
        width=1,
        batch_norm=False,
        dropout=0.5,
        dtype=np.float32,
    ):
        if not isinstance(config, str) or config not in _VGG_CONFIGS:
            raise ValueError(f"VGG: config: expected one of {sorted(_VGG_CONFIGS)}, got {config!r}")
        num_classes = _positive(num_classes, "VGG", "num_classes")
        in_channels = _positive(in_channels, "VGG", "in_channels")
        input_size = _positive(input_size, "VGG", "input_size")
        hidden = _positive(hidden, "VGG", "hidden")
        width = _positive(width, "VGG", "width")
        dtype = _float_dtype(dtype, "VGG")
        _check_input("VGG", in_channels, input_size, max(1, _VGG_CONFIGS[config][0] // width), 3, dtype)
        _check_linears("VGG", (hidden, hidden, num_classes), ("hidden", "hidden", "num_classes"), dtype)
        features = []
        channels = in_channels
        for item in _VGG_CONFIGS[config]:
            if item == "M":
                features.append(nn.MaxPool2d(2))
                continue
            out = max(1, item // width)
            features.append(nn.Conv2d(channels, out, 3, padding=1, dtype=dtype))
            if batch_norm:
                features.append(nn.BatchNorm2d(out, dtype=dtype))
            features.append(nn.ReLU())
            channels = out
        features.append(nn.Flatten())
        flat = _flat_features(nn.Sequential(*features), (in_channels, input_size, input_size), dtype, "VGG")
        _check_linears("VGG", (flat, hidden), ("input_size", "hidden"), dtype)
        classifier = [
            nn.Linear(flat, hidden, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden, dtype=dtype),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes, dtype=dtype),
        ]
        super().__init__(*features, *classifier)


class VGG11(VGG):
    """VGG-11 (configuration A): 132,863,336 parameters at 224x224 with 1000 classes.

    Parameters
    ----------
    num_classes : int, default 1000
    **kwargs
        The other arguments of VGG.
    """

    def __init__(self, num_classes=1000, **kwargs):
        super().__init__("A", num_classes, **kwargs)


class VGG16(VGG):
    """VGG-16 (configuration D): 138,357,544 parameters at 224x224 with 1000 classes.

    Parameters
    ----------
    num_classes : int, default 1000
    **kwargs
        The other arguments of VGG.
    """

    def __init__(self, num_classes=1000, **kwargs):
        super().__init__("D", num_classes, **kwargs)
