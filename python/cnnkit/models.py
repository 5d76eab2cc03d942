"""The course's networks: MLP, LeNet-5, AlexNet, VGG-11 and VGG-16.

Every model is a flat `Sequential`, so its layers can be indexed (deconvnet, summary).
Sizes of flattened feature maps are found by running the convolutional part on an
empty batch, so no output-size formula is repeated here.
"""

import numpy as np

from . import nn

__all__ = ["MLP", "LeNet5", "AlexNet", "VGG", "VGG11", "VGG16"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _flat_features(features, input_shape, dtype):
    """Number of features that `features` produces per sample for a (C, H, W) input.
    The probe leaves no trace: no saved state, training mode as before."""
    features.eval()
    out = features(np.zeros((0,) + tuple(input_shape), dtype))
    features.train()
    for m in features.modules():
        m.clear_state()
    return int(np.prod(out.shape[1:]))


class MLP(nn.Sequential):
    """Fully connected network: Linear-act-...-Linear. Inputs of more than two dims are
    flattened first."""

    def __init__(self, in_features, hidden=(128,), out_features=10, activation="relu", dropout=0.0, dtype=np.float32):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP: activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        layers = [nn.Flatten()]
        sizes = [in_features, *hidden]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out, dtype=dtype), _ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], out_features, dtype=dtype))
        super().__init__(*layers)


class LeNet5(nn.Sequential):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, as taught today:
    conv 6@5x5 - pool 2 - conv 16@5x5 - pool 2 - fc 120 - fc 84 - fc num_classes.

    input_size is the side of the square input (32 in the paper; 28 for MNIST with
    padding=2; 8 for scikit-learn's digits with padding=2).
    """

    def __init__(self, num_classes=10, in_channels=1, input_size=32, padding=0, dtype=np.float32):
        features = [
            nn.Conv2d(in_channels, 6, 5, padding=padding, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=padding, dtype=dtype),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        ]
        flat = _flat_features(nn.Sequential(*features), (in_channels, input_size, input_size), dtype)
        classifier = [
            nn.Linear(flat, 120, dtype=dtype),
            nn.ReLU(),
            nn.Linear(120, 84, dtype=dtype),
            nn.ReLU(),
            nn.Linear(84, num_classes, dtype=dtype),
        ]
        super().__init__(*features, *classifier)


class AlexNet(nn.Sequential):
    """AlexNet (Krizhevsky et al. 2012), one-tower, as the course defines it:
    conv 96@11x11/4 pad 2, 256@5x5 pad 2, 384@3x3, 384@3x3, 256@3x3 (pad 1), ReLU after
    each, 3x3 stride-2 max pools after conv1, conv2 and conv5, local response norm after
    the first two ReLUs, then fc 4096 - 4096 - num_classes with dropout. On 224x224
    input, with 1000 classes, it has 62,378,344 parameters.
    """

    def __init__(self, num_classes=1000, in_channels=3, input_size=224, dropout=0.5, lrn=True, dtype=np.float32):
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
        flat = _flat_features(nn.Sequential(*features), (in_channels, input_size, input_size), dtype)
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
    """VGG: 3x3 pad-1 convolutions with ReLU and 2x2 max pools, then fc hidden - hidden
    - num_classes with dropout. config "A" is VGG-11, "D" is VGG-16. width divides every
    channel count (for small test networks); hidden is the fully connected width."""

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
        if config not in _VGG_CONFIGS:
            raise ValueError(f"VGG: config: expected one of {sorted(_VGG_CONFIGS)}, got {config!r}")
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
        flat = _flat_features(nn.Sequential(*features), (in_channels, input_size, input_size), dtype)
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
    """VGG-11 (configuration A): 132,863,336 parameters at 224x224 with 1000 classes."""

    def __init__(self, num_classes=1000, **kwargs):
        super().__init__("A", num_classes, **kwargs)


class VGG16(VGG):
    """VGG-16 (configuration D): 138,357,544 parameters at 224x224 with 1000 classes."""

    def __init__(self, num_classes=1000, **kwargs):
        super().__init__("D", num_classes, **kwargs)
